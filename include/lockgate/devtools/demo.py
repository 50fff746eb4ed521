"""`lockgate demo`: the whole story on embedded defaults, driven through Airflow as a user would.

1. `lockgate up` (Airflow 3 + MLflow server), unless it is already running;
2. two model versions: a champion and a challenger (tiny Llama models built here;
   the scenario decides the challenger's shape), registered in MLflow with aliases;
3. realistic logs: a reference week of champion traffic and a current day with 30%
   canary traffic for the challenger (the scenario's drift, latency or quality knobs);
4. the benchmark, drift and quality DAGs triggered through the REST API, then
   `lockgate_promotion`: `awaiting_approval` when every gate passes;
5. with `--approve`: approval as the first listed approver, promotion again, champion moved;
6. a summary: champion before and after, every gate's verdict, where each report is.

Exit code 0 when the outcome is the scenario's expected one (healthy: promoted; the
others: held by the gate the scenario names), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lockgate.devtools.scenarios import Scenario, get_scenario
from lockgate.errors import LockgateError
from lockgate.registry import tags as T

log = logging.getLogger(__name__)

DEMO_MODEL = "lockgate-demo"
EVIDENCE_DAGS = ("lockgate_benchmark", "lockgate_drift", "lockgate_quality", "lockgate_live")
# The demo approves between two promotion runs, so the first run must not wait for the approval.
PROMOTION_CONF = {"model": DEMO_MODEL, "approval_wait_minutes": 0}


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _step(message: str) -> None:
    """A task's state change inside the run being waited for."""
    print(f"    {message}", flush=True)


@dataclass
class DemoResult:
    scenario: str
    champion_before: str | None
    champion_after: str | None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)
    expected: str = ""
    stopped_by: list[str] = field(default_factory=list)
    expected_gate: str | None = None  # the gate the scenario is built to trip, when it is one

    @property
    def final_action(self) -> str:
        return str(self.decisions[-1]["action"]) if self.decisions else "none"

    @property
    def as_expected(self) -> bool:
        """The decision the scenario expects, taken for the reason it expects (its gate among those that stopped it)."""
        if self.expected_gate and self.expected_gate not in self.stopped_by:
            return False
        if self.expected == "promote":
            return self.champion_after != self.champion_before and self.final_action == "promote"
        if self.expected == "rollback":
            return self.champion_after != self.champion_before and self.final_action == "rollback"
        return self.champion_after == self.champion_before and bool(self.stopped_by)


def _logs_url_from_airflow(client: Any) -> str:
    """The log database the DAG tasks use: Airflow's connection `lockgate_logs`, else the embedded store."""
    from lockgate.settings import get_settings, resolve_logs_db_url

    settings = get_settings()
    if settings.logs_db_url:
        return resolve_logs_db_url(settings)
    try:
        conn = client.request("GET", "/api/v2/connections/lockgate_logs")
    except LockgateError:
        return settings.embedded_logs_url
    from sqlalchemy.engine import URL

    url = URL.create(
        "postgresql",
        username=conn.get("login") or None,
        password=conn.get("password") or None,
        host=conn.get("host") or "127.0.0.1",
        port=conn.get("port") or 5432,
        database=conn.get("schema") or "postgres",
    )
    return url.render_as_string(hide_password=False)


def reset_demo_model(model_name: str, logs_url: str, reports_dir: Path) -> None:
    """Start each demo from a clean slate: the demo owns its model name, its rows and its evidence."""
    from lockgate.logs.db import make_engine
    from lockgate.logs.schema import create_schema
    from lockgate.registry.adapter import ModelRegistry

    ModelRegistry().delete_model(model_name)  # False: nothing registered yet
    engine = make_engine(logs_url)
    table = create_schema(engine)
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c.model_name == model_name))
    from lockgate.reports.summaries import forget_model

    forget_model(model_name)  # the latest evidence the promotion reads
    # The reseeded rows may match the old ones hour for hour in number: the rollups could not tell.
    from lockgate.live.rollups import forget_rollups
    from lockgate.settings import resolve_state_db_url

    state = make_engine(resolve_state_db_url())
    try:
        forget_rollups(state, model_name)
    finally:
        state.dispose()
    for kind in ("benchmark", "drift", "quality", "live"):
        latest = reports_dir / kind / model_name / "latest.json"
        latest.unlink(missing_ok=True)


def build_and_register(home: Path, scenario: Scenario, model_name: str) -> tuple[str, str, str | None]:
    """Champion (2 layers x 64) and the scenario's challenger (and previous champion), registered with
    their aliases. Returns (champion, challenger, previous_champion)."""
    from lockgate.devtools.tiny_model import build_tiny_model
    from lockgate.models import register_model
    from lockgate.registry.adapter import ModelRegistry

    models = home / "demo" / "models"
    previous = None
    if scenario.previous_champion:
        previous = register_model(
            model_name, build_tiny_model(models / "previous-champion", seed=3), alias="previous_champion"
        )
        ModelRegistry().set_tags(model_name, previous, {T.STATUS: "promoted"})
    champion_dir = build_tiny_model(models / "champion", seed=1)
    challenger_dir = build_tiny_model(
        models / f"challenger-{scenario.name}",
        seed=2,
        layers=scenario.challenger_layers,
        hidden=scenario.challenger_hidden,
    )
    champion = register_model(model_name, champion_dir, alias="champion")
    ModelRegistry().set_tags(model_name, champion, {T.STATUS: "promoted"})
    challenger = register_model(model_name, challenger_dir, alias="challenger")
    return champion, challenger, previous


def seed_demo_logs(
    logs_url: str, scenario: Scenario, champion: str, challenger: str, model_name: str, previous: str | None = None
) -> tuple[int, datetime]:
    """Seed the scenario's traffic; returns the rows offered and when the current day begins (the
    champion's promotion time in the story: the week before is its baseline)."""
    from lockgate.devtools.seed import spec_from_args
    from lockgate.devtools.synthetic import seed_logs
    from lockgate.logs.db import check_connection, make_engine
    from lockgate.policy.schema import load_policy

    args = argparse.Namespace(
        model=model_name,
        scenario=scenario.name,
        reference_rows=2000,
        # 30% canary traffic gives ~1,200 challenger requests: enough for the production evidence's
        # intervals to resolve its gates (live.min_requests is 200).
        current_rows=4000,
        current_end=None,
        reference_days=7,
        current_days=1,
        champion_version=champion,
        challenger_version=challenger,
        previous_champion_version=previous,
        canary_share=0.3,
        topic_drift=0.0,
        prompt_length_factor=1.0,
        latency_factor=1.0,
        quality_degradation=0.0,
        malformed_rate=0.01,
        pii_rate=0.05,
        hostile_rate=0.02,
        rag_share=0.4,
        seed=0,
    )
    engine = make_engine(logs_url)
    check_connection(engine)
    spec = spec_from_args(args)
    return seed_logs(engine, spec, load_policy().logs), spec.current_start


def latest_decisions(logs_url: str, model_name: str, since_id: int = 0) -> list[dict[str, Any]]:
    """Decisions recorded after `since_id`, oldest first (the full JSON the engine produced)."""
    from lockgate.registry.audit import decisions_table, state_engine

    engine = state_engine()
    stmt = (
        sa.select(decisions_table.c.id, decisions_table.c.decision)
        .where(decisions_table.c.model_name == model_name, decisions_table.c.id > since_id)
        .order_by(decisions_table.c.id)
    )
    with engine.connect() as conn:
        return [{"id": r.id, **json.loads(r.decision)} for r in conn.execute(stmt)]


def _max_decision_id(logs_url: str, model_name: str) -> int:
    rows = latest_decisions(logs_url, model_name)
    return max((r["id"] for r in rows), default=0)


def _champion(model_name: str) -> str | None:
    from lockgate.registry.adapter import ModelRegistry

    return ModelRegistry().state(model_name).champion


def _print_summary(result: DemoResult, airflow_url: str, scenario: Scenario) -> None:
    print()
    print(f"Scenario {result.scenario}: {scenario.description}")
    print(f"  champion before: version {result.champion_before}; after: version {result.champion_after}")
    for d in result.decisions:
        print(f"  decision {d['run_key']}: {d['action']} (outcome {d.get('outcome')})")
    if result.decisions:
        last = result.decisions[-1]
        print("  gates (last decision):")
        for v in last.get("verdicts", []):
            bound = f" compared {v['compared']:.4g} with {v['limit']:.4g}" if v.get("compared") is not None else ""
            print(f"    [{v['status']:7}] {v['gate']:28} {v['action']:16}{bound}  {v['reason']}")
    if result.stopped_by:
        print(f"  stopped by: {', '.join(result.stopped_by)}")
    print("  reports:")
    for kind, path in result.reports.items():
        print(f"    {kind:10} {path}")
    print(f"  in the Airflow UI: {airflow_url}/plugin/lockgate  (menu: Lockgate)")
    verdict = "as expected" if result.as_expected else "NOT as expected"
    expected = scenario.expected_decision + (f" by {scenario.expected_gate}" if scenario.expected_gate else "")
    actual = f"; stopped by {', '.join(result.stopped_by)}" if result.stopped_by else ""
    print(f"Outcome: {result.final_action} — {verdict} (expected {expected}{actual})")


def _reports(logs_url: str, model_name: str) -> dict[str, str]:
    from lockgate.logs.db import make_engine
    from lockgate.reports.index import list_reports

    out: dict[str, str] = {}
    for entry in list_reports(engine=make_engine(logs_url), model_name=model_name, limit=50):
        out.setdefault(entry.kind, entry.path)
    return out


def run_demo(scenario_name: str, approve: bool = True, keep_running: bool = False, timeout: float = 1500) -> DemoResult:
    from lockgate.devtools.stack import commands as stack
    from lockgate.policy.schema import load_policy
    from lockgate.settings import get_settings

    scenario = get_scenario(scenario_name)
    settings = get_settings()
    home = settings.home
    _say(f"scenario {scenario.name}: {scenario.description}")
    _say("starting the local stack (Airflow 3 + MLflow)")
    if stack.running_stack(settings) is None:
        # The demo triggers each DAG itself; without this, unpausing a DAG would also start its
        # latest scheduled run and double the work. `lockgate up` alone keeps the schedules.
        os.environ.setdefault("AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE", "False")
    rc = stack.cmd_up(argparse.Namespace(timeout=600))
    if rc:
        raise LockgateError(f"`lockgate up` failed; see the component logs under {home / 'run' / 'logs'}")
    try:
        running = stack.running_stack(settings)
        if running is None or not running.password:
            raise LockgateError(f"the stack is not fully up; see the component logs under {home / 'run' / 'logs'}")
        for key in ("MLFLOW_TRACKING_URI", "LOCKGATE_AIRFLOW_URL", "LOCKGATE_REPORTS_DIR", "LOCKGATE_CONFIG"):
            if running.env.get(key):
                os.environ[key] = running.env[key]
        airflow_url = running.airflow_url
        from lockgate.airflow_api import AirflowClient

        client = AirflowClient(base_url=airflow_url, username=running.username, password=running.password)
        logs_url = _logs_url_from_airflow(client)
        os.environ["LOCKGATE_LOGS_DB_URL"] = logs_url
        reports_dir = get_settings().reports_dir
        from lockgate.logs.db import safe_url

        _say(f"inference logs in {safe_url(logs_url)}; MLflow at {os.environ.get('MLFLOW_TRACKING_URI')}")

        reset_demo_model(DEMO_MODEL, logs_url, reports_dir)
        _say("building and registering two model versions")
        champion, challenger, previous = build_and_register(home, scenario, DEMO_MODEL)
        _say(
            f"champion = version {champion}, challenger = version {challenger}"
            + (f", previous_champion = version {previous}" if previous else "")
        )
        rows, promoted_at = seed_demo_logs(logs_url, scenario, champion, challenger, DEMO_MODEL, previous)
        from lockgate.registry.adapter import ModelRegistry

        # The story: the champion was promoted as the current day began; the week before is its baseline.
        ModelRegistry().set_tags(DEMO_MODEL, champion, {T.PROMOTED_AT: promoted_at.isoformat()})
        _say(f"seeded {rows} log rows (reference week + current day with 30% canary traffic)")

        since = _max_decision_id(logs_url, DEMO_MODEL)
        result = DemoResult(
            scenario.name,
            champion,
            champion,
            expected=scenario.expected_decision,
            expected_gate=scenario.expected_gate,
        )
        deadline = time.monotonic() + timeout
        for dag_id in EVIDENCE_DAGS:
            _say(f"running {dag_id} through Airflow")
            run_id, _ = client.run_and_wait(
                dag_id, {"model": DEMO_MODEL}, timeout=max(60, deadline - time.monotonic()), progress=_step
            )
            _say(f"{dag_id} run {run_id}: success")

        _say("running lockgate_promotion")
        client.run_and_wait(
            "lockgate_promotion", PROMOTION_CONF, timeout=max(60, deadline - time.monotonic()), progress=_step
        )
        decisions = latest_decisions(logs_url, DEMO_MODEL, since)
        first = decisions[-1] if decisions else None
        if first:
            _say(
                f"decision: {first['action']}"
                + (f" ({T.STATUS}=awaiting_approval)" if first["action"] == "await_approval" else "")
            )
        if first and first["action"] == "await_approval" and approve:
            approver = load_policy().model(DEMO_MODEL).approvers[0]
            from lockgate.jobs.promotion import approve as approve_version

            approve_version(DEMO_MODEL, challenger, approver)
            _say(
                f"approved version {challenger} as {approver} (tags {T.APPROVAL}=approved, {T.APPROVED_BY}={approver})"
            )
            client.run_and_wait(
                "lockgate_promotion", PROMOTION_CONF, timeout=max(60, deadline - time.monotonic()), progress=_step
            )
        result.decisions = latest_decisions(logs_url, DEMO_MODEL, since)
        result.champion_after = _champion(DEMO_MODEL)
        if result.decisions:
            last = result.decisions[-1]
            result.stopped_by = [
                v["gate"]
                for v in last.get("verdicts", [])
                if (v["action"] == "block_promotion" and v["status"] != "pass")
                or (v["action"] == "rollback" and v["status"] == "fail")
            ]
        result.reports = _reports(logs_url, DEMO_MODEL)
        _print_summary(result, airflow_url, scenario)
        return result
    finally:
        if not keep_running:
            _say("stopping the local stack (use --keep-running to leave it up)")
            stack.cmd_down(argparse.Namespace())


def cmd_demo(args: argparse.Namespace) -> int:
    result = run_demo(args.scenario, approve=args.approve, keep_running=args.keep_running)
    scenario = get_scenario(args.scenario)
    ok = result.as_expected
    if not args.approve and scenario.expected_decision == "promote":
        ok = result.final_action == "await_approval"
    return 0 if ok else 1
