"""The operator that waits for an approval without holding a worker slot (it defers to `ApprovalTrigger`).

Imported by the DAG file at parse time: only airflow.sdk here; the trigger and MLflow are
imported when the task runs.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

log = logging.getLogger(__name__)


class AwaitApprovalOperator(BaseOperator):
    """Wait, deferred, until the challenger of a decision awaiting approval gets an answer (or a deadline).

    `decision` is the promotion task's output (a `Decision` as JSON). The operator returns
    `{"model", "event"}`, where `event` is `not_waiting`, `answered`, `changed` or `timeout`.
    The run's params `approval_wait_minutes` (0: do not wait) and `approval_poll_seconds` apply, in
    runs a person triggers only: a scheduled or asset-triggered run never waits, so that it never
    holds one of the DAG's few active-run slots for the length of a wait (a run a person triggers, or
    the next scheduled one, would queue behind it). Those runs decide and end; the next run (every
    30 minutes, or when new evidence lands) acts on an answer given meanwhile.
    """

    template_fields = ("decision",)
    ui_color = "#e0ecff"

    def __init__(self, *, decision: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = decision

    # `raise TaskDeferred` is what BaseOperator.defer() does; spelled out so the end of execute() is plain.

    def execute(self, context: Context) -> dict[str, Any]:
        params = context["params"]
        d = self.decision
        model = d["model_name"]
        wait_minutes = float(params.get("approval_wait_minutes") or 0)
        run_type = getattr(context.get("dag_run"), "run_type", None)
        if wait_minutes > 0 and run_type != "manual":
            log.info("%s: a %s run does not wait for an approval; the next run acts on it", model, run_type)
            wait_minutes = 0
        if d.get("action") != "await_approval" or d.get("dry_run") or wait_minutes <= 0 or not d.get("challenger"):
            return {"model": model, "event": "not_waiting"}
        from airflow.sdk.exceptions import TaskDeferred

        from lockgate.registry.approval_trigger import ApprovalTrigger
        from lockgate.settings import resolve_mlflow_uri

        deadline = datetime.now(UTC) + timedelta(minutes=wait_minutes)
        log.info(
            "%s: waiting up to %g min for an approval of version %s (evidence %s)",
            model,
            wait_minutes,
            d["challenger"],
            d["evidence_hash"],
        )
        raise TaskDeferred(
            trigger=ApprovalTrigger(
                model_name=model,
                version=str(d["challenger"]),
                evidence_hash=d["evidence_hash"],
                tracking_uri=resolve_mlflow_uri(),
                deadline=deadline.isoformat(),
                poll_seconds=float(params.get("approval_poll_seconds") or 30),
            ),
            method_name="execute_complete",
            # The trigger ends itself at the deadline; this is the backstop if the triggerer is gone.
            timeout=timedelta(minutes=wait_minutes + 5),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        model = self.decision["model_name"]
        status = (event or {}).get("status", "timeout")
        log.info("%s: approval wait ended: %s %s", model, status, event or "")
        return {"model": model, "event": status}
