"""The registry adapter and a whole promotion against a real `mlflow server` process over REST."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from lockgate.errors import ServiceUnavailableError
from lockgate.jobs.promotion import run_promotion
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry, RegistryState
from lockgate.registry.audit import list_audit, state_engine
from lockgate.registry.commands import approve
from lockgate.registry.testing import (
    passing_evidence,
    policy_for,
    register_stub_version,
    sqlite_mlflow_store,
    write_evidence,
)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free port, SQLite backend in a temporary folder, job runner off."""
    root = tmp_path_factory.mktemp("mlflow_server")
    backend = sqlite_mlflow_store(root / "mlflow.db")  # a migrated store: the server starts faster
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            backend,
            "--default-artifact-root",
            (root / "artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group: teardown stops the server and its workers
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited {proc.returncode}:\n{(root / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy in 180 s:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_promotion_over_rest(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    name = f"rest-{uuid.uuid4().hex[:8]}"
    v1 = register_stub_version(name, mlflow_server, alias="champion")
    v2 = register_stub_version(name, mlflow_server, alias="challenger")
    registry = ModelRegistry(mlflow_server)
    state = registry.state(name)
    assert state == RegistryState(champion=v1, challenger=v2)
    assert all(isinstance(v, str) for v in (state.champion, state.challenger))  # REST gives str, as SQLite's int

    policy = policy_for(name)
    reports = tmp_path / "reports"
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    write_evidence(reports, passing_evidence(name, v2, v1, datetime.now(UTC) - timedelta(hours=1)))
    kwargs = {"policy": policy, "registry": registry, "state_url": state_url, "reports_dir": reports}

    assert run_promotion(name, run_key="r1", **kwargs).action == "await_approval"
    assert registry.versions_with_status(name, "awaiting_approval")[0][0] == v2
    approve(name, v2, "alice", policy=policy, registry=registry, state_url=state_url)
    decision = run_promotion(name, run_key="r2", **kwargs)
    assert decision.action == "promote" and decision.outcome == "moved"
    assert registry.state(name) == RegistryState(champion=v2, challenger=None, previous_champion=v1)
    assert registry.version_tags(name, v2)[T.STATUS] == "promoted"
    assert T.LAST_MOVE in registry.registered_model_tags(name)
    moves = [a for a in list_audit(state_engine(state_url), name, kind="alias_move") if a.alias == "champion"]
    assert [(m.from_version, m.to_version) for m in moves] == [(v1, v2)]


def test_a_server_that_does_not_answer_is_one_clear_error():
    port = _free_port()
    with pytest.raises(ServiceUnavailableError, match=f"127.0.0.1:{port}") as info:
        ModelRegistry(f"http://127.0.0.1:{port}")
    assert info.value.code == "service_unavailable"
