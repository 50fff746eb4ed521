"""The promotion job's entry points and its steps: lock, reconcile, decide, act, then publish.

See the package's docstring for the whole job.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.jobs.context import RunContext
from lockgate.jobs.promotion.inputs import gather_inputs
from lockgate.jobs.promotion.outputs import (
    decision_page_path,
    export_decision_metrics,
    format_decision,
    publish_decision,
)
from lockgate.policy import Decision, decide_promotion
from lockgate.policy.schema import Policy, load_policy
from lockgate.registry.adapter import ModelRegistry
from lockgate.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

DAG_ID = "lockgate_promotion"


@dataclass(frozen=True)
class _Promotion:
    """One promotion run, settled before its first read: what each step works with."""

    ctx: RunContext
    policy: Policy
    registry: ModelRegistry
    reports: Path
    engine: Engine
    when: datetime
    key: str
    page: Path
    actor: str
    dry_run: bool

    @property
    def model(self) -> str:
        return self.ctx.model

    def recorded(self) -> dict[str, object]:
        """What the decision carries about this run (its key, its page, whether it is a dry run)."""
        return {"dry_run": self.dry_run, "run_key": self.key, "report_path": str(self.page)}


def run_promotion(
    ctx: RunContext,
    *,
    dry_run: bool = False,
    actor: str = "lockgate",
    policy: Policy | None = None,
    registry: ModelRegistry | None = None,
    state_url: str | None = None,
    reports_dir: Path | None = None,
    lock_timeout_s: float = 120,
) -> Decision:
    """Decide on one watched model and act on the decision; returns the decision with its outcome.

    Args:
        ctx: the run: the model (one named in the policy); its run key (the DAG run id; the same key
            reruns idempotently; default `manual__<time>`), DAG id and run id, recorded with the
            decision and the report; `now`, the decision time (default: the clock; tests pass one).
        dry_run: decide and write the page, but write nothing to the registry or the audit trail.
        actor: who moves aliases (recorded in the audit trail).
        policy: the policy (default: `load_policy()`).
        registry: the registry adapter (default: the configured MLflow).
        state_url: lockgate's state database (default: `resolve_state_db_url()`).
        reports_dir: where the decision page is written (evidence comes from the state database).
        lock_timeout_s: how long to wait for another promotion of the same model.

    Returns:
        The `Decision`; `outcome` says what was done (`moved`, `tagged`, `unchanged`, `aborted`,
        `repaired`, `dry_run`) and `report_path` where the decision page is.
    """
    from lockgate.registry.audit import state_engine

    policy = policy or load_policy()
    policy.model(ctx.model)  # an unwatched model fails before anything is read
    registry = registry or ModelRegistry()
    reports = reports_dir or get_settings().reports_dir
    when = ctx.now or datetime.now(UTC)
    key = ctx.key(f"manual__{when.strftime('%Y%m%dT%H%M%S')}")
    page = decision_page_path(reports, ctx.model, key)
    run = _Promotion(
        ctx=ctx,
        policy=policy,
        registry=registry,
        reports=reports,
        engine=state_engine(state_url),
        when=when,
        key=key,
        page=page,
        actor=actor,
        dry_run=dry_run,
    )
    if dry_run:
        decision, fresh = _decide_only(run)
        finished: list[Decision] = []
    else:
        decision, fresh, finished = _decide_and_act(run, lock_timeout_s)
    _log_decision(decision)
    return _publish(run, decision, fresh=fresh, finished=finished)


def _decide_only(run: _Promotion) -> tuple[Decision, bool]:
    """A dry run: no lock, no move; the decision row only. Returns the decision and whether its row is new."""
    from lockgate.registry.audit import record_decision

    with run.engine.connect() as read_conn:
        inputs, _, _ = gather_inputs(run.model, run.policy, run.registry, run.reports, read_conn)
    decision = decide_promotion(inputs, run.policy.model(run.model), run.when)
    decision = decision.model_copy(update={**run.recorded(), "outcome": "dry_run"})
    with run.engine.begin() as conn:
        fresh = record_decision(conn, decision, dag_id=run.ctx.dag_id, run_id=run.ctx.run_id)
    return decision, fresh


def _decide_and_act(run: _Promotion, lock_timeout_s: float) -> tuple[Decision, bool, list[Decision]]:
    """Inside the model's lock: finish interrupted moves, decide from fresh reads, act, record.

    Returns:
        The decision with its outcome, whether its row is new (False: this run key already moved an
        alias), and the decisions of earlier runs whose moves this run finished.
    """
    from lockgate.registry.audit import model_lock, record_decision
    from lockgate.registry.moves import MoveContext, apply_decision, reconcile, record_outside_moves

    with model_lock(run.engine, run.model, timeout_s=lock_timeout_s) as conn:
        finished = reconcile(run.registry, conn, run.model, actor=run.actor, now=run.when)
        outside = record_outside_moves(run.registry, conn, run.model, run_key=run.key, now=run.when)
        inputs, state, challenger_tags = gather_inputs(run.model, run.policy, run.registry, run.reports, conn)
        decision = decide_promotion(inputs, run.policy.model(run.model), run.when).model_copy(update=run.recorded())
        if outside:
            # Said first on the decision page and in the status tag: the gates were bypassed.
            bypass = [f"{e.message}; recorded in the audit trail" for e in outside if e.message]
            decision = decision.model_copy(update={"reasons": bypass + list(decision.reasons)})
        move = MoveContext(
            run.registry,
            conn,
            decision,
            actor=run.actor,
            now=run.when,
            run_key=run.key,
            report_path=str(run.page),
            dag_id=run.ctx.dag_id,
            run_id=run.ctx.run_id,
        )
        outcome = apply_decision(move, state, challenger_tags)
        decision = decision.model_copy(update={"outcome": outcome})
        fresh = record_decision(conn, decision, dag_id=run.ctx.dag_id, run_id=run.ctx.run_id)
    return decision, fresh, finished


def _log_decision(decision: Decision) -> None:
    log.info(
        "%s: %s (outcome %s); champion %s, challenger %s; evidence %s, policy %s",
        decision.model_name,
        decision.action,
        decision.outcome,
        decision.champion,
        decision.challenger,
        decision.evidence_hash,
        decision.policy_hash,
    )
    for reason in decision.reasons:
        log.info("%s: %s", decision.model_name, reason)


def _publish(run: _Promotion, decision: Decision, *, fresh: bool, finished: list[Decision]) -> Decision:
    """After the lock: the pages of finished runs and of this one, and the metrics. Returns the run's decision."""
    approvers = run.policy.model(run.model).approvers
    mlflow_auth = run.policy.approvals.mlflow_auth
    for done in finished:
        # the interrupted run never wrote its page: write it now, from its own decision
        if done.report_path and not Path(done.report_path).exists():
            publish_decision(
                done, engine=run.engine, reports_dir=run.reports, approvers=approvers, mlflow_auth=mlflow_auth
            )
    if not fresh:
        # This run already moved an alias; what a rerun finds is that move's consequence.
        log.info("%s: run %s already moved an alias; its decision page %s is kept", run.model, run.key, run.page)
        same_run = [d for d in finished if d.run_key == run.key]
        return same_run[-1] if same_run else decision
    publish_decision(
        decision,
        engine=run.engine,
        reports_dir=run.reports,
        approvers=approvers,
        dag_id=run.ctx.dag_id,
        run_id=run.ctx.run_id,
        mlflow_auth=mlflow_auth,
    )
    if not run.dry_run:
        export_decision_metrics(decision, run.engine, max_age_hours=run.policy.evidence.max_age_hours)
    return decision


def approve(
    model_name: str, version: str, by: str, *, reject: bool = False, now: datetime | None = None
) -> dict[str, str]:
    """Approve (or reject) a version as `by`: the function behind `lockgate approve`. Returns the tags set."""
    from lockgate.registry.commands import approve as _approve

    return _approve(model_name, version, by, reject=reject, now=now)


def cmd_run(args: argparse.Namespace) -> int:
    """`lockgate run promotion --model M [--dry-run]`."""
    actor = f"cli:{os.environ.get('USER') or 'unknown'}"
    decision = run_promotion(RunContext.for_cli(args.model), dry_run=bool(getattr(args, "dry_run", False)), actor=actor)
    print(format_decision(decision))
    return 0


def promotion_task(ctx: RunContext, *, dry_run: bool) -> dict[str, object]:
    """`run_promotion` for an Airflow task (`ctx` from `lockgate.task_edge.run_context`): domain errors
    fail without retry, transient ones are retried.

    Returns the decision as JSON (the task's XCom).
    """
    from lockgate.task_edge import task_errors

    with task_errors():
        decision = run_promotion(ctx, dry_run=dry_run, actor=f"airflow:{ctx.dag_id or DAG_ID}")
    return decision.model_dump(mode="json")


def watched_model_names(requested: str | None) -> list[str]:
    """The model a run was asked for (checked against the policy), or every watched model.

    For an Airflow task: an invalid policy or an unwatched model fails without retry.
    """
    from lockgate.task_edge import task_errors

    with task_errors():
        policy = load_policy()
        if requested and requested.strip():
            return [policy.model(requested.strip()).name]
    return [m.name for m in policy.models]
