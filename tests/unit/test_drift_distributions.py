"""Binned reference-vs-current distributions of the drifted columns: from the frames to the summary to the page."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from lockgate.drift.distributions import OTHER, categorical_distribution, numeric_distribution
from lockgate.drift.report import render_drift_page
from lockgate.drift.summary import DriftSummary, WindowSample
from lockgate.jobs.drift import compare_frames
from lockgate.logs.schema import CONTRACT_COLUMNS
from lockgate.policy.schema import parse_policy

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _frame(n: int, seed: int, words: float, error_share: float) -> pd.DataFrame:
    """Sampled log rows as `LogSample.to_frame()` gives them: prompt length and error share set by the caller."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = max(1, int(rng.poisson(words)))
        status = "error" if rng.random() < error_share else "ok"
        rows.append(
            {
                "request_id": f"{seed}-{i}",
                "ts": T0 + timedelta(minutes=i),
                "model_name": "m",
                "model_version": "1",
                "prompt": " ".join(f"w{rng.integers(50)}" for _ in range(k)),
                "response": None if status == "error" else f"answer number {i % 7}",
                "context": None,
                "latency_ms": float(rng.normal(500, 40)),
                "ttft_ms": float(rng.normal(90, 10)),
                "prompt_tokens": float(k),
                "completion_tokens": 4.0,
                "status": status,
                "feedback": None,
                "metadata": None,
            }
        )
    frame = pd.DataFrame(rows)
    return frame[[c for c in CONTRACT_COLUMNS if c in frame.columns]]


def _embed(texts: list[str]) -> np.ndarray:
    """A stand-in for MiniLM that sees length: longer prompts land elsewhere, so the embedding column drifts too."""
    rows = []
    for t in texts:
        noise = np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8)[:7] / 255.0
        rows.append(np.r_[len(t) / 40.0, noise])
    return np.asarray(rows, dtype=np.float32)


def _window(role: str) -> WindowSample:
    return WindowSample(role=role, mode="fixed", start=T0, end=T0 + timedelta(days=1))  # type: ignore[arg-type]


def test_job_bins_each_drifted_column_and_the_page_draws_them(tmp_path: Path) -> None:
    policy = parse_policy(
        {
            "models": [{"name": "m", "require_approval": False}],
            "drift": {"min_rows": 50, "evidently_report": False, "embedding_sample_size": 300},
        }
    )
    ref, cur = _frame(300, 1, words=6, error_share=0.02), _frame(300, 2, words=18, error_share=0.3)
    drift = compare_frames("m", ref, cur, policy, _window("reference"), _window("current"), tmp_path, embed=_embed)

    assert drift.status == "ok"
    assert {"prompt_words", "prompt_embedding", "status"} <= set(drift.drifted_columns)
    assert [d.column for d in drift.distributions] == drift.drifted_columns  # each drifted column, in order
    by_name = {d.column: d for d in drift.distributions}
    col = {c.column: c for c in drift.columns}

    words = by_name["prompt_words"]
    assert words.kind == "numeric" and len(words.edges) == len(words.reference) + 1
    assert sum(words.reference) == col["prompt_words"].n_reference and sum(words.current) == 300
    assert words.current_mean is not None and words.reference_mean is not None
    assert words.current_mean > 2 * words.reference_mean

    emb = by_name["prompt_embedding"]
    assert emb.kind == "embedding" and "classifier score" in emb.label
    assert sum(emb.reference) == 150 and sum(emb.current) == 150  # the held-out halves the test scored
    assert emb.current_mean is not None and emb.reference_mean is not None and emb.current_mean > emb.reference_mean

    status = by_name["status"]
    assert status.kind == "categorical" and set(status.categories) == {"ok", "error"}
    errors = status.categories.index("error")
    assert status.current[errors] / sum(status.current) > 0.2 > status.reference[errors] / sum(status.reference)

    # bins, not rows: the whole summary stays small and round-trips through its JSON
    text = drift.model_dump_json()
    assert len(text) < 30_000 and "w1 " not in text
    assert DriftSummary.model_validate_json(text) == drift

    html = render_drift_page(drift, run_key="r")
    assert html.count('class="chart effect-chart"') == 1
    assert html.count('class="effect-row') == len(drift.columns)
    numeric = [d for d in drift.distributions if d.kind != "categorical"]
    assert html.count('class="chart distribution"') == len(numeric)
    assert html.count('class="chart categories"') == len(drift.distributions) - len(numeric)
    assert html.index("Effect against minimum") < html.index("Drifted columns: reference vs current")

    # What an embedding column's "no drift" is worth: its test's power at the minimum effect, on the page.
    from lockgate.drift.stats import classifier_test_power

    resp = col["response_embedding"]
    expected = classifier_test_power(resp.n_reference, resp.n_current, resp.min_effect, 0.05, 50)
    assert not resp.drifted and resp.power == expected and 0 < expected < 1
    assert col["prompt_embedding"].power is not None and col["prompt_words"].power is None  # embedding tests only
    assert f"response_embedding: power</td><td>{expected:.0%}: with {resp.n_reference} / {resp.n_current}" in html
    assert "prompt_embedding: power" not in html  # a drifted column needs no such caveat


def test_numeric_bins_trim_the_tail_and_say_so() -> None:
    ref = np.r_[np.linspace(100, 200, 200), 1e6]
    d = numeric_distribution("latency_ms", "numeric", "latency", ref, np.linspace(150, 250, 200))
    assert d is not None and d.edges[-1] < 1000
    assert sum(d.reference) == 201 and d.note is not None and "end bins" in d.note
    assert numeric_distribution("x", "numeric", "x", [np.nan], []) is None


def test_categories_beyond_the_most_frequent_are_pooled() -> None:
    ref = [f"c{i % 15}" for i in range(300)] + [None]
    d = categorical_distribution("status", "status", ref, ["c0"] * 50)
    assert d is not None and len(d.categories) == 11 and d.categories[-1] == OTHER
    assert sum(d.reference) == 300 and sum(d.current) == 50 and d.current[d.categories.index("c0")] == 50
    assert categorical_distribution("s", "s", [None], []) is None


def test_embedding_power_sizes_the_embedded_sample_and_a_policy_that_cannot_reach_it_is_refused(tmp_path: Path) -> None:
    import pytest

    from lockgate.drift.stats import classifier_rows_for_power
    from lockgate.errors import ConfigError

    effects = {"prompt_embedding": 0.3, "response_embedding": 0.4}
    drift_cfg = {"min_rows": 50, "evidently_report": False, "embedding_power": 0.8, "min_effect_sizes": effects}
    policy = parse_policy({"models": [{"name": "m", "require_approval": False}], "drift": drift_cfg})
    ref, cur = _frame(300, 1, words=6, error_share=0.0), _frame(300, 2, words=6, error_share=0.0)
    drift = compare_frames("m", ref, cur, policy, _window("reference"), _window("current"), tmp_path, embed=_embed)

    # the stricter column (the smaller minimum effect) sets the rows for both; each test reaches the power
    n = classifier_rows_for_power(0.8, 0.3, 0.05, 50)
    assert 50 < n < 300
    col = {c.column: c for c in drift.columns}
    for name in effects:
        assert (col[name].n_reference, col[name].n_current) == (n, n)
        assert col[name].power is not None and col[name].power >= 0.8

    with pytest.raises(ConfigError, match="embedding_power"):
        parse_policy(
            {
                "models": [{"name": "m"}],
                "drift": {"embedding_power": 0.8, "min_effect_sizes": {"response_embedding": 0.0}},
            }
        )
