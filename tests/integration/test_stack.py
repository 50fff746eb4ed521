"""The local stack: process sessions, unreachable services, and one real `up`/`down` cycle.

The process tests start small Python processes (no Airflow) and check that `stop` finds
and ends a whole session, children that left the process group included, and never
signals a process whose pid merely matches a record. The e2e test starts the real
Airflow 3 components and MLflow in a temporary LOCKGATE_HOME on free ports.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from lockgate.cli import main
from lockgate.devtools.stack import commands
from lockgate.devtools.stack.env import StackPaths
from lockgate.devtools.stack.health import require_mlflow
from lockgate.devtools.stack.processes import (
    ProcessRecord,
    StackError,
    free_port,
    is_alive,
    load_state,
    port_in_use,
    port_owner,
    session_members,
    spawn,
    stop,
)
from lockgate.devtools.stack.settings_apply import align_stack_connections, parse_settings
from lockgate.errors import ServiceUnavailableError

ROOT = Path(__file__).resolve().parents[2]

# A leader that forks a child which moves to its own process group (as some supervisors
# do) and a grandchild; all stay in the leader's session.
_TREE = textwrap.dedent(
    """
    import os, sys, time
    if os.fork() == 0:
        os.setpgid(0, 0)
        if os.fork() == 0:
            time.sleep(600)
            sys.exit(0)
        time.sleep(600)
        sys.exit(0)
    print("ready", flush=True)
    time.sleep(600)
    """
)

_STUBBORN = textwrap.dedent(
    """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(600)
    """
)


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _log_says_ready(record: ProcessRecord) -> bool:
    # The log's first line quotes the command (which contains the word): look for the output line.
    return "ready" in Path(record.log).read_text().splitlines()


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[list[ProcessRecord]]:
    """Records of processes a test spawns; whatever is left is stopped afterwards."""
    records: list[ProcessRecord] = []
    yield records
    stop(records, timeout=2)


def _spawn(tmp_path: Path, name: str, code: str) -> ProcessRecord:
    record, _ = spawn(name, [sys.executable, "-c", code], dict(os.environ), tmp_path / f"{name}.log", cwd=tmp_path)
    return record


def test_stop_ends_the_whole_session(tmp_path: Path, spawned: list[ProcessRecord]) -> None:
    record = _spawn(tmp_path, "tree", _TREE)
    spawned.append(record)
    _wait_for(lambda: len(session_members(record)) == 3)
    members = session_members(record)
    assert {os.getsid(p.pid) for p in members} == {record.pid}
    assert len({os.getpgid(p.pid) for p in members}) == 2  # one child left the group

    report = stop([record], timeout=10)

    assert report.left == [] and report.killed == []
    assert report.terminated == 3
    assert not is_alive(record)
    assert session_members(record) == []
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in members)


def test_stop_kills_what_ignores_sigterm(tmp_path: Path, spawned: list[ProcessRecord]) -> None:
    record = _spawn(tmp_path, "stubborn", _STUBBORN)
    spawned.append(record)
    _wait_for(lambda: _log_says_ready(record))

    report = stop([record], timeout=1)

    assert len(report.killed) == 1 and report.left == []
    assert not is_alive(record)


def test_a_recycled_pid_is_never_signalled(tmp_path: Path, spawned: list[ProcessRecord]) -> None:
    bystander = _spawn(tmp_path, "bystander", "import time; print('ready', flush=True); time.sleep(600)")
    spawned.append(bystander)
    _wait_for(lambda: _log_says_ready(bystander))
    # A record with the bystander's pid but another start time: what a recycled pid looks like.
    stale = bystander.model_copy(update={"create_time": bystander.create_time - 3600})

    assert not is_alive(stale)
    assert session_members(stale) == []
    report = stop([stale], timeout=1)

    assert report.terminated == 0
    assert is_alive(bystander)


def test_port_checks() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use(port)
        assert port_owner(port) is not None and str(os.getpid()) in (port_owner(port) or "")
    assert not port_in_use(free_port())


def _namespace(**kwargs: object) -> argparse.Namespace:
    return argparse.Namespace(**kwargs)


def test_up_refuses_a_taken_port(lockgate_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        monkeypatch.setenv("LOCKGATE_AIRFLOW_PORT", str(port))
        monkeypatch.setenv("LOCKGATE_MLFLOW_PORT", str(free_port()))
        with pytest.raises(StackError) as info:
            commands.cmd_up(_namespace(timeout=30))
    assert f"port {port} (LOCKGATE_AIRFLOW_PORT) is already in use" in str(info.value)
    assert load_state(StackPaths(lockgate_env)) is None  # nothing was started


def test_down_and_status_without_a_stack(lockgate_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.cmd_down(_namespace()) == 0
    assert "not running" in capsys.readouterr().out
    assert commands.cmd_status(_namespace(model=None)) == 1
    assert "not running" in capsys.readouterr().out


def _fake_components(monkeypatch: pytest.MonkeyPatch, failing: str | None) -> list[ProcessRecord]:
    """Replace the real components with small stubs; `failing` exits at once with a message."""
    started: list[ProcessRecord] = []
    real_spawn = commands.spawn

    def argv(name: str, paths: StackPaths, ports: object) -> list[str]:
        if name == failing:
            return [sys.executable, "-c", f"print('boom: {name} cannot start'); raise SystemExit(3)"]
        return [sys.executable, "-c", f"import time; print('stub {name}', flush=True); time.sleep(600)"]

    def recording_spawn(*args: object, **kwargs: object):  # noqa: ANN202
        record, proc = real_spawn(*args, **kwargs)  # type: ignore[arg-type]
        started.append(record)
        return record, proc

    monkeypatch.setattr(commands, "component_argv", argv)
    monkeypatch.setattr(commands, "spawn", recording_spawn)
    monkeypatch.setattr(commands, "migrate_db", lambda *a, **k: None)
    monkeypatch.setattr(commands, "prepare_logs_database", lambda parsed: set())
    monkeypatch.setattr(commands, "choose_airflow_database", lambda paths, parsed: f"sqlite:///{paths.airflow_db}")
    monkeypatch.setenv("LOCKGATE_AIRFLOW_PORT", str(free_port()))
    monkeypatch.setenv("LOCKGATE_MLFLOW_PORT", str(free_port()))
    return started


@pytest.mark.parametrize(
    ("failing", "timeout", "expected", "log_line"),
    [
        ("scheduler", 60, "scheduler exited during start-up", "boom: scheduler cannot start"),
        (None, 3, "mlflow not healthy before the deadline", "stub mlflow"),
    ],
)
def test_failed_up_shows_the_log_and_stops_everything(
    lockgate_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failing: str | None,
    timeout: float,
    expected: str,
    log_line: str,
) -> None:
    started = _fake_components(monkeypatch, failing)

    with pytest.raises(StackError, match=expected):
        commands.cmd_up(_namespace(timeout=timeout))

    err = capsys.readouterr().err
    assert "--- last lines of" in err and log_line in err
    assert len(started) == 5
    for record in started:
        assert not is_alive(record), record
        assert session_members(record) == [], record
    assert load_state(StackPaths(lockgate_env)) is None


def test_status_with_a_model_delegates(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    fake = types.ModuleType("lockgate.registry.commands")
    calls: list[argparse.Namespace] = []
    fake.cmd_model_status = lambda args: calls.append(args) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lockgate.registry.commands", fake)
    args = _namespace(model="lockgate-demo", limit=3)
    assert commands.cmd_status(args) == 7
    assert calls == [args]


def test_unreachable_mlflow_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailableError) as info:
        require_mlflow(url, timeout=2)
    assert str(info.value).startswith(f"MLflow is not reachable at {url}: ")
    assert "\n" not in str(info.value)


def test_unreachable_metadata_db_is_one_line(
    lockgate_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    monkeypatch.setenv("LOCKGATE_AIRFLOW_DB_URL", f"postgresql://postgres:secret@127.0.0.1:{port}/airflow")
    # The stack's own environment is the target when the caller names no Airflow.
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)

    assert main(["settings", "apply"]) == 2

    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"PostgreSQL is not reachable at postgresql://postgres:***@127.0.0.1:{port}/airflow" in err
    assert "secret" not in err


def test_logs_database_falls_back_when_postgres_is_unreachable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCKGATE_LOGS_DB_URL", raising=False)
    port = free_port()
    parsed = parse_settings(
        {"airflow": {"connections": [{"conn_id": "lockgate_logs", "conn_type": "postgres", "conn_port": port}]}}
    )
    assert commands.prepare_logs_database(parsed) == {"lockgate_logs"}
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"127.0.0.1:{port}" in err and "fall back to the embedded SQLite store" in err

    # An explicit LOCKGATE_LOGS_DB_URL wins: the connection is dropped and the message names the URL.
    monkeypatch.setenv("LOCKGATE_LOGS_DB_URL", "sqlite:////tmp/elsewhere.db")
    aligned, removed = align_stack_connections(
        parsed, logs_db_url="sqlite:////tmp/elsewhere.db", mlflow_url="http://127.0.0.1:5000"
    )
    assert removed == {"lockgate_logs"}
    assert commands.prepare_logs_database(aligned) == {"lockgate_logs"}
    err = capsys.readouterr().err.strip()
    assert "logs database sqlite:////tmp/elsewhere.db (LOCKGATE_LOGS_DB_URL" in err and "fall back" not in err


@pytest.mark.postgres
def test_logs_database_is_created_once(capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    admin = make_url(os.environ.get("LOCKGATE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    name = f"lockgate_stack_test_{uuid.uuid4().hex[:8]}"
    conn_spec = {
        "conn_id": "lockgate_logs",
        "conn_type": "postgres",
        "conn_host": admin.host or "127.0.0.1",
        "conn_port": admin.port or 5432,
        "conn_login": admin.username or "postgres",
        "conn_password": admin.password or "",
        "conn_schema": name,
    }
    parsed = parse_settings({"airflow": {"connections": [conn_spec]}})
    try:
        assert commands.prepare_logs_database(parsed) == set()
        assert "created" in capsys.readouterr().err
        assert commands.prepare_logs_database(parsed) == set()
        assert "exists" in capsys.readouterr().err
    finally:
        pg = psycopg2.connect(
            host=conn_spec["conn_host"],
            port=conn_spec["conn_port"],
            user=conn_spec["conn_login"],
            password=admin.password,
            dbname=admin.database or "postgres",
        )
        pg.autocommit = True
        with pg.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        pg.close()


# --------------------------------------------------------------------------- e2e


def _cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockgate.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.e2e
@pytest.mark.slow
def test_up_status_apply_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_pycache: Path) -> None:
    home = tmp_path / "home"
    # The tests' shared bytecode (tests/conftest.py): a fresh <home>/pycache would recompile every component.
    home.mkdir()
    (home / "pycache").symlink_to(shared_pycache, target_is_directory=True)
    airflow_port, mlflow_port = free_port(), free_port()
    while mlflow_port == airflow_port:
        mlflow_port = free_port()
    env = dict(os.environ)
    # The caller's AIRFLOW_HOME (this test session's) stays set on purpose: the stack must not use it.
    env.update(
        LOCKGATE_HOME=str(home),
        LOCKGATE_AIRFLOW_PORT=str(airflow_port),
        LOCKGATE_MLFLOW_PORT=str(mlflow_port),
        PYTHONUNBUFFERED="1",
    )
    env.pop("LOCKGATE_ADMIN_PASSWORD", None)
    paths = StackPaths(home)
    airflow_url, mlflow_url = f"http://127.0.0.1:{airflow_port}", f"http://127.0.0.1:{mlflow_port}"
    try:
        t0 = time.monotonic()
        up = _cli(env, "up", "--timeout", "420")
        up_s = time.monotonic() - t0
        assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
        print(f"\nlockgate up: healthy in {up_s:.0f} s")

        # Both health endpoints answer.
        with httpx.Client(timeout=10, trust_env=False) as client:
            assert client.get(f"{mlflow_url}/health").status_code == 200
            health = client.get(f"{airflow_url}/api/v2/monitor/health").json()
            for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
                assert health[component]["status"] == "healthy", health

            # The printed login works: a REST v2 token, then the pool from airflow_settings.yaml.
            match = re.search(r"login: admin / (\S+)", up.stdout)
            assert match, up.stdout
            password = match.group(1)
            token_resp = client.post(f"{airflow_url}/auth/token", json={"username": "admin", "password": password})
            assert token_resp.status_code in (200, 201), token_resp.text
            auth = {"Authorization": f"Bearer {token_resp.json()['access_token']}"}
            pool = client.get(f"{airflow_url}/api/v2/pools/gpu", headers=auth)
            assert pool.status_code == 200, pool.text
            assert pool.json()["slots"] == 1

        state = load_state(paths)
        assert state is not None
        records = list(state.processes)
        assert {r.name for r in records} == {"mlflow", "api-server", "scheduler", "dag-processor", "triggerer"}
        assert all(is_alive(r) for r in records)
        # Every component is a session leader of its own.
        assert all(os.getsid(r.pid) == r.pid for r in records)

        # What a program driving the stack (the demo) gets.
        monkeypatch.setenv("LOCKGATE_HOME", str(home))
        info = commands.running_stack()
        assert info is not None
        assert (info.airflow_url, info.mlflow_url, info.password) == (airflow_url, mlflow_url, password)
        assert info.env["AIRFLOW_HOME"] == str(home / "airflow")

        # `up` again: a no-op that says so, same processes.
        again = _cli(env, "up", "--timeout", "120")
        assert again.returncode == 0, again.stderr
        assert "already up" in again.stdout
        assert [r.pid for r in load_state(paths).processes] == [r.pid for r in records]  # type: ignore[union-attr]

        status = _cli(env, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "overall      healthy" in status.stdout

        # `settings apply` against the running stack: an edited file updates only what changed.
        edited = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
        for p in edited["airflow"]["pools"]:
            if p["pool_name"] == "gpu":
                p["pool_slot"] = 2
        settings_file = tmp_path / "airflow_settings.yaml"
        settings_file.write_text(yaml.safe_dump(edited))
        applied = _cli(env, "settings", "apply", "--file", str(settings_file))
        assert applied.returncode == 0, applied.stderr
        assert "the running lockgate stack" in applied.stdout
        lines = {tuple(line.split()[:3]) for line in applied.stdout.splitlines() if line.startswith("  ")}
        assert ("pool", "gpu", "updated") in lines
        assert ("pool", "lockgate_promotion", "unchanged") in lines
        assert ("variable", "lockgate_policy_path", "unchanged") in lines
        with httpx.Client(timeout=10, trust_env=False) as client:
            assert client.get(f"{airflow_url}/api/v2/pools/gpu", headers=auth).json()["slots"] == 2

        t0 = time.monotonic()
        down = _cli(env, "down", timeout=120)
        down_s = time.monotonic() - t0
        assert down.returncode == 0, down.stderr
        print(f"lockgate down: clean in {down_s:.0f} s ({down.stdout.strip()})")

        # Nothing `up` started is left: no recorded leader, no member of their sessions.
        assert load_state(paths) is None
        assert commands.running_stack() is None
        for r in records:
            assert not is_alive(r), r
            assert session_members(r) == [], r
        for port in (airflow_port, mlflow_port, state.ports["worker_log"], state.ports["trigger_log"]):
            assert not port_in_use(port), f"port {port} still in use"
    finally:
        leftover = load_state(paths)
        if leftover is not None:
            _cli(env, "down", timeout=120)
            stop(leftover.processes, timeout=10)


def test_sigterm_is_the_first_signal(tmp_path: Path, spawned: list[ProcessRecord]) -> None:
    # A component that exits cleanly on SIGTERM is never SIGKILLed (graceful shutdown).
    code = textwrap.dedent(
        f"""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (open({str(tmp_path / "got")!r}, 'w').write('TERM'), sys.exit(0)))
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    record = _spawn(tmp_path, "graceful", code)
    spawned.append(record)
    _wait_for(lambda: _log_says_ready(record))
    report = stop([record], timeout=10)
    assert report.killed == [] and report.left == []
    assert (tmp_path / "got").read_text() == "TERM"
