"""`dag.test()` of lockgate_quality: the report, a summary with intervals the gates use, the asset event."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.evidence import latest_summary_path, read_summary
from lockgate.logs.db import make_engine
from lockgate.policy.gates import assess_evidence, evaluate_gate
from lockgate.policy.schema import load_policy

DAGS = Path(__file__).resolve().parents[2] / "dags"
LOGICAL = datetime(2026, 6, 2, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def quality_dag(airflow_db: str, load_dag: Callable[[Path, str], Any]) -> object:
    return load_dag(DAGS / "lockgate_quality.py", "lockgate_quality")


def test_params_form(quality_dag: object) -> None:
    dag = quality_dag
    params = dag.params.dump()
    assert params["model"] is None  # every watched model
    assert params["challenger_version"] is None and params["sample_size"] is None
    assert set(params["rubrics"]) == {"relevance", "faithfulness", "safety", "refusal", "pairwise"}
    replay = dag.get_task("replay")
    assert (replay.pool, replay.queue) == ("gpu", "gpu")
    # Only a plan that needs a replay lets `replay` queue for the gpu pool; the judge runs either way.
    assert replay.upstream_task_ids == {"plan", "needs_replay"}
    assert dag.get_task("judge").trigger_rule == "none_failed"
    judge = dag.get_task("judge")
    assert [a.uri for a in judge.outlets] == ["x-lockgate://evidence/quality"]


@pytest.mark.slow
def test_dag_test_writes_the_report_and_evidence_the_gates_read(
    quality_dag: object,
    lockgate_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    asset_events: Callable[[str, str], list[dict]],
) -> None:
    from lockgate.devtools.testing.registry import sqlite_mlflow_store

    # A migrated MLflow store from the template: saves ~10 s of migrations.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_mlflow_store(lockgate_env / "mlflow.db"))
    # The quality-regression scenario: 60% of the challenger's canary answers are off-topic or refusals.
    spec = TrafficSpec(
        reference_start=LOGICAL - timedelta(days=2),
        reference_days=1,
        reference_rows=0,
        current_rows=240,
        current_versions=[VersionTraffic("1", share=0.6), VersionTraffic("2", share=0.4, quality_degradation=0.6)],
        pii_rate=0.1,
        hostile_rate=0.1,
        seed=41,
    )
    assert spec.current_end == LOGICAL
    seed_logs(make_engine(f"sqlite:///{lockgate_env / 'logs.db'}"), spec)

    run = quality_dag.test(
        logical_date=LOGICAL,
        run_conf={
            "model": "lockgate-demo",
            "challenger_version": "2",
            "champion_version": "1",
            "sample_size": 30,
            "rubrics": ["relevance", "safety", "pairwise"],
        },
    )
    # The model given in the form runs alone: one mapped instance of each per-model task.
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    # The challenger served traffic: nothing to replay, so `replay` is skipped before it takes the gpu pool.
    expected = {("watched_models", -1), ("plan", 0), ("judge", 0)}
    skipped = {("needs_replay", 0), ("replay", 0)}
    assert states == {**dict.fromkeys(expected, "success"), **dict.fromkeys(skipped, "skipped")}, states

    summary = read_summary(latest_summary_path(lockgate_env / "reports", "quality", "lockgate-demo"))
    assert summary.dag_id == "lockgate_quality" and summary.run_id == run.run_id
    assert (summary.challenger_version, summary.champion_version) == ("2", "1")
    assert summary.window_end == LOGICAL and summary.window_start == LOGICAL - timedelta(hours=24)
    rel = summary.metrics["embedding_relevance"]
    assert rel.difference.has_interval and rel.difference.confidence == 0.95
    assert summary.metrics["error_rate"].champion.has_interval
    assert summary.metrics["judge_spearman"].model.has_interval
    # The placeholder judge is reported, not used: its calibration fails and the summary says so.
    assert "judge_relevance" not in summary.metrics
    assert "failed calibration" in (summary.message or "")

    # The promotion gates read this summary: the relevance regression blocks, the champion is healthy.
    gates = {g.name: g for g in load_policy().model("lockgate-demo").gates}
    ref = assess_evidence("quality", summary, summary.created_at, 48, "lockgate-demo")
    assert ref.usable, ref.reason
    assert evaluate_gate(gates["relevance_regression"], summary, ref, "2", "1").status == "fail"
    assert evaluate_gate(gates["champion_error_rate"], summary, ref, "2", "1").status == "pass"

    run_dir = Path(summary.report_path).parent
    html = (run_dir / "report.html").read_text()
    assert "Trust in the judge" in html and "Not a quality signal" in html
    assert "<script>alert" not in html
    assert (run_dir / "evidently.html").stat().st_size > 100_000  # Evidently descriptor distributions
    assert json.loads((run_dir / "quality_summary.json").read_text())["mode"] == "traffic"

    # The QUALITY asset event carries the summary path and the headline figures.
    extras = asset_events("x-lockgate://evidence/quality", run.run_id)
    assert len(extras) == 1
    assert extras[0]["summary_path"] == str(run_dir / "summary.json")
    assert extras[0]["headline"]["embedding_relevance.difference"] < -0.1
    assert extras[0]["facts"]["judge_trusted"] is False and extras[0]["kind"] == "quality"


def test_replay_runs_only_for_a_plan_that_needs_it_and_hands_the_judge_its_file(
    quality_dag: object, lockgate_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring alone (the jobs are tested in tests/integration/test_quality_job.py): a replay plan
    runs `replay` and its file reaches `judge`; a traffic plan skips `replay` and the judge gets None."""
    import lockgate.evidence
    import lockgate.jobs.quality as quality
    from lockgate.jobs.quality import QualityPlan

    judged: dict[str, str | None] = {}
    replayed: list[str] = []

    def plan_quality(ctx: Any, versions: Any, sample_size: Any, rubrics: Any) -> QualityPlan:
        mode = "replay" if versions.get("challenger") == "2" else "traffic"
        return QualityPlan(
            model_name=ctx.model, run_key=ctx.run_id or "k", challenger_version=versions.get("challenger"),
            champion_version="1", window_start=LOGICAL - timedelta(hours=24), window_end=LOGICAL,
            sample_size=10, rubrics=["relevance"], seed=0, mode=mode, run_dir=str(lockgate_env), run_id=ctx.run_id,
        )  # fmt: skip

    def replay_challenger(plan: QualityPlan) -> str:
        replayed.append(plan.mode)
        return f"{plan.run_dir}/replay.jsonl"

    def judge_quality(plan: QualityPlan, replay_path: str | None) -> str:
        judged[plan.mode] = replay_path
        return plan.mode

    monkeypatch.setattr(quality, "plan_quality", plan_quality)
    monkeypatch.setattr(quality, "replay_challenger", replay_challenger)
    monkeypatch.setattr(quality, "judge_quality", judge_quality)
    monkeypatch.setattr(lockgate.evidence, "evidence_payload", lambda summary: {"kind": "quality", "mode": summary})
    for challenger, day, replay_state in (("2", 5, "success"), ("3", 6, "skipped")):
        run = quality_dag.test(
            logical_date=LOGICAL + timedelta(days=day),
            run_conf={"model": "lockgate-demo", "challenger_version": challenger, "champion_version": "1"},
        )
        states = {ti.task_id: ti.state for ti in run.get_task_instances() if ti.task_id != "watched_models"}
        assert states == {"plan": "success", "needs_replay": replay_state, "replay": replay_state, "judge": "success"}
    assert replayed == ["replay"]
    assert judged == {"replay": f"{lockgate_env}/replay.jsonl", "traffic": None}


@pytest.mark.parametrize("bad", [{"sample_size": 0}, {"rubrics": ["vibes"]}, {"model": ""}])
def test_bad_params_are_config_errors(bad: dict) -> None:
    from lockgate.errors import ConfigError
    from lockgate.jobs.quality import QualityParams

    with pytest.raises(ConfigError):
        QualityParams.from_params({"model": "lockgate-demo", **bad} if "model" not in bad else bad)
