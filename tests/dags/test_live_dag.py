"""`lockgate_live` with `dag.test()`: one mapped task per watched model builds the production evidence,
and its Asset event carries where the summary is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.devtools.testing.registry import policy_for, register_stub_version, sqlite_mlflow_store
from lockgate.evidence import latest_summary_path, read_summary
from lockgate.logs.db import make_engine

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "lockgate_live.py"
MODELS = ("live-dag-a", "live-dag-b")
START = datetime(2026, 1, 1, tzinfo=UTC)

pytestmark = pytest.mark.slow


def _spec(model: str, champion: str, challenger: str) -> TrafficSpec:
    return TrafficSpec(
        model_name=model,
        reference_start=START,
        reference_days=7,
        current_days=1,
        reference_rows=600,
        current_rows=1000,
        reference_versions=[VersionTraffic(champion)],
        current_versions=[VersionTraffic(champion, share=0.7), VersionTraffic(challenger, share=0.3)],
        malformed_rate=0.02,
        seed=5,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory, airflow_db):
    home = tmp_path_factory.mktemp("live_dag")
    policy = policy_for(*MODELS).model_dump(mode="json")
    policy["live"] = {**policy["live"], "relevance_sample_size": 0, "bootstrap_resamples": 200}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))
        uri = sqlite_mlflow_store(home / "mlflow.db")
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("LOCKGATE_LOGS_DB_URL", f"sqlite:///{home / 'logs.db'}")
        mp.setenv("LOCKGATE_CONFIG", str(home / "policy.yaml"))
        (home / "policy.yaml").write_text(yaml.safe_dump(policy))
        engine = make_engine(f"sqlite:///{home / 'logs.db'}")
        for model in MODELS:
            champion = register_stub_version(model, uri, alias="champion", artifact_root=home / "artifacts")
            challenger = register_stub_version(model, uri, alias="challenger", artifact_root=home / "artifacts")
            seed_logs(engine, _spec(model, champion, challenger))
        engine.dispose()
        yield home


def test_dag_file_is_thin_and_its_form_triggers_with_defaults(dag_info):
    info = dag_info(DAG_FILE, "lockgate_live")
    assert info["errors"] == {} and info["heavy"] == []
    assert info["params"]["model"]["type"] == ["null", "string"]
    assert info["tasks"]["live_evidence"]["outlets"] == ["x-lockgate://evidence/live"]
    assert info["timetable"] == "CronDataIntervalTimetable"
    assert info["tags"] == ["lockgate"] and info["doc"] and info["catchup"] is False


def test_dag_test_builds_live_evidence_for_every_watched_model(world, load_dag, asset_events):
    dag = load_dag(DAG_FILE, "lockgate_live")
    dr = dag.test(logical_date=datetime(2026, 1, 9, tzinfo=UTC))
    assert dr.state == "success"
    events = asset_events("x-lockgate://evidence/live", dr.run_id)
    assert sorted(e["model"] for e in events) == sorted(MODELS)
    for model in MODELS:
        summary = read_summary(latest_summary_path(world / "reports", "live", model))
        assert summary.kind == "live" and summary.status == "ok" and summary.run_id == dr.run_id
        assert summary.details["requests"]["challenger"] >= 200
        assert summary.metrics["ttft_ms_p90"].ratio is not None
        assert Path(summary.report_path).exists()
        (event,) = [e for e in events if e["model"] == model]
        assert event["summary_path"] == str(Path(summary.report_path).with_name("summary.json"))
        assert event["kind"] == "live" and event["run_key"] == dr.run_id
        assert event["evidence_hash"] == summary.content_hash


def test_an_unwatched_model_fails_without_retry(world, load_dag):
    dag = load_dag(DAG_FILE, "lockgate_live")
    dr = dag.test(logical_date=datetime(2026, 1, 10, tzinfo=UTC), run_conf={"model": "not-watched"})
    assert dr.state == "failed"
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    assert tis["watched_models"].state == "failed" and tis["watched_models"].try_number == 1
