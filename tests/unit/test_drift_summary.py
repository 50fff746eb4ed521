"""DriftSummary -> evidence contract, asset extra, the drift page (escaping), and the drift policy section."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lockgate.drift.report import render_drift_page
from lockgate.drift.summary import ColumnDistribution, ColumnDrift, DriftSummary, Rate, WindowSample, to_evidence
from lockgate.errors import ConfigError
from lockgate.policy.schema import DriftConfig, parse_policy

T0, T1, T2 = (datetime(2026, 1, d, tzinfo=UTC) for d in (1, 8, 9))
EVIL = "</script><script>alert(1)</script>"


def _windows(**cur: object) -> tuple[WindowSample, WindowSample]:
    ref = WindowSample(
        role="reference",
        mode="trailing 7 d",
        start=T0,
        end=T1,
        window_rows=500,
        sampled=400,
        usable=390,
        quarantined={"invalid_latency": 10},
    )
    current = WindowSample(
        role="current",
        mode="data_interval",
        start=T1,
        end=T2,
        window_rows=300,
        sampled=300,
        usable=290,
        quarantined={"invalid_latency": 4, EVIL: 6},
        versions={"1": 200, EVIL: 90},
    )
    return ref, current.model_copy(update=cur)


def _col(name: str, drifted: bool, effect: float = 0.5) -> ColumnDrift:
    return ColumnDrift(
        column=name,
        kind="numeric",
        group="prompt",
        description=name,
        tested=True,
        method="ks",
        statistic=0.4,
        p_value=1e-9,
        p_adjusted=1e-8,
        effect_measure="wasserstein_norm",
        effect_size=effect,
        min_effect=0.1,
        significant=True,
        drifted=drifted,
        n_reference=390,
        n_current=290,
    )


def _ok() -> DriftSummary:
    ref, cur = _windows()
    rate = Rate(count=3, n=290, value=3 / 290, ci_low=0.003, ci_high=0.03, confidence=0.95)
    return DriftSummary(
        model_name="m", status="ok", drift_detected=True, drift_share=0.5, n_tested=2,
        drifted_columns=["prompt_length"], fdr_alpha=0.05,
        columns=[
            _col("prompt_length", True),
            _col("latency_ms", False, 0.01),
            ColumnDrift(column="prompt_valid_json", kind="categorical", group="prompt", description="x", tested=False,
                        reason="no variation in either window", min_effect=0.1),
        ],
        reference=ref, current=cur, error_rate=rate, timeout_rate=rate,
        version_rates={"2": {"error_rate": rate}},
    )  # fmt: skip


def test_evidence_metrics_follow_the_contract() -> None:
    ev = to_evidence(_ok(), created_at=T2, challenger_version="2", champion_version="1", report_path="/r/report.html")
    assert ev.kind == "drift" and ev.status == "ok" and ev.valid
    assert ev.metrics["drift_share"].model.value == 0.5 and ev.metrics["drift_share"].model.n == 2
    assert ev.metrics["drifted_columns"].model.value == 1
    assert ev.metrics["error_rate"].model.ci_high == 0.03
    assert ev.metrics["error_rate"].challenger is not None and ev.metrics["error_rate"].champion is None
    assert ev.metrics["column.prompt_length"].model.value == 0.5
    assert "column.prompt_valid_json" not in ev.metrics
    assert ev.quarantined == {"invalid_latency": 14, EVIL: 6}
    assert ev.sample_sizes["reference"] == 390 and ev.sample_sizes["tested_columns"] == 2
    assert (ev.window_start, ev.window_end) == (T1, T2)
    assert DriftSummary.model_validate(ev.details["drift"]) == _ok()


def test_insufficient_data_is_missing_evidence() -> None:
    ref, cur = _windows(usable=3)
    drift = DriftSummary(
        model_name="m",
        status="insufficient_data",
        message="too few usable rows",
        fdr_alpha=0.05,
        reference=ref,
        current=cur,
    )
    ev = to_evidence(drift, created_at=T2, challenger_version=None, champion_version=None)
    assert ev.status == "insufficient_data" and ev.valid is False and ev.metrics == {}
    html = render_drift_page(drift, run_key="r")
    assert "insufficient data" in html and "not a &#39;no drift&#39; result" in html
    assert "drift detected" not in html


def test_the_asset_payload_is_small_json() -> None:
    import json

    from lockgate.evidence import evidence_payload

    ev = to_evidence(_ok(), created_at=T2, challenger_version="2", champion_version="1", report_path="/r/report.html")
    extra = evidence_payload(ev)
    assert json.loads(json.dumps(extra)) == extra
    assert extra["summary_path"] == "/r/summary.json" and extra["kind"] == "drift" and extra["model"] == "m"
    assert extra["headline"]["drift_share.model"] == 0.5
    assert extra["facts"] == {"drift_detected": True, "drifted_columns": ["prompt_length"], "tested_columns": 2}
    assert extra["sample_sizes"]["current"] == 290 and extra["quarantined"]["invalid_latency"] == 14


def test_page_escapes_everything_from_the_logs() -> None:
    html = render_drift_page(_ok(), run_key=EVIL, evidently_href="evidently.html")
    assert EVIL not in html and "<script>" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="evidently.html"' in html
    assert "drift detected" in html and "Quarantined rows" in html and "not tested: no variation" in html


def test_page_draws_each_columns_effect_and_each_drifted_columns_distributions() -> None:
    hostile = _col(EVIL, True, 0.3).model_copy(update={"kind": "categorical", "effect_measure": "jensenshannon"})
    drift = _ok().model_copy(
        update={
            "columns": [*_ok().columns, hostile],
            "drifted_columns": ["prompt_length", EVIL],
            "distributions": [
                ColumnDistribution(column="prompt_length", kind="numeric", label="prompt characters",
                                   edges=[0.0, 10.0, 20.0, 30.0], reference=[50, 30, 10], current=[5, 30, 60],
                                   reference_mean=9.0, current_mean=21.0),
                ColumnDistribution(column=EVIL, kind="categorical", label=EVIL, categories=[EVIL, "ok"],
                                   reference=[1, 99], current=[40, 60], note=EVIL),
            ],
        }
    )  # fmt: skip
    html = render_drift_page(drift, run_key="r")
    assert html.count('class="chart effect-chart"') == 1
    assert html.count('class="effect-row') == 4  # every column, the untested one too
    assert html.count('class="effect-row effect-drifted"') == 2 and 'class="effect-row effect-untested"' in html
    assert html.count('class="chart distribution"') == 1 and html.count('class="chart categories"') == 1
    assert "prompt_length: prompt characters" in html and "reference 55.6% (50)" in html
    assert "<script>" not in html and "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;: " in html


def test_page_says_when_no_distribution_was_recorded() -> None:
    html = render_drift_page(_ok(), run_key="r")  # a summary written before distributions were binned
    assert "were not recorded for this run" in html and 'class="chart distribution"' not in html
    calm = _ok().model_copy(update={"drifted_columns": [], "drift_detected": False, "drift_share": 0.0})
    assert "No column drifts." in render_drift_page(calm, run_key="r")


def test_policy_drift_section_validates_column_names() -> None:
    base = {"models": [{"name": "m", "require_approval": False}]}
    with pytest.raises(ConfigError) as err:
        parse_policy({**base, "drift": {"min_effect_sizes": {"latency": 0.2}}})
    assert err.value.key == "drift.min_effect_sizes"
    with pytest.raises(ConfigError) as err:
        parse_policy({**base, "drift": {"columns": ["status", "nope"]}})
    assert err.value.key == "drift.columns"
    cfg = parse_policy({**base, "drift": {"min_effect_sizes": {"prompt_embedding": 0.2}}}).drift
    assert cfg.min_effect("prompt_embedding") == 0.2 and cfg.min_effect("latency_ms") == 0.1
    assert DriftConfig().min_effect("status") == 0.05
