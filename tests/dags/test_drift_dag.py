"""`lockgate_drift` with `dag.test()` on seeded logs with injected drift: the injected columns are flagged,
the others are not, and the drift Asset event carries the summary."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.devtools.testing.registry import sqlite_mlflow_store
from lockgate.evidence import latest_summary_path, read_summary
from lockgate.logs.db import make_engine

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "lockgate_drift.py"
MODEL = "dag-drift-m"
SPEC = TrafficSpec(
    model_name=MODEL,
    reference_start=datetime(2026, 1, 1, tzinfo=UTC),
    reference_days=7,
    current_days=1,
    reference_rows=400,
    current_rows=300,
    reference_versions=[VersionTraffic("1")],
    current_versions=[VersionTraffic("1", share=0.7), VersionTraffic("2", share=0.3)],
    topic_drift=0.6,
    prompt_length_factor=2.5,
    malformed_rate=0.02,
    hostile_rate=0.05,
    seed=3,
)
INJECTED = {"prompt_tokens", "prompt_length", "prompt_words", "prompt_embedding"}
UNTOUCHED = {"latency_ms", "status", "prompt_has_link", "response_valid_json"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory, airflow_db):
    home = tmp_path_factory.mktemp("drift_dag")
    policy = {
        "models": [
            {
                "name": MODEL,
                "require_approval": False,
                "windows": {"reference": {"mode": "trailing", "days": 7}, "current": {"mode": "data_interval"}},
            }
        ],
        "drift": {"sample_size": 400, "embedding_sample_size": 80},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))
        mp.setenv("MLFLOW_TRACKING_URI", sqlite_mlflow_store(home / "mlflow.db"))
        mp.setenv("LOCKGATE_LOGS_DB_URL", f"sqlite:///{home / 'logs.db'}")
        mp.setenv("LOCKGATE_CONFIG", str(home / "policy.yaml"))
        (home / "policy.yaml").write_text(yaml.safe_dump(policy))
        engine = make_engine(f"sqlite:///{home / 'logs.db'}")
        seed_logs(engine, SPEC)
        engine.dispose()
        yield home


@pytest.fixture(scope="module")
def dag(world, load_dag):
    return load_dag(DAG_FILE, "lockgate_drift")


def test_dag_file_is_thin_and_its_form_is_typed(dag_info):
    info = dag_info(DAG_FILE, "lockgate_drift")
    assert info["errors"] == {} and info["heavy"] == []
    assert set(info["params"]) == {
        "model",
        "reference_start",
        "reference_end",
        "current_start",
        "current_end",
        "sample_size",
    }
    assert all(p.get("title") and p.get("description") for p in info["params"].values())
    assert info["params"]["sample_size"]["type"] == ["null", "integer"]
    assert info["params"]["current_start"]["format"] == "date-time"
    assert info["outlets"] == ["x-lockgate://evidence/drift"]
    assert info["timetable"] == "CronDataIntervalTimetable"
    assert info["tags"] == ["lockgate"] and info["doc"] and info["catchup"] is False


def test_dag_test_flags_the_injected_columns_only(dag, world, asset_events):
    # The data interval of a manual run at 2026-01-09 00:00 is the day before: the seeded current period.
    dr = dag.test(logical_date=datetime(2026, 1, 9, tzinfo=UTC), run_conf={"model": MODEL})
    assert dr.state == "success"
    summary = read_summary(latest_summary_path(world / "reports", "drift", MODEL))
    assert summary.run_id == dr.run_id and summary.dag_id == "lockgate_drift"
    assert (summary.window_start, summary.window_end) == (SPEC.current_start, SPEC.current_end)
    drift = summary.details["drift"]
    assert INJECTED <= set(drift["drifted_columns"])
    assert not UNTOUCHED & set(drift["drifted_columns"])
    assert summary.metrics["drift_share"].model.value > 0.30

    (extra,) = asset_events("x-lockgate://evidence/drift", dr.run_id)
    assert extra["summary_path"] == str(Path(summary.report_path).with_name("summary.json"))
    assert extra["kind"] == "drift" and extra["model"] == MODEL and extra["run_key"] == dr.run_id
    assert extra["evidence_hash"] == summary.content_hash
    assert extra["facts"]["drift_detected"] is True
    assert extra["headline"]["drift_share.model"] == pytest.approx(summary.metrics["drift_share"].model.value)
    assert set(extra["facts"]["drifted_columns"]) == set(drift["drifted_columns"])
    assert extra["sample_sizes"]["current"] == summary.sample_sizes["current"]
    assert sum(extra["quarantined"].values()) == sum(summary.quarantined.values()) > 0
    assert Path(summary.report_path).exists()
    assert (Path(summary.report_path).parent / "evidently.html").exists()


def test_bad_params_fail_without_retry(dag, world):
    dr = dag.test(
        logical_date=datetime(2026, 1, 10, tzinfo=UTC),
        run_conf={"model": MODEL, "current_start": "2026-01-08T00:00:00+00:00"},  # end missing
    )
    assert dr.state == "failed"
    states = {(ti.task_id, ti.map_index): (ti.state, ti.try_number) for ti in dr.get_task_instances()}
    assert states == {("watched_models", -1): ("success", 1), ("drift_report", 0): ("failed", 1)}, states
