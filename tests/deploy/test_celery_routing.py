"""A real CeleryExecutor run on this machine: tasks on queue `gpu` reach only the worker that listens on it.

What runs, each in its own process group, against a throwaway PostgreSQL database and a Redis
database number of our own:

* the deployment's init job, `docker/airflow/init_stack.py` (`airflow db migrate`, then
  `lockgate settings apply` with the project's pools, `gpu` among them), then
  `airflow dags reserialize` and `airflow dags trigger` (the public CLI, as an operator would);
* `airflow api-server --apps execution` (Airflow 3 tasks report to the Execution API);
* `airflow scheduler` with `AIRFLOW__CORE__EXECUTOR=CeleryExecutor`;
* two `airflow celery worker` processes, `-c 1`, one on `--queues default`, one on
  `--queues gpu`, each marked by an environment variable the tasks record.

The DAG mirrors lockgate's routing: GPU work has `queue="gpu", pool="gpu"`. Every wait has a
deadline, every process group is torn down even on failure, and the logs are printed when a
check fails.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import subprocess_env
from .test_lock import test_celery_executor_imports as check_celery_executor_imports

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
INIT_STACK = [sys.executable, str(ROOT / "docker" / "airflow" / "init_stack.py")]
DAG_ID = "lockgate_celery_routing"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# A database number of our own so that a FLUSHDB cannot touch anyone else's keys.
REDIS_DB = int(os.environ.get("LOCKGATE_TEST_REDIS_DB", "11"))
REDIS_HINT = 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"

# Deadlines (seconds). This machine kind is 2 shared cores: Airflow processes take 10-40 s to start.
MIGRATE_TIMEOUT = 300
RUN_TIMEOUT = 240
STOP_TIMEOUT = 20

DAG_SOURCE = '''\
"""Two tasks on two Celery queues; each records the worker that ran it."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pendulum
from airflow.sdk import dag, get_current_context, task

OUT = Path({out!r})


def _record(task_id: str) -> dict:
    ti = get_current_context()["ti"]
    row = {{
        "task_id": task_id,
        "worker": os.environ.get("LOCKGATE_TEST_WORKER"),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "queue": ti.task.queue,
        "pool": ti.task.pool,
    }}
    (OUT / f"{{task_id}}.json").write_text(json.dumps(row))
    return row


@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def lockgate_celery_routing() -> None:
    @task(queue="default")
    def on_default() -> dict:
        return _record("on_default")

    @task(queue="gpu", pool="gpu")
    def on_gpu() -> dict:
        return _record("on_gpu")

    on_default()
    on_gpu()


lockgate_celery_routing()
'''


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Stack:
    """Processes started by this test, each in its own session so that a group kill takes its children."""

    logs: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it until stop()
        self.procs[name] = subprocess.Popen(
            argv,
            env={**self.env, **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def run(self, name: str, argv: list[str], timeout: float) -> None:
        """A one-shot command; fails the test with its log when it fails or overruns."""
        self.start(name, argv)
        proc = self.procs[name]
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{' '.join(argv)}` took more than {timeout:.0f} s\n{self.diagnostics()}")
        if rc != 0:
            pytest.fail(f"`{' '.join(argv)}` exited {rc}\n{self.diagnostics()}")

    def check_alive(self, *names: str) -> None:
        dead = {n: self.procs[n].returncode for n in names if self.procs[n].poll() is not None}
        if dead:
            pytest.fail(f"processes exited early: {dead}\n{self.diagnostics()}")

    def stop(self) -> None:
        """SIGTERM every group, then SIGKILL what is left after STOP_TIMEOUT."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        for proc in self.procs.values():
            # The group may outlive its leader (task processes forked by a worker): kill it regardless.
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def diagnostics(self) -> str:
        parts = []
        for name, proc in self.procs.items():
            parts.append(f"----- {name} (exit {proc.poll()}) -----\n{_tail(self.logs / f'{name}.log')}")
        return "\n".join(parts)


def _wait_for(what: str, check: Callable[[], Any], timeout: float, stack: Stack, alive: tuple[str, ...]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive(*alive)
        result = check()
        if result:
            return result
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{stack.diagnostics()}")


@pytest.fixture
def redis_db() -> Iterator[str]:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is needed at {REDIS_HOST}:{REDIS_PORT} ({exc}). Start it with: {REDIS_HINT}", pytrace=False)
    client.flushdb()  # our own database number: leftovers of an earlier run only
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def airflow_pg() -> Iterator[str]:
    """A throwaway PostgreSQL database for the Airflow metadata and the Celery results."""
    import sqlalchemy as sa

    admin = sa.engine.make_url(os.environ.get("LOCKGATE_TEST_PG_URL", DEFAULT_PG))
    name = f"lockgate_celery_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.fail(
            f"PostgreSQL is needed at {admin.render_as_string()}: {exc}. Start it (on this machine kind: "
            "pg_ctlcluster --skip-systemctl-redirect 15 main start) or set LOCKGATE_TEST_PG_URL.",
            pytrace=False,
        )
    try:
        yield admin.set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def _airflow_env(home: Path, dags: Path, db_url: str, broker: str, api_port: int, pycache: Path) -> dict[str, str]:
    # The children see only the configuration below (see subprocess_env).
    env = subprocess_env(pycache)
    api = f"http://127.0.0.1:{api_port}"
    env.update(
        {
            "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            # lockgate's own state (and its idea of a running local stack) stays in this test's tmp.
            "LOCKGATE_HOME": str(home.parent / "lockgate_home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "default",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        }
    )
    return env


def _dag_run_state(db_url: str) -> tuple[str | None, list[dict[str, Any]]]:
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            run = conn.execute(sa.text("SELECT state FROM dag_run WHERE dag_id = :d"), {"d": DAG_ID}).scalar()
            tis = conn.execute(
                sa.text("SELECT task_id, state, queue, pool, hostname FROM task_instance WHERE dag_id = :d"),
                {"d": DAG_ID},
            )
            return run, [dict(r._mapping) for r in tis]
    finally:
        engine.dispose()


def test_gpu_queue_reaches_only_the_gpu_worker(
    tmp_path: Path, redis_db: str, airflow_pg: str, pycache_prefix: Path
) -> None:
    check_celery_executor_imports(pycache_prefix)  # fail in seconds, not after the workers' start-up timeouts
    home, dags, out, logs = (tmp_path / d for d in ("airflow", "dags", "out", "logs"))
    for d in (home / "plugins", dags, out, logs):
        d.mkdir(parents=True)
    (dags / f"{DAG_ID}.py").write_text(DAG_SOURCE.format(out=str(out), dag_id=DAG_ID))
    env = _airflow_env(home, dags, airflow_pg, redis_db, _free_port(), pycache_prefix)
    stack = Stack(logs=logs, env=env)
    servers = ("api-server", "scheduler", "worker-default", "worker-gpu")
    try:
        # The init job migrates and creates the pools (the GPU task's pool must exist to be queued).
        stack.run("init", INIT_STACK, timeout=MIGRATE_TIMEOUT)
        stack.start("api-server", [AIRFLOW, "api-server", "--apps", "execution", "--workers", "1"])
        stack.start("scheduler", [AIRFLOW, "scheduler"])
        for queue in ("default", "gpu"):
            stack.start(
                f"worker-{queue}",
                [AIRFLOW, "celery", "worker", "--queues", queue, "--concurrency", "1"]
                + ["--celery-hostname", f"{queue}-worker@%h", "--skip-serve-logs"]
                + ["--without-mingle", "--without-gossip"],
                extra_env={"LOCKGATE_TEST_WORKER": f"{queue}-worker"},
            )
        stack.run("reserialize", [AIRFLOW, "dags", "reserialize"], timeout=120)
        stack.run("trigger", [AIRFLOW, "dags", "trigger", DAG_ID], timeout=120)

        def finished() -> tuple[str, list[dict[str, Any]]] | None:
            state, tis = _dag_run_state(airflow_pg)
            return (state, tis) if state in ("success", "failed") else None

        state, tis = _wait_for("the DAG run to finish", finished, RUN_TIMEOUT, stack, servers)
        assert state == "success", f"DAG run {state}: {tis}\n{stack.diagnostics()}"

        ran = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
        assert set(ran) == {"on_default", "on_gpu"}, ran
        # The proof: each task ran in the process tree of the worker listening on its queue.
        assert ran["on_gpu"]["worker"] == "gpu-worker", ran
        assert ran["on_default"]["worker"] == "default-worker", ran
        assert (ran["on_gpu"]["queue"], ran["on_gpu"]["pool"]) == ("gpu", "gpu")
        by_task = {t["task_id"]: t for t in tis}
        assert by_task["on_gpu"]["queue"] == "gpu" and by_task["on_gpu"]["pool"] == "gpu", by_task
        assert by_task["on_default"]["queue"] == "default", by_task
    except BaseException:
        print(stack.diagnostics())  # shown by pytest with the failure
        raise
    finally:
        stack.stop()
