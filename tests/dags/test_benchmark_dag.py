"""`lockgate_benchmark` with `dag.test()` on CPU with the tiny model: report, MLflow runs, a summary the gates
use, and the benchmark Asset event; bad input ends in an error summary, not a failed DAG run."""

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
DAG_FILE = ROOT / "dags" / "lockgate_benchmark.py"
MODEL = "dag-bench-m"
SPEC = TrafficSpec(
    model_name=MODEL,
    reference_start=datetime(2026, 1, 1, tzinfo=UTC),
    reference_days=7,
    current_days=1,
    reference_rows=20,
    current_rows=60,
    reference_versions=[VersionTraffic("1")],
    current_versions=[VersionTraffic("1")],
    seed=5,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory, airflow_db):
    from lockgate.devtools.tiny_model import build_tiny_model
    from lockgate.registry.artifacts import register_directory

    home = tmp_path_factory.mktemp("bench_dag")
    shipped = yaml.safe_load((ROOT / "include" / "lockgate.yaml").read_text())
    policy = {
        "models": [{**shipped["models"][0], "name": MODEL}],
        "statistics": {"bootstrap_resamples": 200},
        "benchmark": {
            **shipped["benchmark"],
            "batch_sizes": [1, 2],
            "max_new_tokens": 3,
            "repetitions": 2,
            "warmups": 1,
            "prompt_samples": 4,
            "max_cv": 100.0,  # two repetitions say nothing about noise; validity is tested elsewhere
        },
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
        model_dir = build_tiny_model(home / "tiny", seed=0)
        versions = {
            "champion": register_directory(MODEL, model_dir, alias="champion"),
            "challenger": register_directory(MODEL, model_dir, alias="challenger"),
        }
        yield {"home": home, **versions}


@pytest.fixture(scope="module")
def dag(world, load_dag):
    return load_dag(DAG_FILE, "lockgate_benchmark")


def test_dag_file_is_thin_and_routes_to_the_gpu(dag_info):
    info = dag_info(DAG_FILE, "lockgate_benchmark")
    assert info["errors"] == {} and info["heavy"] == []
    assert set(info["params"]) == {
        "model",
        "versions",
        "batch_sizes",
        "max_new_tokens",
        "repetitions",
        "serving_configs",
    }
    assert all(p.get("title") and p.get("description") for p in info["params"].values())
    assert info["params"]["versions"]["maxItems"] == 2
    assert info["tasks"]["benchmark"]["pool"] == "gpu" and info["tasks"]["benchmark"]["queue"] == "gpu"
    assert info["tasks"]["publish"]["outlets"] == ["x-lockgate://evidence/benchmark"]
    assert info["tags"] == ["lockgate"] and info["doc"] and info["catchup"] is False


def test_dag_test_publishes_a_benchmark_the_gates_use(dag, world, asset_events):
    from mlflow import MlflowClient

    from lockgate.policy.gates import assess_evidence, evaluate_gate
    from lockgate.policy.schema import load_policy

    # A manual run at 2026-01-09 00:00 has the previous day, the seeded current period, as its data interval.
    dr = dag.test(logical_date=datetime(2026, 1, 9, tzinfo=UTC), run_conf={"model": MODEL})
    assert dr.state == "success"
    summary = read_summary(latest_summary_path(world["home"] / "reports", "benchmark", MODEL))
    assert summary.status == "ok" and summary.valid, summary.message
    assert summary.run_id == dr.run_id and summary.dag_id == "lockgate_benchmark"
    assert (summary.challenger_version, summary.champion_version) == (world["challenger"], world["champion"])
    workload = summary.details["workload"]
    assert workload["source"] == "logs" and workload["n"] == 4
    assert (summary.window_start, summary.window_end) == (SPEC.current_start, SPEC.current_end)
    assert Path(summary.report_path).exists()

    uri = f"sqlite:///{world['home'] / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for role, rid in summary.mlflow_run_ids.items():
        run = client.get_run(rid)
        assert run.data.tags["lockgate.model_version"] == world[role]
        assert run.data.tags["lockgate.airflow_run_id"] == dr.run_id

    policy = load_policy()
    ref = assess_evidence("benchmark", summary, summary.created_at, 48, MODEL)
    for gate in policy.model(MODEL).gates:
        if gate.kind == "benchmark":
            verdict = evaluate_gate(gate, summary, ref, world["challenger"], world["champion"])
            assert verdict.status in ("pass", "fail"), (gate.name, verdict.reason)

    (extra,) = asset_events("x-lockgate://evidence/benchmark", dr.run_id)
    assert extra["summary_path"] == str(Path(summary.report_path).with_name("summary.json"))
    assert extra["status"] == "ok" and extra["valid"] is True
    assert extra["headline"]["ttft_ms_p50.ratio"] == pytest.approx(summary.metrics["ttft_ms_p50"].ratio.value, rel=1e-5)


def test_bad_input_ends_in_an_error_summary_not_a_failed_run(dag, world, asset_events):
    dr = dag.test(logical_date=datetime(2026, 1, 10, tzinfo=UTC), run_conf={"model": MODEL, "versions": ["99"]})
    assert dr.state == "success"
    (extra,) = asset_events("x-lockgate://evidence/benchmark", dr.run_id)
    assert extra["status"] == "error" and extra["valid"] is False
    assert "no version 99" in extra["message"]
    summary = read_summary(Path(extra["summary_path"]))
    assert summary.status == "error" and "no version 99" in Path(summary.report_path).read_text()
