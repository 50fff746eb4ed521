"""The promotion job's outputs: the decision page and its JSON, the reports index row, the Pushgateway metrics.

Written after the lock is released (`job.run_promotion`); `format_decision` is the terminal's view.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.policy import Decision

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


def decision_page_path(reports_dir: Path, model_name: str, run_key: str) -> Path:
    from lockgate.reports.decision import PAGE_NAME
    from lockgate.reports.html import report_dir

    return report_dir("decision", model_name, run_key, reports_dir) / PAGE_NAME


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
