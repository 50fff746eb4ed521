"""Shared fixtures: a throwaway PostgreSQL database per test session, isolated lockgate and
Airflow homes, and the embedded SQLite alternatives.

Airflow reads its configuration when first imported, so its environment is set here,
at collection time, before any test module imports it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def shared_pycache() -> Path:
    """One bytecode cache (PYTHONPYCACHEPREFIX) for the stacks and Airflow processes the tests start.

    The stack sets PYTHONPYCACHEPREFIX=<home>/pycache, and with a prefix Python ignores the bytecode
    the install compiled: a fresh temporary home would recompile Airflow, MLflow, Evidently and torch
    in every component and task (~12 s a process on this 2-core machine, many at once when the
    evidence DAGs start). So every stack and Airflow subprocess of the tests shares this one, in the
    repository's default home (ignored by git), seeded from the installed bytecode: a fresh checkout
    (CI) starts warm too. Bytecode is keyed by source path and checked against the source, so sharing
    it is safe.
    """
    from lockgate.devtools.bytecode import seed_bytecode

    shared = ROOT / ".lockgate" / "pycache"
    shared.mkdir(parents=True, exist_ok=True)
    seed_bytecode(shared)
    return shared


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


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (`make test`): each test module on one worker, the live stack's tests together.

    A module runs as it would alone (its module-scoped servers start once, its tests keep their
    order), every test of tests/e2e shares one worker so the live stack starts once, and the
    modules go out in collection order, so that the end-to-end ones stay last on their worker.
    (`--dist loadgroup` would do this with markers, but it renames items in a way pytest 9.2
    ignores.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "tests/e2e" if path.startswith("tests/e2e/") else path

    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)


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
    import sys

    from lockgate.devtools.testing.registry import sqlite_mlflow_store
    from lockgate.devtools.testing.servers import free_port, running_server

    root = tmp_path_factory.mktemp("mlflow_server")
    backend = sqlite_mlflow_store(root / "mlflow.db")  # a migrated store: the server starts faster
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    args = [mlflow_bin, "server", "--backend-store-uri", backend, "--default-artifact-root", (root / "a").as_uri()]
    args += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with running_server(args, env, root / "server.log", f"http://127.0.0.1:{port}") as url:
        yield url


# --------------------------------------------------------------------------- monitoring
# Debian's `prometheus` and `prometheus-pushgateway` on free ports with a temporary config (scrape
# every second, `honor_labels` as in docker/prometheus/prometheus.yml): tests/integration/
# test_prometheus.py pushes decisions to them, and the e2e stack's jobs push there too.

MONITORING_BINARIES = ("prometheus", "prometheus-pushgateway")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own local servers
        return bytes(resp.read())


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}: {log.read_text()[-2000:]}", pytrace=False)
        try:
            _get(url, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout_s} s: {log.read_text()[-2000:]}", pytrace=False)


def _ensure_binaries() -> None:
    if all(shutil.which(b) for b in MONITORING_BINARIES):
        return
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        names = " and ".join(MONITORING_BINARIES)
        pytest.skip(f"{names} are absent and cannot be installed without root (make monitoring-tools)")
    out = subprocess.run(["make", "-C", str(ROOT), "monitoring-tools"], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not all(shutil.which(b) for b in MONITORING_BINARIES):
        pytest.fail(f"make monitoring-tools failed: {out.stderr[-2000:]}", pytrace=False)


@dataclass
class Monitoring:
    pushgateway: str
    prometheus: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = json.loads(_get(url))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_for(self, promql: str, count: int, timeout_s: float = 30) -> list[dict[str, Any]]:
        """The query's series once there are `count` of them (Prometheus scrapes every second)."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if len(result) == count:
                return result
            time.sleep(0.5)
        raise AssertionError(f"{promql}: {len(result)} series after {timeout_s} s, expected {count}: {result}")


@pytest.fixture(scope="session")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    _ensure_binaries()
    tmp = tmp_path_factory.mktemp("monitoring")
    gw_port, prom_port = _free_port(), _free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: pushgateway\n"
        "    honor_labels: true\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{gw_port}']}}]\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        gw_log = tmp / "pushgateway.log"
        with gw_log.open("wb") as out:
            gw = subprocess.Popen(
                ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{gw_port}"], stdout=out, stderr=out
            )
        procs.append(gw)
        prom_log = tmp / "prometheus.log"
        with prom_log.open("wb") as out:
            prom = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=out,
                stderr=out,
            )
        procs.append(prom)
        _wait_ready(f"http://127.0.0.1:{gw_port}/-/ready", gw, gw_log)
        _wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", prom, prom_log)
        yield Monitoring(f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{prom_port}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
