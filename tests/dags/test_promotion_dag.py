"""`lockgate_promotion` end to end with `dag.test()`: a real MLflow registry (SQLite), lockgate's state in a
PostgreSQL database of this module's own, hand-made evidence summaries in the reports folder.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lockgate.devtools.testing.registry import (
    passing_evidence,
    policy_for,
    register_stub_version,
    sqlite_mlflow_store,
    throwaway_pg_database,
    write_evidence,
)
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry, RegistryState
from lockgate.registry.audit import list_audit, list_decisions, model_lock, state_engine
from lockgate.registry.commands import approve
from lockgate.reports.index import find_report
from lockgate.reports.links import report_path

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "lockgate_promotion.py"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory, airflow_db):
    """MLflow store, reports folder, state database and a policy file, for the whole module."""
    home = tmp_path_factory.mktemp("promotion_dag")
    admin = os.environ.get("LOCKGATE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with throwaway_pg_database(admin) as state_url, pytest.MonkeyPatch.context() as mp:
        uri = sqlite_mlflow_store(home / "mlflow.db")
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))
        mp.setenv("LOCKGATE_STATE_DB_URL", state_url)
        mp.setenv("LOCKGATE_LOGS_DB_URL", f"sqlite:///{home / 'logs.db'}")
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("LOCKGATE_CONFIG", str(home / "policy.yaml"))
        yield {"home": home, "uri": uri, "state_url": state_url, "reports": home / "reports"}


@pytest.fixture(scope="module")
def dag(world, load_dag):
    return load_dag(DAG_FILE, "lockgate_promotion")


class Model:
    """One registered model (v1 champion, v2 challenger) watched by the module's policy file."""

    def __init__(self, world) -> None:
        self.world = world
        self.name = f"dag-{uuid.uuid4().hex[:8]}"
        self.registry = ModelRegistry(world["uri"])
        self.v1 = register_stub_version(self.name, world["uri"], alias="champion")
        self.v2 = register_stub_version(self.name, world["uri"], alias="challenger")
        # Evidence is made after the versions it is about were registered (the gates check it).
        self.evidence_at = datetime.now(UTC).replace(microsecond=0)
        self.policy = policy_for(self.name)
        data = self.policy.model_dump(mode="json")
        Path(os.environ["LOCKGATE_CONFIG"]).write_text(yaml.safe_dump(data))

    def evidence(self, challenger=None, champion=None, **kw):
        challenger = self.v2 if challenger is None else challenger
        champion = self.v1 if champion is None else champion
        summaries = passing_evidence(self.name, challenger, champion, self.evidence_at, **kw)
        write_evidence(self.world["reports"], summaries)

    def state(self) -> RegistryState:
        return self.registry.state(self.name)

    def tags(self, version) -> dict[str, str]:
        return self.registry.version_tags(self.name, version)

    def audit(self, kind=None):
        return list_audit(state_engine(self.world["state_url"]), self.name, kind=kind)

    def decisions(self):
        return list_decisions(state_engine(self.world["state_url"]), self.name)

    def approve(self, by="alice", **kw):
        return approve(self.name, self.v2, by, **kw)

    def decided(self, run_key="setup"):
        """A first decision made outside the DAG (the same job), so a test's dag.test() is the step under test."""
        from lockgate.jobs.context import RunContext
        from lockgate.jobs.promotion import run_promotion

        return run_promotion(RunContext(self.name, run_key=run_key))


def run(dag, model: Model, logical_date=None, **conf):
    conf = {"model": model.name, "approval_wait_minutes": 0, **conf}
    # the run id derives from run_after: the same date gives the same run, cleared and run again
    kwargs = {"logical_date": logical_date, "run_after": logical_date} if logical_date is not None else {}
    dr = dag.test(run_conf=conf, **kwargs)
    assert dr.state == "success", f"run {dr.run_id} ended {dr.state}"
    return dr


@pytest.fixture
def model(world) -> Model:
    return Model(world)


# --------------------------------------------------------------------------- the DAG file itself


def test_dag_wiring(dag):
    """Typed, described params for the form; moves in the one-slot pool; assets or a cron start it.

    (That parsing the file loads no heavy library is checked for every DAG in test_dag_integrity.py.)
    """
    from airflow.sdk import AssetOrTimeSchedule
    from airflow.sdk.definitions.asset import AssetAny

    assert set(dag.params) == {"model", "dry_run", "approval_wait_minutes", "approval_poll_seconds"}
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("title") and param.description and param.schema.get("type")
    pools = {t.task_id: t.pool for t in dag.tasks}
    assert pools["decide_and_act"] == pools["act_on_approval"] == "lockgate_promotion"
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    condition = dag.timetable.asset_condition
    assert isinstance(condition, AssetAny)  # any one new summary is enough to decide again
    assert {a.uri for a in condition.objects} == {
        "x-lockgate://evidence/benchmark",
        "x-lockgate://evidence/drift",
        "x-lockgate://evidence/quality",
        "x-lockgate://evidence/live",
    }
    assert set(dag.tags) == {"lockgate"}
    assert dag.catchup is False and dag.max_active_runs == 4


# --------------------------------------------------------------------------- dag.test() stories


def test_all_gates_pass_awaits_approval(dag, model):
    model.evidence()
    dr = run(dag, model)
    tags = model.tags(model.v2)
    assert tags[T.STATUS] == "awaiting_approval"
    assert model.state().champion == model.v1
    report = report_path(tags[T.DECISION_REPORT])  # the tag is the plugin page's URL
    assert report is not None and tags[T.DECISION_REPORT].startswith("http")
    html = report.read_text()
    assert "lockgate.approval=approved" in html and f"lockgate approve {model.name} {model.v2}" in html
    # Beside the approval instructions: MLflow's own "Promote model" bypasses the gates.
    assert "Promote model" in html and "outside lockgate" in html
    entry = find_report("lockgate_promotion", dr.run_id, engine=state_engine(model.world["state_url"]))
    assert entry is not None and entry.kind == "decision" and entry.path == str(report)
    assert [d.action for d in model.decisions()] == ["await_approval"]


def test_listed_approval_moves_the_champion(dag, model):
    model.evidence()
    model.decided()
    model.approve("alice")
    run(dag, model)
    assert model.state() == RegistryState(champion=model.v2, challenger=None, previous_champion=model.v1)
    assert model.tags(model.v2)[T.STATUS] == "promoted"
    move = next(a for a in model.audit("alias_move") if a.alias == "champion")
    assert (move.from_version, move.to_version, move.approved_by) == (model.v1, model.v2, "alice")
    assert move.actor == "airflow:lockgate_promotion" and move.evidence_hash and move.policy_hash


def test_unlisted_approval_moves_nothing_and_is_recorded(dag, model):
    model.evidence()
    model.decided()
    model.registry.set_tags(model.name, model.v2, {T.APPROVAL: "approved", T.APPROVED_BY: "mallory"})
    run(dag, model)
    assert model.state().champion == model.v1
    refused = model.audit("approval_refused")
    assert [r.actor for r in refused] == ["mallory"]
    assert model.tags(model.v2)[T.STATUS] == "awaiting_approval"


def test_evidence_changed_after_approval_asks_again(dag, model):
    model.evidence()
    model.decided()
    model.approve("bob")
    model.evidence(tag="rerun")
    run(dag, model)
    assert model.state().champion == model.v1
    tags = model.tags(model.v2)
    assert tags[T.STATUS] == "awaiting_approval" and T.APPROVAL not in tags
    assert len(model.audit("approval_reset")) == 1


def test_champion_breaching_a_rollback_gate_is_rolled_back(dag, model):
    model.evidence()
    model.decided()
    model.approve("alice")
    model.decided("promote")
    model.evidence(challenger="", champion=model.v2, champion_error_rate=0.6)
    run(dag, model)
    assert model.state() == RegistryState(champion=model.v1, challenger=None, previous_champion=None)
    assert model.tags(model.v2)[T.STATUS] == "rolled_back"
    assert model.decisions()[0].action == "rollback"


def test_the_same_run_repeated_changes_nothing_more(dag, model):
    model.evidence()
    model.decided()
    model.approve("alice")
    when = NOW + timedelta(seconds=1)
    run(dag, model, logical_date=when)
    state, audit, decisions = model.state(), model.audit(), model.decisions()
    run(dag, model, logical_date=when)  # the same run id, cleared and run again
    assert model.state() == state
    assert model.audit() == audit
    assert [(d.run_key, d.action, d.outcome) for d in model.decisions()] == [
        (d.run_key, d.action, d.outcome) for d in decisions
    ]


def test_two_runs_at_once_make_exactly_one_move(dag, model):
    """A DAG run and a CLI run queue on the model's lock together; exactly one of them moves."""
    model.evidence()
    model.decided()
    model.approve("alice")
    engine = state_engine(model.world["state_url"])
    holding, cli_result = threading.Event(), []

    def hold_until_both_wait():
        with model_lock(engine, model.name):
            holding.set()
            deadline = time.monotonic() + 120
            with engine.connect() as conn:
                while time.monotonic() < deadline:
                    waiting = conn.execute(
                        sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                    ).scalar_one()
                    if waiting >= 2:
                        break
                    time.sleep(0.2)

    def cli_run():
        from lockgate.jobs.context import RunContext
        from lockgate.jobs.promotion import run_promotion

        cli_result.append(run_promotion(RunContext(model.name, run_key="cli-run"), actor="cli:test"))

    holder = threading.Thread(target=hold_until_both_wait)
    holder.start()
    assert holding.wait(30)
    cli = threading.Thread(target=cli_run)
    cli.start()
    run(dag, model)
    cli.join(120)
    holder.join(5)
    champion_moves = [a for a in model.audit("alias_move") if a.alias == "champion"]
    assert len(champion_moves) == 1
    assert model.state() == RegistryState(champion=model.v2, challenger=None, previous_champion=model.v1)
    actions = sorted(d.action for d in model.decisions()[:2])
    assert actions == ["no_op", "promote"]


def test_wait_for_approval_defers_until_a_person_answers(dag, model):
    model.evidence()
    model.decided()  # the challenger now shows the evidence to approve

    def approve_soon():
        time.sleep(3)
        model.approve("bob")

    t = threading.Thread(target=approve_soon)
    t.start()
    started = time.monotonic()
    run(dag, model, approval_wait_minutes=2, approval_poll_seconds=1)
    t.join()
    assert time.monotonic() - started < 100  # ended by the answer, not the 2-minute deadline
    assert model.state().champion == model.v2


@pytest.mark.parametrize("run_type", ["scheduled", "asset_triggered"])
def test_a_scheduled_or_asset_run_never_waits_for_an_approval(model, run_type):
    """A run nobody triggered ends at once when an approval is due, so it never holds the DAG's run slots."""
    from types import SimpleNamespace

    from airflow.sdk.exceptions import TaskDeferred

    from lockgate.registry.approval_wait import AwaitApprovalOperator

    decision = {"model_name": model.name, "action": "await_approval", "challenger": model.v2, "evidence_hash": "e"}
    op = AwaitApprovalOperator(task_id=f"wait_{run_type}", decision=decision)
    params = {"approval_wait_minutes": 25, "approval_poll_seconds": 30}
    waited = op.execute({"params": params, "dag_run": SimpleNamespace(run_type=run_type)})  # type: ignore[arg-type]
    assert waited == {"model": model.name, "event": "not_waiting"}
    # The same decision in a run a person triggered defers to the approval trigger.
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"params": params, "dag_run": SimpleNamespace(run_type="manual")})  # type: ignore[arg-type]
    assert deferred.value.trigger.version == model.v2


def test_wait_ends_at_its_deadline(dag, model):
    from lockgate.registry.approval_trigger import ApprovalTrigger

    model.evidence()
    model.decided()
    evidence = model.tags(model.v2)[T.EVIDENCE]
    trigger = ApprovalTrigger(
        model_name=model.name,
        version=model.v2,
        evidence_hash=evidence,
        tracking_uri=model.world["uri"],
        deadline=(datetime.now(UTC) + timedelta(seconds=1.5)).isoformat(),
        poll_seconds=0.5,
    )
    import asyncio

    async def first_event():
        async for event in trigger.run():
            return event.payload
        return None

    assert asyncio.run(first_event())["status"] == "timeout"
    classpath, kwargs = trigger.serialize()
    assert classpath == "lockgate.registry.approval_trigger.ApprovalTrigger" and kwargs["version"] == model.v2


def test_dry_run_moves_nothing(dag, model):
    model.evidence()
    model.decided()
    model.approve("alice")
    before = model.tags(model.v2)
    run(dag, model, dry_run=True)
    assert model.state().champion == model.v1
    assert model.tags(model.v2) == before
    assert model.decisions()[0].action == "promote" and model.decisions()[0].outcome == "dry_run"


def test_an_unwatched_model_fails_the_run_without_retry(dag, model):
    dr = dag.test(run_conf={"model": "not-in-the-policy", "approval_wait_minutes": 0})
    assert dr.state == "failed"
    ti = dr.get_task_instance("watched_models")
    assert ti.state == "failed" and ti.try_number == 1  # a policy error is not retried


# --------------------------------------------------------------------------- the Required actions inbox
#
# dag.test() runs a deferred task's trigger in line, so no task of it is ever left deferred for
# Airflow's API server to resume. These tests take the run's real wait task instance through the
# steps a deployment takes: the operator writes its inbox request through Airflow's execution API
# (the in-process one dag.test() uses), the task instance is deferred, a person answers through the
# API server's own Required actions route as a user of the simple auth manager (which checks the
# assigned users and resumes the deferred task), and the operator resumes with the event stored.


class Inbox:
    """A manual run of `model` awaiting approval, and its wait task instance offering it in the inbox."""

    def __init__(self, dag, model: Model) -> None:
        import json

        from lockgate.registry.approval_wait import AwaitApprovalOperator

        model.evidence()
        # Named: after test_dry_run_moves_nothing, a dag.test() run whose conf left dry_run out was
        # seen deciding with dry_run=True (the earlier run's value), which never waits.
        self.dag_run = run(dag, model, dry_run=False)
        self.model = model
        report = model.decisions()[0].report_path
        assert report is not None
        self.decision = json.loads(Path(report).with_name("decision.json").read_text())
        assert self.decision["action"] == "await_approval"
        self.ti = self.dag_run.get_task_instance("wait_for_approval", map_index=0)
        self.op = AwaitApprovalOperator(task_id="wait_for_approval", decision=self.decision)

    def context(self) -> dict:
        from types import SimpleNamespace

        ti = self.ti
        runtime_ti = SimpleNamespace(
            id=ti.id,
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=ti.map_index,
            try_number=ti.try_number,
        )
        params = {"approval_wait_minutes": 25, "approval_poll_seconds": 30}
        return {"params": params, "dag_run": SimpleNamespace(run_type="manual"), "task_instance": runtime_ti}

    def ask(self):
        """The wait task's execute(): writes the inbox request, defers; returns the stored request."""
        import psutil
        import structlog
        from airflow.models.hitl import HITLDetail
        from airflow.sdk.exceptions import TaskDeferred
        from airflow.sdk.execution_time.supervisor import (
            InProcessSupervisorComms,
            InProcessTestSupervisor,
            set_supervisor_comms,
        )
        from airflow.sdk.execution_time.task_runner import _defer_task
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        with create_session() as session:
            # What the scheduler does before a worker runs the task: it is running, not finished.
            self.ti.refresh_from_db(session=session)
            self.ti.state = TaskInstanceState.RUNNING
            session.merge(self.ti)
        supervisor = InProcessTestSupervisor(
            id=self.ti.id,
            pid=os.getpid(),
            process=psutil.Process(),
            process_log=structlog.get_logger(logger_name="task").bind(),
            client=InProcessTestSupervisor._api_client(),
        )
        supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
        context = self.context()
        with set_supervisor_comms(supervisor.comms):
            with pytest.raises(TaskDeferred) as deferred:
                self.op.execute(context)  # type: ignore[arg-type]
            # The task runner reports the deferral as a worker does: the task waits in the triggerer.
            runtime_ti = context["task_instance"]
            runtime_ti.task = self.op
            msg, _ = _defer_task(deferred.value, runtime_ti, structlog.get_logger())
            supervisor.comms.send(msg)
        with create_session() as session:
            self.ti.refresh_from_db(session=session)
            assert self.ti.state == TaskInstanceState.DEFERRED and self.ti.trigger_id is not None
            detail = session.get(HITLDetail, self.ti.id)
            assert detail is not None
            session.expunge(detail)
        return detail

    def answer(self, user: str, option: str = "Approve") -> dict:
        """A person answers in the Required actions inbox; returns what the wait task returns on resuming."""
        from airflow.api_fastapi.app import create_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.sdk.serde import deserialize
        from airflow.utils.session import create_session

        create_auth_manager()
        ti = self.ti
        with create_session() as session:
            update_hitl_detail(
                dag_id=ti.dag_id,
                dag_run_id=ti.run_id,
                task_id=ti.task_id,
                update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option], params_input={}),
                user=SimpleAuthManagerUser(username=user, role="user"),
                session=session,
                map_index=ti.map_index,
            )
        with create_session() as session:
            ti.refresh_from_db(session=session)
            assert ti.state == "scheduled" and ti.next_method == "execute_complete"  # resumed by the answer
            kwargs = deserialize(ti.next_kwargs)
        return self.op.execute_complete(self.context(), **kwargs)  # type: ignore[arg-type]

    def act(self) -> None:
        """`act_on_approval`: the promotion job again, in the same run."""
        from lockgate.jobs.promotion import promotion_task
        from lockgate.task_edge import run_context

        promotion_task(run_context(self.model.name, {"dag_run": self.dag_run}), dry_run=False)


def test_the_inbox_request_names_model_version_evidence_gates_and_the_page(dag, model):
    from lockgate.reports.links import report_url

    inbox = Inbox(dag, model)
    detail = inbox.ask()
    d = inbox.decision
    assert detail.options == ["Approve", "Reject"] and not detail.multiple and not detail.response_received
    assert model.name in detail.subject and model.v2 in detail.subject
    body = detail.body
    assert f"`{model.name}`" in body and f"`{model.v2}`" in body and f"`{d['evidence_hash']}`" in body
    assert report_url(d["report_path"]) in body
    for verdict in d["verdicts"]:
        assert f"`{verdict['gate']}`" in body
    assert [u["id"] for u in detail.assigned_users] == ["alice", "bob"]


def test_an_inbox_approval_by_a_listed_approver_promotes_as_authenticated(dag, model):
    inbox = Inbox(dag, model)
    inbox.ask()
    waited = inbox.answer("bob")
    assert waited == {"model": model.name, "event": "answered", "by": "bob"}
    tags = model.tags(model.v2)
    assert (tags[T.APPROVAL], tags[T.APPROVED_BY]) == ("approved", "bob")
    assert tags[T.APPROVAL_EVIDENCE] == inbox.decision["evidence_hash"]
    inbox.act()
    assert model.state() == RegistryState(champion=model.v2, challenger=None, previous_champion=model.v1)
    move = next(a for a in model.audit("alias_move") if a.alias == "champion")
    assert (move.approved_by, move.approval_auth) == ("bob", "authenticated")
    [approval] = model.audit("approval")
    assert (approval.actor, approval.approved_by, approval.approval_auth) == ("bob", "bob", "authenticated")
    promote = model.decisions()[0]
    assert promote.action == "promote"
    page = Path(promote.report_path or "").read_text()
    assert "bob (authenticated)" in page and "bob (unauthenticated)" not in page


def test_an_inbox_rejection_rejects_the_challenger(dag, model):
    inbox = Inbox(dag, model)
    inbox.ask()
    assert inbox.answer("alice", "Reject")["event"] == "answered"
    inbox.act()
    assert model.state().champion == model.v1
    assert model.tags(model.v2)[T.STATUS] == "rejected"
    [rejection] = model.audit("rejection")
    assert (rejection.actor, rejection.approval_auth) == ("alice", "authenticated")


def test_an_unlisted_user_cannot_answer_in_the_inbox_and_is_refused_when_airflow_lets_them(dag, model, monkeypatch):
    from fastapi import HTTPException

    inbox = Inbox(dag, model)
    inbox.ask()
    # Airflow itself refuses a user who is not among the request's assigned users (the approvers).
    with pytest.raises(HTTPException) as refused:
        inbox.answer("mallory")
    assert refused.value.status_code == 403
    # An auth manager that lets everyone answer (here: the simple one with all users admins): lockgate refuses.
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    waited = inbox.answer("mallory")
    assert waited == {"model": model.name, "event": "refused", "by": "mallory"}
    assert T.APPROVAL not in model.tags(model.v2)
    [attempt] = model.audit("approval_refused")
    assert attempt.actor == "mallory" and "not in the approver list" in (attempt.message or "")
    inbox.act()  # act_on_approval skips a refused answer; a run deciding anyway moves nothing
    assert model.state().champion == model.v1
    assert model.tags(model.v2)[T.STATUS] == "awaiting_approval"


def test_tags_edited_after_an_inbox_approval_count_as_asserted_only(dag, model):
    inbox = Inbox(dag, model)
    inbox.ask()
    inbox.answer("bob")
    model.registry.set_tags(model.name, model.v2, {T.APPROVED_BY: "alice"})  # someone retypes the name
    inbox.act()
    move = next(a for a in model.audit("alias_move") if a.alias == "champion")
    assert (move.approved_by, move.approval_auth) == ("alice", "unauthenticated")
