"""The promotion job: gather the latest evidence and the registry's state, decide, act, and write the decision page.

`run_promotion()` is the whole job (the DAG's move task, `lockgate run promotion`, the demo):

1. take the model's promotion lock in lockgate's state database, and finish any move an earlier
   run recorded as intended and did not finish (it died, or MLflow stopped answering): with that
   run's decision and approver (`lockgate.registry.moves.reconcile`);
2. read the aliases, the challenger's approval tags and the latest benchmark, drift, quality
   and live summaries; apply the policy (`lockgate.policy.decide_promotion`);
3. carry the decision out (`lockgate.registry.moves`): re-read the aliases right before a move,
   move `champion` / `previous_champion` / `challenger`, set the `lockgate.*` tags, write the
   audit rows and the decision row, all idempotently;
4. release the lock, then write the decision page and record it in the reports index.

Because the decision is taken inside the lock from fresh reads, two runs at once make at most
one move: the second sees the first one's result.
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.errors import EvidenceError
from lockgate.evidence import EvidenceKind, EvidenceSummary, latest_summary_path, read_summary
from lockgate.policy import Decision, PromotionInputs, decide_promotion, gate_kinds
from lockgate.policy.schema import Policy, load_policy
from lockgate.registry.adapter import ModelRegistry, RegistryState, approval_record
from lockgate.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

DAG_ID = "lockgate_promotion"


def read_latest_evidence(
    reports_dir: Path, model_name: str, kinds: list[EvidenceKind]
) -> tuple[dict[EvidenceKind, EvidenceSummary | None], dict[EvidenceKind, str]]:
    """The latest summary of each kind; an unreadable one is None with the reason beside it."""
    evidence: dict[EvidenceKind, EvidenceSummary | None] = {}
    errors: dict[EvidenceKind, str] = {}
    for kind in kinds:
        path = latest_summary_path(reports_dir, kind, model_name)
        if not path.exists():
            evidence[kind] = None
            continue
        try:
            evidence[kind] = read_summary(path)
        except EvidenceError as exc:
            log.warning("%s", exc)
            evidence[kind] = None
            errors[kind] = str(exc)
    return evidence, errors


def gather_inputs(
    model_name: str,
    policy: Policy,
    registry: ModelRegistry,
    reports_dir: Path,
    state_conn: Connection | None = None,
) -> tuple[PromotionInputs, RegistryState, dict[str, str]]:
    """Everything the engine needs, read now: aliases, evidence, the challenger's approval tags.

    With `state_conn` (lockgate's state database), an approval that lockgate received from an
    authentication system (Airflow's Required actions inbox) and that the tags still show unchanged
    is marked authenticated; without it every approval is taken as asserted. With the policy's
    `approvals.mlflow_auth`, any other approval counts only when lockgate's MLflow app attests that
    the approver wrote it (`registry.attestation.require_mlflow_authentication`).

    Returns:
        The engine's inputs, the alias state they were read from, and the challenger's tags.
    """
    wm = policy.model(model_name)
    state = registry.state(model_name)
    evidence, errors = read_latest_evidence(reports_dir, model_name, gate_kinds(wm.gates))
    challenger_tags: dict[str, str] = {}
    approval = None
    if state.challenger is not None and state.challenger != state.champion:
        challenger_tags = registry.version_tags(model_name, state.challenger)
        approval = approval_record(challenger_tags)
        if state_conn is not None:
            from lockgate.registry.audit import vouched

            approval = vouched(approval, state_conn, model_name, state.challenger)
        if policy.approvals.mlflow_auth:
            from lockgate.registry.attestation import require_mlflow_authentication

            approval = require_mlflow_authentication(approval, challenger_tags, model_name, state.challenger)
    inputs = PromotionInputs(
        model_name=model_name,
        champion=state.champion,
        challenger=state.challenger,
        previous_champion=state.previous_champion,
        evidence=evidence,
        evidence_errors=errors,
        approval=approval,
        policy_hash=policy.policy_hash,
        max_evidence_age_hours=policy.evidence.max_age_hours,
    )
    return inputs, state, challenger_tags


def preview(
    model_name: str,
    *,
    policy: Policy | None = None,
    registry: ModelRegistry | None = None,
    reports_dir: Path | None = None,
    now: datetime | None = None,
) -> Decision:
    """Decide without the lock and without writing anything (what the DAG waits on before it moves)."""
    policy = policy or load_policy()
    registry = registry or ModelRegistry()
    reports = reports_dir or get_settings().reports_dir
    inputs, _, _ = gather_inputs(model_name, policy, registry, reports)
    return decide_promotion(inputs, policy.model(model_name), now or datetime.now(UTC))


def decision_page_path(reports_dir: Path, model_name: str, run_key: str) -> Path:
    from lockgate.reports.decision import PAGE_NAME
    from lockgate.reports.html import report_dir

    return report_dir("decision", model_name, run_key, reports_dir) / PAGE_NAME


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


def export_decision_metrics(decision: Decision, engine: Engine, max_age_hours: float | None = None) -> None:
    """Push a recorded decision's gates and action to the Pushgateway (if configured). Never raises.

    A dry run pushes nothing: it changes nothing, metrics included.
    """
    from lockgate.observability.prometheus import export_decision
    from lockgate.registry.audit import list_decisions

    try:
        history = list_decisions(engine, decision.model_name, limit=200)
    except Exception as exc:  # noqa: BLE001 - metrics must never fail the decision
        log.warning("%s: decision history not read for the metrics: %s", decision.model_name, exc)
        history = []
    export_decision(decision, history=history, max_age_hours=max_age_hours)


def publish_decision(
    decision: Decision,
    *,
    engine: Engine,
    reports_dir: Path,
    approvers: list[str],
    dag_id: str | None = None,
    run_id: str | None = None,
    mlflow_auth: bool = False,
) -> None:
    """Write a decision's page and JSON at its `report_path` and record the page in the reports index."""
    from lockgate.registry.audit import list_audit, list_decisions
    from lockgate.reports.decision import render_decision_page, write_decision_page
    from lockgate.reports.index import ReportEntry, record_report

    if not decision.report_path:
        return
    page = Path(decision.report_path)
    model_name = decision.model_name
    html_text = render_decision_page(
        decision,
        page_dir=page.parent,
        reports_dir=reports_dir,
        approvers=approvers,
        mlflow_auth=mlflow_auth,
        history=list_decisions(engine, model_name, limit=20),
        audit=list_audit(engine, model_name, limit=50),
    )
    write_decision_page(page, html_text)
    # the same decision as data, for scripts and the demo (the page is for people)
    write_decision_page(page.with_name("decision.json"), decision.model_dump_json(indent=2))
    record_report(
        ReportEntry(
            kind="decision",
            model_name=model_name,
            run_key=decision.run_key or "",
            status=decision.action,
            title=f"Decision for {model_name}: {decision.action}",
            path=str(page),
            model_version=decision.subject_version or decision.challenger,
            champion_version=decision.champion,
            dag_id=dag_id,
            run_id=run_id,
            created_at=decision.decided_at,
        ),
        engine=engine,
    )
    log.info("%s: decision page %s", model_name, page)


def approve(
    model_name: str, version: str, by: str, *, reject: bool = False, now: datetime | None = None
) -> dict[str, str]:
    """Approve (or reject) a version as `by`: the function behind `lockgate approve`. Returns the tags set."""
    from lockgate.registry.commands import approve as _approve

    return _approve(model_name, version, by, reject=reject, now=now)


def format_decision(decision: Decision) -> str:
    """A few lines for a terminal."""
    lines = [
        f"{decision.model_name}: {decision.action} (outcome: {decision.outcome})",
        f"  champion {decision.champion or '-'}, challenger {decision.challenger or '-'}, "
        f"previous_champion {decision.previous_champion or '-'}",
        f"  evidence {decision.evidence_hash}, policy {decision.policy_hash}",
    ]
    lines += [f"  - {r}" for r in decision.reasons]
    for v in decision.verdicts:
        lines.append(f"  [{v.status:7}] {v.gate}: {v.reason}")
    if decision.report_path:
        lines.append(f"  decision page: {decision.report_path}")
    if decision.action == "await_approval" and decision.challenger:
        lines.append(f"  approve with: lockgate approve {decision.model_name} {decision.challenger} --by <name>")
    return "\n".join(lines)


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
