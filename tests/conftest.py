"""Shared fixtures: a throwaway PostgreSQL database per test session, isolated lockgate and
Airflow homes, and the embedded SQLite alternatives.

Airflow reads its configuration when first imported, so its environment is set here,
at collection time, before any test module imports it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="lockgate-tests-"))

# Airflow: an isolated home with a SQLite metadata database, only our DAGs, no examples.
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_SESSION_DIR / 'airflow' / 'airflow.db'}"
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
(_SESSION_DIR / "airflow").mkdir(parents=True, exist_ok=True)

PG_URL_ENV = "LOCKGATE_TEST_PG_URL"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _pg_admin_url() -> str:
    return os.environ.get(PG_URL_ENV, DEFAULT_PG)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end.

    Never skipped: without a server the tests fail with how to provide one.
    """
    from pytest_postgresql.janitor import DatabaseJanitor
    from sqlalchemy.engine import make_url

    admin = make_url(_pg_admin_url())
    name = f"lockgate_test_{uuid.uuid4().hex[:8]}"
    janitor = DatabaseJanitor(
        user=admin.username or "postgres",
        host=admin.host or "127.0.0.1",
        port=admin.port or 5432,
        dbname=name,
        version=None,
        connection_timeout=5,
        password=admin.password,
    )
    try:
        janitor.init()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(
            f"PostgreSQL is needed for these tests and is not reachable at {admin.render_as_string()}: {exc}. "
            f"Start it (on this machine kind: pg_ctlcluster --skip-systemctl-redirect 15 main start) "
            f"or point {PG_URL_ENV} at a server where this user may create databases.",
            pytrace=False,
        )
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        janitor.drop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'logs.db'}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the end-to-end tests last.

    Their stack is session-scoped and so is its environment (LOCKGATE_HOME, ports, the
    PostgreSQL logs URL): running them last keeps it out of every other test, and the quick
    tests fail first.
    """
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


@pytest.fixture(params=["sqlite", "postgres"])
def logs_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The log store on both backends; each test gets an empty table on Postgres."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'logs.db'}"
        return
    url = request.getfixturevalue("pg_url")
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS inference_logs"))
    engine.dispose()
    yield url


@pytest.fixture
def lockgate_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LOCKGATE_HOME, reports and an embedded MLflow store under tmp_path."""
    home = tmp_path / "lockgate_home"
    home.mkdir()
    monkeypatch.setenv("LOCKGATE_HOME", str(home))
    monkeypatch.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.setenv("LOCKGATE_LOGS_DB_URL", f"sqlite:///{home / 'logs.db'}")
    return home


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on a free port (SQLite backend in a temporary folder, job runner off); yields its URL."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from lockgate.registry.testing import sqlite_mlflow_store

    root = tmp_path_factory.mktemp("mlflow_server")
    backend = sqlite_mlflow_store(root / "mlflow.db")  # a migrated store: the server starts faster
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    args = [mlflow_bin, "server", "--backend-store-uri", backend, "--default-artifact-root", (root / "a").as_uri()]
    args += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with (root / "server.log").open("w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
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
