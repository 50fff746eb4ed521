"""The promotion job's entry points and its steps: lock, reconcile, decide, act, then publish.

See the package's docstring for the whole job.
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from lockgate.jobs.promotion.inputs import gather_inputs
from lockgate.jobs.promotion.outputs import (
    decision_page_path,
    export_decision_metrics,
    format_decision,
    publish_decision,
)
from lockgate.policy import Decision, decide_promotion
from lockgate.registry.adapter import ModelRegistry
from lockgate.settings import Policy, get_settings, load_policy

log = logging.getLogger(__name__)

DAG_ID = "lockgate_promotion"


def run_promotion(
    model_name: str,
    *,
    dry_run: bool = False,
    run_key: str | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    actor: str = "lockgate",
    policy: Policy | None = None,
    registry: ModelRegistry | None = None,
    state_url: str | None = None,
    reports_dir: Path | None = None,
    now: datetime | None = None,
    lock_timeout_s: float = 120,
) -> Decision:
    """Decide on one watched model and act on the decision; returns the decision with its outcome.

    Args:
        model_name: a model named in the policy.
        dry_run: decide and write the page, but write nothing to the registry or the audit trail.
        run_key: identifies the run (the DAG run id); the same key reruns idempotently.
        dag_id: recorded with the decision and the report.
        run_id: recorded with the decision and the report.
        actor: who moves aliases (recorded in the audit trail).
        policy: the policy (default: `load_policy()`).
        registry: the registry adapter (default: the configured MLflow).
        state_url: lockgate's state database (default: `resolve_state_db_url()`).
        reports_dir: where evidence summaries are read and the page is written.
        now: the decision time (default: the clock; tests pass one).
        lock_timeout_s: how long to wait for another promotion of the same model.

    Returns:
        The `Decision`; `outcome` says what was done (`moved`, `tagged`, `unchanged`, `aborted`,
        `repaired`, `dry_run`) and `report_path` where the decision page is.
    """
    from lockgate.registry.audit import model_lock, record_decision, state_engine
    from lockgate.registry.moves import MoveContext, apply_decision, reconcile, record_outside_moves

    policy = policy or load_policy()
    wm = policy.model(model_name)
    registry = registry or ModelRegistry()
    reports = reports_dir or get_settings().reports_dir
    when = now or datetime.now(UTC)
    key = run_key or f"manual__{when.strftime('%Y%m%dT%H%M%S')}"
    page = decision_page_path(reports, model_name, key)
    engine = state_engine(state_url)
    extra = {"dry_run": dry_run, "run_key": key, "report_path": str(page)}
    finished: list[Decision] = []

    if dry_run:
        with engine.connect() as read_conn:
            inputs, _, _ = gather_inputs(model_name, policy, registry, reports, read_conn)
        decision = decide_promotion(inputs, wm, when).model_copy(update={**extra, "outcome": "dry_run"})
        with engine.begin() as conn:
            fresh = record_decision(conn, decision, dag_id=dag_id, run_id=run_id)
    else:
        with model_lock(engine, model_name, timeout_s=lock_timeout_s) as conn:
            finished = reconcile(registry, conn, model_name, actor=actor, now=when)
            outside = record_outside_moves(registry, conn, model_name, run_key=key, now=when)
            inputs, state, challenger_tags = gather_inputs(model_name, policy, registry, reports, conn)
            decision = decide_promotion(inputs, wm, when).model_copy(update=extra)
            if outside:
                # Said first on the decision page and in the status tag: the gates were bypassed.
                bypass = [f"{e.message}; recorded in the audit trail" for e in outside if e.message]
                decision = decision.model_copy(update={"reasons": bypass + list(decision.reasons)})
            ctx = MoveContext(
                registry,
                conn,
                decision,
                actor=actor,
                now=when,
                run_key=key,
                report_path=str(page),
                dag_id=dag_id,
                run_id=run_id,
            )
            outcome = apply_decision(ctx, state, challenger_tags)
            decision = decision.model_copy(update={"outcome": outcome})
            fresh = record_decision(conn, decision, dag_id=dag_id, run_id=run_id)
    log.info(
        "%s: %s (outcome %s); champion %s, challenger %s; evidence %s, policy %s",
        model_name,
        decision.action,
        decision.outcome,
        decision.champion,
        decision.challenger,
        decision.evidence_hash,
        decision.policy_hash,
    )
    for reason in decision.reasons:
        log.info("%s: %s", model_name, reason)
    for done in finished:
        # the interrupted run never wrote its page: write it now, from its own decision
        if done.report_path and not Path(done.report_path).exists():
            publish_decision(
                done,
                engine=engine,
                reports_dir=reports,
                approvers=wm.approvers,
                mlflow_auth=policy.approvals.mlflow_auth,
            )
    if not fresh:
        # This run already moved an alias; what a rerun finds is that move's consequence.
        log.info("%s: run %s already moved an alias; its decision page %s is kept", model_name, key, page)
        same_run = [d for d in finished if d.run_key == key]
        return same_run[-1] if same_run else decision
    publish_decision(
        decision,
        engine=engine,
        reports_dir=reports,
        approvers=wm.approvers,
        dag_id=dag_id,
        run_id=run_id,
        mlflow_auth=policy.approvals.mlflow_auth,
    )
    if not dry_run:
        export_decision_metrics(decision, engine, max_age_hours=policy.evidence.max_age_hours)
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
    decision = run_promotion(args.model, dry_run=bool(getattr(args, "dry_run", False)), actor=actor)
    print(format_decision(decision))
    return 0


def promotion_task(model_name: str, *, dry_run: bool, run_id: str | None, dag_id: str = DAG_ID) -> dict[str, object]:
    """`run_promotion` for an Airflow task: domain errors fail without retry, transient ones are retried.

    Returns the decision as JSON (the task's XCom).
    """
    from lockgate.task_edge import task_errors

    with task_errors():
        decision = run_promotion(
            model_name, dry_run=dry_run, run_key=run_id, dag_id=dag_id, run_id=run_id, actor=f"airflow:{dag_id}"
        )
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
