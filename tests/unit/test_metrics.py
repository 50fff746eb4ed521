"""The metric catalogue matches what the jobs publish, and the policy validator reads it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import get_args

import pytest

from lockgate import metrics
from lockgate.metrics import DRIFT_COLUMNS
from lockgate.policy.schema import ServingConfig

# The unit strings the producers attach to `MetricEvidence.unit`, and the catalogue's unit for each.
PRODUCER_UNITS = {
    "ms": "latency_ms",
    "tokens/s": "throughput",
    "MiB": "memory_mb",
    "fraction": "share",
    "mJ/token": "energy",
    "share": "share",
    "columns": "count",
    "cosine": "cosine",
    "score 1-5": "score_1_5",
    "score": "score",
    "rho": "correlation",
    "kappa": "correlation",
}


def test_benchmark_names_and_units_match_the_analysis() -> None:
    from lockgate.benchmark import analysis

    specs = [*analysis.BASE_METRICS]
    published = {s.name: s.unit for s in specs}
    published.update({"mfu_prefill": "fraction", "mbu_decode": "fraction", "energy_mj_per_token": "mJ/token"})
    assert set(published) == set(metrics.CATALOGUE["benchmark"])
    headline = ("eager", 1)
    for name, unit in published.items():
        for config in metrics.SERVING_CONFIGS:
            for bs in (1, 4, 16):
                key = analysis.metric_key(name, config, bs, headline)
                info = metrics.lookup("benchmark", key)
                assert info is not None, key
                assert info.unit == PRODUCER_UNITS[unit], key


def test_gpu_only_benchmark_names_are_the_ones_the_analysis_builds() -> None:
    import inspect

    from lockgate.benchmark import analysis

    source = inspect.getsource(analysis._gpu_specs)
    for name in ("mfu_prefill", "mbu_decode", "energy_mj_per_token"):
        assert f'"{name}"' in source


def test_quality_names_and_units_match_the_evaluation() -> None:
    from lockgate.judge.evaluation import METRIC_INFO, judge_metric
    from lockgate.policy.schema import RUBRIC_NAMES

    assert set(METRIC_INFO) == set(metrics.CATALOGUE["quality"]) - {"judge_<rubric>"}
    assert {judge_metric(r) for r in RUBRIC_NAMES if r != "pairwise"} <= set(METRIC_INFO)
    # a custom rubric's metric is in the catalogue's family, with the lenient unit of its own scale
    custom = metrics.lookup("quality", "judge_tone")
    assert custom is not None and custom.unit == "score"
    for name, (unit, _) in METRIC_INFO.items():
        info = metrics.lookup("quality", name)
        assert info is not None and info.unit == PRODUCER_UNITS[str(unit)], name


def test_drift_names_and_units_match_the_summary() -> None:
    from lockgate.drift.summary import ColumnDrift, DriftSummary, Rate, WindowSample, to_evidence

    t0, t1, t2 = (datetime(2026, 1, d, tzinfo=UTC) for d in (1, 8, 9))
    window = {"window_rows": 10, "sampled": 10, "usable": 10}
    rate = Rate(count=1, n=10, value=0.1, ci_low=0.01, ci_high=0.4, confidence=0.95)
    columns = [
        ColumnDrift(
            column=c,
            kind="numeric",
            group="prompt",
            description=c,
            tested=True,
            method="ks",
            statistic=0.1,
            p_value=0.5,
            p_adjusted=0.5,
            effect_measure="wasserstein_norm",
            effect_size=0.05,
            min_effect=0.1,
            significant=False,
            drifted=False,
            n_reference=10,
            n_current=10,
        )
        for c in DRIFT_COLUMNS
    ]
    drift = DriftSummary(
        model_name="m",
        status="ok",
        drift_detected=False,
        drift_share=0.0,
        n_tested=len(columns),
        drifted_columns=[],
        fdr_alpha=0.05,
        columns=columns,
        reference=WindowSample(role="reference", mode="trailing", start=t0, end=t1, **window),
        current=WindowSample(role="current", mode="data_interval", start=t1, end=t2, **window),
        error_rate=rate,
        timeout_rate=rate,
    )
    evidence = to_evidence(drift, created_at=t2, challenger_version=None, champion_version=None)
    assert len(evidence.metrics) == 4 + len(DRIFT_COLUMNS)
    for name, m in evidence.metrics.items():
        info = metrics.lookup("drift", name)
        assert info is not None, name
        if not name.startswith("column."):
            assert info.unit == PRODUCER_UNITS[str(m.unit)], name


def test_live_names_and_units_match_the_live_comparison() -> None:
    from lockgate.live.compare import LIVE_METRICS

    assert {m.name for m in LIVE_METRICS} == set(metrics.CATALOGUE["live"])
    for m in LIVE_METRICS:
        info = metrics.lookup("live", m.name)
        assert info is not None and info.unit == PRODUCER_UNITS[m.unit], m.name


def test_every_kind_of_the_policy_has_a_catalogue() -> None:
    from lockgate.evidence import EvidenceKind

    assert set(get_args(EvidenceKind)) == set(metrics.CATALOGUE)


def test_serving_configs_match_the_policy_schema() -> None:
    assert metrics.SERVING_CONFIGS == get_args(ServingConfig)


@pytest.mark.parametrize(
    ("kind", "name", "unit"),
    [
        ("benchmark", "ttft_ms_p50", "latency_ms"),
        ("benchmark", "ttft_ms_p50.bs4", "latency_ms"),
        ("benchmark", "mbu_decode.int8_dynamic.bs2", "share"),
        ("drift", "column.status", "effect"),
        ("quality", "win_rate", "share"),
    ],
)
def test_lookup_finds_families_and_variants(kind: str, name: str, unit: str) -> None:
    info = metrics.lookup(kind, name)
    assert info is not None and info.unit == unit


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("benchmark", "ttft_ms_p95"),
        ("benchmark", "ttft_ms_p50.bs0"),
        ("benchmark", "ttft_ms_p50.turbo.bs1"),
        ("drift", "column.nope"),
        ("drift", "drift_share.bs1"),  # variants are the benchmark's only
        ("quality", "relevance"),
        ("live", "ttft_ms_p95"),
        ("canary", "ttft_ms_p90"),  # a kind without a catalogue entry publishes nothing
    ],
)
def test_lookup_refuses_names_nobody_publishes(kind: str, name: str) -> None:
    assert metrics.lookup(kind, name) is None


@pytest.mark.parametrize(
    ("unit", "comparison", "threshold", "ok"),
    [
        ("share", "absolute", 0.3, True),
        ("share", "absolute", 1.0, True),
        ("share", "absolute", 5.0, False),
        ("share", "absolute", -0.01, False),
        ("latency_ms", "absolute", 250.0, True),
        ("latency_ms", "absolute", -1.0, False),
        ("cosine", "absolute", -0.5, True),
        ("cosine", "difference", 2.0, True),
        ("cosine", "difference", 2.5, False),
        ("score_1_5", "absolute", 0.5, False),
        ("latency_ms", "ratio", 0.25, True),
        ("latency_ms", "ratio", -0.25, False),
        ("latency_ms", "difference", 1e6, True),
        ("share", "ratio", float("nan"), False),
        ("latency_ms", "absolute", float("inf"), False),
    ],
)
def test_threshold_bounds(unit: str, comparison: str, threshold: float, ok: bool) -> None:
    assert (metrics.threshold_problem(unit, comparison, threshold) is None) is ok


def test_a_higher_is_better_ratio_gate_must_be_able_to_fail() -> None:
    assert metrics.threshold_problem("throughput", "ratio", 0.5, "higher_is_better") is None
    assert "must be < 1" in str(metrics.threshold_problem("throughput", "ratio", 1.0, "higher_is_better"))
    assert metrics.threshold_problem("latency_ms", "ratio", 1.5, "lower_is_better") is None


def test_catalogue_module_is_light() -> None:
    code = "import sys, lockgate.metrics; print(sorted({'pydantic', 'yaml', 'sqlalchemy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
