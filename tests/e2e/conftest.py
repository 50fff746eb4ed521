"""End-to-end fixtures: ONE real lockgate stack for every e2e test, driven over HTTP.

`lockgate up` starts the Airflow 3 API server (with UI), scheduler, DAG processor,
triggerer and an MLflow server on free ports, in a temporary LOCKGATE_HOME, with the
inference logs in a throwaway PostgreSQL database (`pg_url`). The demo model is prepared
with the demo's own functions (healthy scenario: two registered versions, a week of
reference traffic and a day with canary traffic). The four evidence DAGs run once
(`evidence_runs`) and the first promotion once (`first_promotion`); both test modules
share those runs, whichever runs first. `lockgate down` always runs at the end, and the
fixture then checks that no process of the stack is left.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from lockgate.devtools.demo import DEMO_MODEL

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "healthy"
PREPARE_TIMEOUT_S = 300
# The demo's own steps (lockgate.devtools.demo): a clean slate, two registered versions with their
# aliases, seeded traffic. Run in a subprocess with the stack's environment: MLflow's global
# tracking URI, torch and transformers stay out of the pytest process (later test modules
# would otherwise inherit a tracking URI pointing at a server that is gone), and the
# subprocess uses the stack's bytecode cache.
PREPARE_SCRIPT = """
import json, sys
from lockgate.devtools.demo import build_and_register, reset_demo_model, seed_demo_logs
from lockgate.registry.adapter import ModelRegistry
from lockgate.devtools.scenarios import get_scenario
from lockgate.settings import get_settings

model, scenario_name, logs_url = sys.argv[1:4]
settings = get_settings()
scenario = get_scenario(scenario_name)
reset_demo_model(model, logs_url, settings.reports_dir)
champion, challenger, previous = build_and_register(settings.home, scenario, model)
rows, promoted_at = seed_demo_logs(logs_url, scenario, champion, challenger, model, previous)
# As the demo does: the champion's promotion time anchors the drift reference (champion_baseline).
ModelRegistry().set_tags(model, champion, {"lockgate.promoted_at": promoted_at.isoformat()})
print(json.dumps({"champion": champion, "challenger": challenger, "rows": rows}))
"""

# Deadlines (seconds), each shorter than the tests' pytest timeout (`pytestmark` in each test
# module) so that a slow step fails with its logs. Measured on this 2-core machine at load ~3:
# stack ready in 40-80 s, demo model 15 s, the three evidence runs together 3.5 min (the live one adds ~1 min), each
# promotion 10-15 s; under heavy load from other work, each step takes 2-3 times longer.
UP_TIMEOUT_S = 420
EVIDENCE_TIMEOUT_S = 540
PROMOTION_TIMEOUT_S = 240
POLL_S = 2.0

# What each evidence run is asked for, as a person would fill in the trigger form; the policy
# (include/lockgate.yaml) is the default one. The smaller asks keep the module short on two
# CPU cores without touching what the gates read:
# - benchmark: batch size 1 only (the headline ratios the latency gates read come from the
#   smallest batch) and 20 repetitions instead of the policy's 10: each is short, and more of
#   them narrow the ratio intervals that the latency gates bound (1.25 in the demo policy; with the default
#   count, under load from other work, a challenger identical in shape to the champion was
#   once held by an upper bound of 1.27; with 20, TTFT p50 ratios came out at [0.93, 1.04]);
# - drift: 300 rows per window instead of 5,000 (the windows hold ~2,000 and ~1,200 rows);
#   every column, embeddings included, is still tested;
# - quality: the LLM judge asks one rubric instead of five. The demo policy gates on MiniLM
#   relevance and grounding, computed on every sampled row whatever the rubrics; the judge
#   (a random-weight placeholder here) is reported beside them and fails its calibration.
EVIDENCE_CONF: dict[str, dict[str, Any]] = {
    "lockgate_benchmark": {"model": DEMO_MODEL, "batch_sizes": [1], "repetitions": 20},
    "lockgate_drift": {"model": DEMO_MODEL, "sample_size": 300},
    "lockgate_quality": {"model": DEMO_MODEL, "rubrics": ["relevance"]},
    "lockgate_live": {"model": DEMO_MODEL},
}
# `approval_wait_minutes: 0`: the run decides and ends; it does not wait (deferred) for an answer.
PROMOTION_CONF: dict[str, Any] = {"model": DEMO_MODEL, "approval_wait_minutes": 0}
COMPONENTS = ("mlflow", "api-server", "scheduler", "dag-processor", "triggerer")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"


@dataclass
class LiveStack:
    """A running stack, and what a user of it knows: URLs, the admin login, the demo model's versions."""

    airflow_url: str
    mlflow_url: str
    username: str
    password: str
    home: Path
    logs_url: str
    model: str = DEMO_MODEL
    champion: str = ""
    challenger: str = ""
    monitoring: Any = None  # the real Pushgateway and Prometheus the stack's jobs push to (tests/conftest.py)
    _token: str | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ HTTP

    def http(self) -> httpx.Client:
        # trust_env=False: a proxy variable in the environment must not intercept 127.0.0.1.
        return httpx.Client(timeout=30, trust_env=False)

    def token(self) -> str:
        """A REST API v2 token for the admin login (POST /auth/token)."""
        if self._token is None:
            with self.http() as c:
                r = c.post(
                    f"{self.airflow_url}/auth/token", json={"username": self.username, "password": self.password}
                )
            assert r.status_code in (200, 201), f"POST /auth/token: HTTP {r.status_code} {r.text[:300]}"
            self._token = str(r.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        with self.http() as c:
            return c.request(method, f"{self.airflow_url}{path}", headers=headers, **kwargs)

    def api_json(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.api(method, path, **kwargs)
        assert r.status_code < 400, f"{method} {path}: HTTP {r.status_code} {r.text[:500]}"
        return r.json() if r.content else None

    # ------------------------------------------------------------------ DAG runs

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Until the DAG processor has parsed the file (or say why not: an import error, or no file)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.api("GET", f"/api/v2/dags/{dag_id}")
            if r.status_code == 200:
                return
            if time.monotonic() >= deadline:
                errors = self.api("GET", "/api/v2/importErrors").text[:3000]
                pytest.fail(
                    f"DAG {dag_id} is not in Airflow after {timeout:.0f} s (HTTP {r.status_code}); "
                    f"import errors: {errors}\n{self.component_logs(('dag-processor',))}",
                    pytrace=False,
                )
            time.sleep(POLL_S)

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Unpause the DAG and trigger a run with `conf`, as the UI's trigger form does; returns the run id."""
        self.wait_for_dag(dag_id)
        self.api_json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        run = self.api_json("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api_json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"])

    def wait_for_runs(self, runs: dict[str, str], timeout: float) -> None:
        """Poll until every run (dag_id -> run_id) ends; fail with the logs that explain a failure or a timeout."""
        deadline = time.monotonic() + timeout
        pending = dict(runs)
        started = time.monotonic()
        while pending:
            for dag_id, run_id in list(pending.items()):
                state = self.run_state(dag_id, run_id)
                if state == "success":
                    print(f"{dag_id} {run_id}: success after {time.monotonic() - started:.0f} s", flush=True)
                    del pending[dag_id]
                elif state == "failed":
                    pytest.fail(f"{dag_id} run {run_id} failed\n{self.explain(dag_id, run_id)}", pytrace=False)
            if not pending:
                return
            if time.monotonic() >= deadline:
                why = "\n".join(self.explain(d, r) for d, r in pending.items())
                pytest.fail(f"runs still not finished after {timeout:.0f} s: {pending}\n{why}", pytrace=False)
            time.sleep(POLL_S)

    def wait_for_end(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Poll one run until it ends, whatever the outcome; its final state. Fails at the deadline."""
        deadline = time.monotonic() + timeout
        while (state := self.run_state(dag_id, run_id)) not in ("success", "failed"):
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"{dag_id} run {run_id} still {state} after {timeout:.0f} s\n{self.explain(dag_id, run_id)}",
                    pytrace=False,
                )
            time.sleep(POLL_S)
        return state

    def run_dag(self, dag_id: str, conf: dict[str, Any], timeout: float) -> str:
        run_id = self.trigger(dag_id, conf)
        self.wait_for_runs({dag_id: run_id}, timeout)
        return run_id

    def promote(self, why: str) -> str:
        """One lockgate_promotion run for the demo model, to its end; its run id."""
        t0 = time.monotonic()
        run_id = self.run_dag("lockgate_promotion", PROMOTION_CONF, PROMOTION_TIMEOUT_S)
        print(f"lockgate_promotion ({why}) {run_id}: {time.monotonic() - t0:.0f} s", flush=True)
        return run_id

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        data = self.api_json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return list(data["task_instances"])

    def task_log(self, dag_id: str, run_id: str, ti: dict[str, Any], lines: int = 60) -> str:
        """The end of one task try's log, through the REST API (the way CI output can show it)."""
        try_number = max(1, int(ti.get("try_number") or 1))
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{ti['task_id']}/logs/{try_number}"
        params = {"map_index": ti["map_index"]} if ti.get("map_index", -1) >= 0 else {}
        r = self.api("GET", path, params=params, headers={"Accept": "application/json"})
        if r.status_code != 200:
            return f"(log unavailable: HTTP {r.status_code} {r.text[:200]})"
        out = []
        for entry in r.json().get("content", []):
            if isinstance(entry, dict):
                text = f"{entry.get('timestamp', '')} {entry.get('level', '')} {entry.get('event', '')}"
                if entry.get("error_detail"):
                    text += " " + json.dumps(entry["error_detail"])[:4000]
                out.append(text)
            else:
                out.append(str(entry))
        return "\n".join(out[-lines:])

    def explain(self, dag_id: str, run_id: str) -> str:
        """Every task's state, the logs of the tasks that did not succeed, and the components' log tails."""
        parts = [f"=== {dag_id} run {run_id} ==="]
        try:
            tis = self.task_instances(dag_id, run_id)
        except (AssertionError, httpx.HTTPError) as exc:
            tis = []
            parts.append(f"(task instances unavailable: {exc})")
        for ti in tis:
            parts.append(
                f"  {ti['task_id']}[{ti.get('map_index', -1)}]: {ti.get('state')} (try {ti.get('try_number')})"
            )
        for ti in tis:
            if ti.get("state") not in ("success", "skipped", None):
                parts.append(f"--- log of {ti['task_id']} (try {ti.get('try_number')}) ---")
                parts.append(self.task_log(dag_id, run_id, ti))
        parts.append(self.component_logs(("scheduler", "api-server")))
        return "\n".join(parts)

    def component_logs(self, components: tuple[str, ...] = COMPONENTS) -> str:
        logs_dir = self.home / "run" / "logs"
        return "\n".join(
            f"--- last lines of {logs_dir / f'{c}.log'} ---\n{_tail(logs_dir / f'{c}.log')}" for c in components
        )

    # ------------------------------------------------------------------ MLflow REST

    def model_version(self, version: str) -> dict[str, Any]:
        with self.http() as c:
            r = c.get(
                f"{self.mlflow_url}/api/2.0/mlflow/model-versions/get",
                params={"name": self.model, "version": version},
            )
        assert r.status_code == 200, f"MLflow model-versions/get: HTTP {r.status_code} {r.text[:300]}"
        return dict(r.json()["model_version"])

    def version_tags(self, version: str) -> dict[str, str]:
        return {t["key"]: t["value"] for t in self.model_version(version).get("tags", [])}

    def alias(self, alias: str) -> str | None:
        """The version an alias points at, or None when MLflow says it is not set."""
        with self.http() as c:
            r = c.get(
                f"{self.mlflow_url}/api/2.0/mlflow/registered-models/alias",
                params={"name": self.model, "alias": alias},
            )
        # MLflow 3 answers an unset alias with 400 INVALID_PARAMETER_VALUE "... alias X not found."
        if r.status_code == 400 and f"alias {alias} not found" in r.json().get("message", ""):
            return None
        assert r.status_code == 200, f"MLflow registered-models/alias {alias}: HTTP {r.status_code} {r.text[:300]}"
        return str(r.json()["model_version"]["version"])

    def set_version_tag(self, version: str, key: str, value: str) -> None:
        """What a person does in the MLflow UI: set a tag on a model version."""
        with self.http() as c:
            r = c.post(
                f"{self.mlflow_url}/api/2.0/mlflow/model-versions/set-tag",
                json={"name": self.model, "version": version, "key": key, "value": value},
            )
        assert r.status_code == 200, f"MLflow set-tag {key}: HTTP {r.status_code} {r.text[:300]}"


def _shared_bytecode_cache(home: Path, shared: Path) -> None:
    """Point the stack's bytecode cache (<home>/pycache) at the tests' shared one (tests/conftest.py):
    a fresh temporary home would recompile Airflow, MLflow, Evidently and torch in every component and
    task (2-3x slower imports on this machine)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "pycache").symlink_to(shared, target_is_directory=True)


def _leftovers(records: list[Any], ports: list[int]) -> list[str]:
    from lockgate.devtools.stack.processes import is_alive, port_in_use, session_members

    left = [f"{r.name} (pid {r.pid}) alive" for r in records if is_alive(r)]
    left += [f"{r.name}: session member pid {p.pid} {p.name()}" for r in records for p in session_members(r)]
    left += [f"port {p} still in use" for p in ports if port_in_use(p)]
    return left


@pytest.fixture(scope="session")
def stack(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory, monitoring: Any, shared_pycache: Path
) -> Iterator[LiveStack]:
    """The real stack on free ports, the demo model prepared; `lockgate down` always runs after.

    Its jobs and decisions push their metrics to a real Pushgateway that a real Prometheus scrapes.
    """
    from lockgate.devtools.stack import commands
    from lockgate.devtools.stack.env import StackPaths
    from lockgate.devtools.stack.processes import free_port, load_state
    from lockgate.settings import get_settings

    home = tmp_path_factory.mktemp("e2e") / "home"
    _shared_bytecode_cache(home, shared_pycache)
    airflow_port = free_port()
    mlflow_port = free_port()
    while mlflow_port == airflow_port:
        mlflow_port = free_port()
    paths = StackPaths(home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("LOCKGATE_AIRFLOW_PORT", str(airflow_port))
        mp.setenv("LOCKGATE_MLFLOW_PORT", str(mlflow_port))
        # The inference logs, the reports index and the audit trail in a real PostgreSQL server.
        mp.setenv("LOCKGATE_LOGS_DB_URL", pg_url)
        mp.setenv("LOCKGATE_PUSHGATEWAY_URL", monitoring.pushgateway)
        # The tests trigger every run themselves. A cron or Asset-triggered run (the drift DAG's
        # data-interval schedule runs yesterday's interval as soon as it is unpaused; a scheduled
        # promotion would decide on evidence half-written by our runs) would make the outcome
        # depend on the clock. Manual runs still run.
        mp.setenv("AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE", "False")
        mp.setenv("PYTHONUNBUFFERED", "1")
        for var in (
            "LOCKGATE_ADMIN_PASSWORD",
            "LOCKGATE_REPORTS_DIR",
            "LOCKGATE_STATE_DB_URL",
            "LOCKGATE_CONFIG",
            "LOCKGATE_AIRFLOW_URL",
            "LOCKGATE_AIRFLOW_DB_URL",
            "MLFLOW_TRACKING_URI",
        ):
            mp.delenv(var, raising=False)

        records: list[Any] = []
        ports = [airflow_port, mlflow_port]
        live: LiveStack | None = None
        try:
            t0 = time.monotonic()
            assert commands.cmd_up(argparse.Namespace(timeout=UP_TIMEOUT_S)) == 0
            state = load_state(paths)
            assert state is not None, f"`lockgate up` returned but left no {paths.state_file}"
            records = list(state.processes)
            ports += [state.ports["worker_log"], state.ports["trigger_log"]]
            running = commands.running_stack(get_settings())
            assert running is not None and running.password, "the stack is not fully running after `lockgate up`"
            print(f"\nlockgate up: ready in {time.monotonic() - t0:.0f} s ({running.airflow_url})", flush=True)
            live = LiveStack(
                airflow_url=running.airflow_url,
                mlflow_url=running.mlflow_url,
                username=running.username,
                password=running.password,
                home=home,
                logs_url=pg_url,
                monitoring=monitoring,
            )

            t1 = time.monotonic()
            prepared = subprocess.run(
                [sys.executable, "-c", PREPARE_SCRIPT, DEMO_MODEL, SCENARIO, pg_url],
                env=running.env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=PREPARE_TIMEOUT_S,
                check=False,
            )
            if prepared.returncode != 0:
                pytest.fail(f"preparing the demo model failed:\n{prepared.stderr[-5000:]}", pytrace=False)
            demo = json.loads(prepared.stdout.strip().splitlines()[-1])
            live.champion, live.challenger = demo["champion"], demo["challenger"]
            print(
                f"demo model: champion {live.champion}, challenger {live.challenger}, {demo['rows']} log rows "
                f"in {time.monotonic() - t1:.0f} s",
                flush=True,
            )
            yield live
        except BaseException:
            # Whatever failed, the component logs say why (the test output only says where).
            print(LiveStack("", "", "", "", home, pg_url).component_logs(), flush=True)
            raise
        finally:
            t2 = time.monotonic()
            down_error: BaseException | None = None
            try:
                commands.cmd_down(argparse.Namespace())
            except BaseException as exc:  # noqa: BLE001 - still verify what is left, then re-raise
                down_error = exc
            if not records:
                # `up` failed before we read its state: check what it recorded, if anything.
                leftover = load_state(paths)
                records = list(leftover.processes) if leftover else []
            left = _leftovers(records, ports)
            print(f"lockgate down: {time.monotonic() - t2:.0f} s", flush=True)
            if down_error is not None:
                raise down_error
            assert not left, f"`lockgate down` left processes or ports behind: {left}"


@pytest.fixture(scope="session")
def evidence_runs(stack: LiveStack) -> dict[str, str]:
    """The benchmark, drift and quality DAGs, each run once through the REST API; dag_id -> run id."""
    # All three at once, as their schedules would start them. The benchmark's latencies are not
    # spoiled by the other two: on CPU the policy times requests with the measuring thread's
    # CPU time (cpu_clock: thread_cpu), which load on the other core does not inflate.
    t0 = time.monotonic()
    runs = {dag_id: stack.trigger(dag_id, conf) for dag_id, conf in EVIDENCE_CONF.items()}
    stack.wait_for_runs(runs, EVIDENCE_TIMEOUT_S)
    print(f"evidence runs: {time.monotonic() - t0:.0f} s", flush=True)
    return runs


@pytest.fixture(scope="session")
def first_promotion(stack: LiveStack, evidence_runs: dict[str, str]) -> str:
    """The first lockgate_promotion run on the fresh evidence (it asks for an approval); its run id."""
    return stack.promote("fresh evidence")
