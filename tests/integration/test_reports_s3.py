"""Reports in an S3-compatible store: the live job end to end with `LOCKGATE_REPORTS_URL=s3://...`.

A local S3 server (moto's server mode, started here on a free port) stands in for S3; s3fs finds it
through `AWS_ENDPOINT_URL`, the variable a deployment sets for MinIO or any S3-compatible server. The
job writes its run folder locally and the publish step uploads it; the plugin then serves the report
from the bucket with the local folder gone, and the state database (the real PostgreSQL) holds the
summary as the latest evidence, which a backfill of an older window does not replace.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.devtools.testing.registry import policy_for, register_stub_version, sqlite_mlflow_store
from lockgate.jobs.context import RunContext
from lockgate.logs.db import make_engine

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "s3-model"
BUCKET = "lockgate-reports"
START = datetime(2026, 3, 1, tzinfo=UTC)
CURRENT = (START + timedelta(days=7), START + timedelta(days=8))
BACKFILL = (START + timedelta(days=5), START + timedelta(days=6))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on localhost, with an empty bucket."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }.items():
                mp.setenv(name, value)
            import fsspec

            fsspec.filesystem("s3", skip_instance_cache=True).mkdir(BUCKET)
            yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, pg_url: str, s3_endpoint: str) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("reports_s3")
    policy = policy_for(MODEL, require_approval=False).model_dump(mode="json")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))  # the worker's staging folder
        mp.setenv("LOCKGATE_REPORTS_URL", f"s3://{BUCKET}/reports")
        mp.setenv("LOCKGATE_LOGS_DB_URL", pg_url)
        mp.setenv("LOCKGATE_STATE_DB_URL", pg_url)
        mp.setenv("LOCKGATE_CONFIG", str(home / "policy.yaml"))
        uri = sqlite_mlflow_store(home / "mlflow.db")
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        (home / "policy.yaml").write_text(yaml.safe_dump(policy))
        register_stub_version(MODEL, uri, alias="champion", artifact_root=home / "artifacts")
        challenger = register_stub_version(MODEL, uri, alias="challenger", artifact_root=home / "artifacts")
        engine = make_engine(pg_url)
        seed_logs(
            engine,
            TrafficSpec(
                model_name=MODEL,
                reference_start=START,
                reference_days=7,
                current_days=1,
                reference_rows=400,
                current_rows=600,
                reference_versions=[VersionTraffic("1")],
                current_versions=[VersionTraffic("1", share=0.7), VersionTraffic(challenger, share=0.3)],
                seed=5,
            ),
        )
        engine.dispose()
        yield home


def _run(run_key: str, interval: tuple[datetime, datetime]) -> Any:
    from lockgate.jobs.live import run_live

    return run_live(RunContext(MODEL, run_key=run_key, data_interval=interval), embed_relevance=False)


def _s3() -> Any:
    import fsspec

    return fsspec.filesystem("s3", skip_instance_cache=True)


@pytest.fixture
def plugin_client(env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    spec = importlib.util.spec_from_file_location("lockgate_plugin_s3", ROOT / "plugins" / "lockgate_plugin.py")
    assert spec and spec.loader
    plugin = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = plugin
    spec.loader.exec_module(plugin)
    monkeypatch.setattr(api_app._AuthManagerState, "instance", SimpleAuthManager())
    plugin.app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="admin", role="admin")
    yield TestClient(plugin.app)
    plugin.app.dependency_overrides.clear()


def test_the_live_job_publishes_into_s3_and_the_state_database(env: Path, plugin_client: Any) -> None:
    from lockgate.reports.store import reports_store
    from lockgate.reports.summaries import latest_evidence, read_latest

    summary = _run("current-run", CURRENT)
    s3 = _s3()
    run_prefix = f"{BUCKET}/reports/live/{MODEL}/current-run"
    assert {f"{run_prefix}/report.html", f"{run_prefix}/summary.json"} <= set(s3.find(f"{BUCKET}/reports"))
    latest_key = f"{BUCKET}/reports/live/{MODEL}/latest.json"
    assert json.loads(s3.cat_file(latest_key))["run_key"] == "current-run"

    # No shared volume: the worker's staging folder is gone, the bucket and the state database remain.
    shutil.rmtree(env / "reports")
    stored = latest_evidence("live", MODEL)
    assert stored is not None and stored.run_key == "current-run" and stored.content_hash == summary.content_hash
    assert read_latest(MODEL, ["live", "drift"]) == ({"live": stored, "drift": None}, {})
    page = plugin_client.get(f"/reports/live/{MODEL}/current-run/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content == s3.cat_file(f"{run_prefix}/report.html")
    assert plugin_client.get(f"/reports/live/{MODEL}/current-run/summary.json").json()["run_key"] == "current-run"
    for bad in (f"live/{MODEL}/nothing/report.html", f"live/{MODEL}/current-run/../../../../etc/passwd"):
        assert plugin_client.get(f"/reports/{bad}").status_code == 404, bad
    index = plugin_client.get("/api/reports", params={"model": MODEL}).json()
    assert index[0]["href"] == f"/lockgate/reports/live/{MODEL}/current-run/report.html"

    # A backfill of an older window is published (its own report), and the latest stays the current run.
    backfill = _run("backfill-run", BACKFILL)
    assert backfill.window_end is not None and summary.window_end is not None
    assert backfill.window_end < summary.window_end
    assert s3.isfile(f"{BUCKET}/reports/live/{MODEL}/backfill-run/report.html")
    latest = latest_evidence("live", MODEL)
    assert latest is not None and latest.run_key == "current-run"
    assert json.loads(s3.cat_file(latest_key))["run_key"] == "current-run"
    assert reports_store().list(f"live/{MODEL}/backfill-run")[-1].endswith("summary.json")

    # An upgraded install whose state database holds no evidence yet: the bucket's latest.json becomes it.
    from lockgate.reports.summaries import import_latest_files

    fresh = make_engine(f"sqlite:///{env / 'upgraded-state.db'}")
    try:
        result = import_latest_files(reports_store(), fresh)
        assert result.became_latest == [f"live/{MODEL}/latest.json"] and not result.malformed
        with fresh.connect() as conn:
            imported = latest_evidence("live", MODEL, conn)
        assert imported is not None and imported.run_key == "current-run"
        assert import_latest_files(reports_store(), fresh).already_recorded == [f"live/{MODEL}/latest.json"]
    finally:
        fresh.dispose()


def test_replayed_answers_reach_a_judge_on_another_host_through_the_store(env: Path) -> None:
    """The quality job's replay runs on the GPU queue and its judge on the default one: the replayed
    answers travel through the reports store, not a shared folder."""
    from lockgate.jobs.quality.replay import fetch_replay, share_replay

    run_dir = env / "reports" / "quality" / MODEL / "replay-run"
    run_dir.mkdir(parents=True)
    replay = run_dir / "replay.jsonl"
    replay.write_text('{"request_id": "r1", "prompt": "p", "response": "a"}\n')
    share_replay(replay)
    assert _s3().cat_file(f"{BUCKET}/reports/quality/{MODEL}/replay-run/replay.jsonl").startswith(b'{"request_id"')
    replay.unlink()  # the judge's host: no such file
    assert fetch_replay(replay) is True
    assert replay.read_text().startswith('{"request_id": "r1"')
    assert fetch_replay(replay) is False  # already here: nothing to fetch
