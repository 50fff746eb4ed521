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
    `{"model", "event"}`, where `event` is `not_waiting`, `answered`, `refused`, `changed` or `timeout`.

    Two answers end the wait, whichever comes first:

    * an answer in Airflow's Required actions inbox: before deferring, the operator writes an
      Approve/Reject request there for the policy's approvers (`lockgate.registry.inbox`); Airflow's
      API server resumes a deferred task the moment someone answers, with who answered from its auth
      manager. A listed approver's answer becomes an authenticated approval; anyone else's is
      refused and recorded (`refused`: nothing moves, the next run asks again);
    * an approval tag in MLflow (or `lockgate approve`), which `ApprovalTrigger` polls for.

    Once one of them resumed the task, the other cannot: the inbox shows the request as no longer
    pending, and the trigger is gone.
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

        self.ask_in_inbox(context)
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

    def ask_in_inbox(self, context: Context) -> None:
        """Offer the approval in Airflow's Required actions inbox (the tag path works without it)."""
        from airflow.sdk.execution_time.hitl import HITLUser, upsert_hitl_detail

        from lockgate.policy.schema import load_policy
        from lockgate.registry.inbox import OPTIONS, inbox_request

        model = self.decision["model_name"]
        try:
            approvers = load_policy().model(model).approvers
            request = inbox_request(self.decision, approvers)
            upsert_hitl_detail(
                ti_id=context["task_instance"].id,
                options=OPTIONS,
                subject=request.subject,
                body=request.body,
                multiple=False,
                params={},  # no form fields; the execution API refuses a null
                assigned_users=[HITLUser(id=u["id"], name=u["name"]) for u in request.assigned_users],
            )
        except Exception as exc:  # noqa: BLE001 - without the inbox the tag path still answers the wait
            log.warning("%s: the approval is not offered in Airflow's Required actions: %s", model, exc)
            return
        log.info("%s: approval offered in Airflow's Required actions to %s", model, ", ".join(approvers))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from lockgate.registry.inbox import is_inbox_answer

        model = self.decision["model_name"]
        if event is not None and is_inbox_answer(event):
            return self.inbox_answered(context, event)
        status = (event or {}).get("status", "timeout")
        log.info("%s: approval wait ended: %s %s", model, status, event or "")
        return {"model": model, "event": status}

    def inbox_answered(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """An answer in the Required actions inbox resumed the task: record it as an approval or a refusal."""
        from lockgate.registry.inbox import record_inbox_answer

        d = self.decision
        ti = context["task_instance"]
        # One inbox request per task instance try: a retry asks again, with a fresh request.
        ref = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}/try-{ti.try_number}"
        outcome = record_inbox_answer(d["model_name"], str(d["challenger"]), d["evidence_hash"], event, source_ref=ref)
        log.info("%s: approval wait ended by an answer in the inbox: %s", d["model_name"], outcome.message)
        return {"model": d["model_name"], "event": outcome.event, "by": outcome.by}
