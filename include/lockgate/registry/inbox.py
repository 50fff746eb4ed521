"""Approvals in Airflow's "Required actions" inbox: what lockgate asks there, and what it does with the answer.

Airflow's API server records who answered from its auth manager (the logged-in user, not a name
typed into a form), so an answer in the inbox is an approval from an authenticated person. The
wait task (`lockgate.registry.approval_wait`) writes the request before it defers; an answer
resumes it with the event the API server builds (`chosen_options`, `responded_by_user`,
`responded_at`), and `record_inbox_answer` turns that event into an approval:

* a responder in the policy's approver list: a verified approval in lockgate's state database
  (`lockgate_verified_approvals`) and the same approval in the challenger's approval tags, where
  the promotion job reads every approval. The job counts it as authenticated only while the tags
  still match the verified row exactly (value, approver, evidence, time): tags edited afterwards
  are only asserted again;
* anyone else: refused and recorded in the audit trail like an unlisted tag approval; nothing is set.

Imported by the wait task at run time only (it loads the policy, MLflow and the state database).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lockgate.policy.schema import Policy, load_policy
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry
from lockgate.registry.audit import (
    APPROVAL_LOCK_TIMEOUT_S,
    AuditEntry,
    VerifiedApproval,
    model_lock,
    record_audit,
    record_verified_approval,
    state_engine,
)

log = logging.getLogger(__name__)

# The options of the standard provider's ApprovalOperator: the inbox shows them as approve/reject buttons.
APPROVE = "Approve"
REJECT = "Reject"
OPTIONS = [APPROVE, REJECT]
SOURCE = "airflow_hitl"
"""`VerifiedApproval.source` of an answer given in Airflow's Required actions inbox."""
WHERE = "Airflow's Required actions"


@dataclass(frozen=True)
class InboxRequest:
    """What the inbox shows: a subject, a markdown body, and who may answer."""

    subject: str
    body: str
    assigned_users: list[dict[str, str]]


@dataclass(frozen=True)
class InboxOutcome:
    """What an inbox answer led to. `event` is what the wait task returns: `answered`, `refused` or `changed`."""

    event: str
    message: str
    by: str | None = None


def _code(text: object) -> str:
    # A backtick would end the code span early and let the rest render as markdown.
    return "`" + str(text).replace("`", "'") + "`"


def inbox_request(decision: Mapping[str, Any], approvers: Sequence[str]) -> InboxRequest:
    """The inbox request for a decision awaiting approval (`decision`: a `Decision` as JSON).

    `assigned_users` are the policy's approvers as Airflow user ids: Airflow lets only them answer
    (with the simple auth manager of the local stack a user's id is the username; with another auth
    manager, list the ids it gives its users). Lockgate checks the responder against the list again.
    """
    from lockgate.reports.links import report_url

    model = decision["model_name"]
    version = decision["challenger"]
    page = report_url(decision["report_path"]) if decision.get("report_path") else None
    verdicts = decision.get("verdicts") or []
    lines = [
        f"Lockgate asks to promote **{model}** version **{version}** to `champion` "
        f"(now version {decision.get('champion') or '-'}).",
        "",
        f"* model: {_code(model)}",
        f"* challenger version: {_code(version)}",
        f"* evidence: {_code(decision['evidence_hash'])} (your answer counts for this evidence only)",
        f"* policy: {_code(decision.get('policy_hash') or '-')}",
        f"* decision page: {page}" if page else "* decision page: see the Lockgate menu",
        f"* approvers: {', '.join(_code(a) for a in approvers) or '-'}",
        "",
        f"**Gates** ({sum(1 for v in verdicts if v.get('status') == 'pass')} of {len(verdicts)} pass):",
        "",
    ]
    lines += [
        f"* {_code(v.get('gate'))} ({v.get('action')}): **{v.get('status')}**: {v.get('reason')}" for v in verdicts
    ] or ["* no gate evaluated"]
    lines += [
        "",
        "Approve moves `champion` to this version at once; Reject marks it `rejected`. Airflow records "
        "you as the approver, so the decision page and the audit trail say the approval is authenticated. "
        "An approval set as MLflow tags (`lockgate.approval`, `lockgate.approved_by`) or with "
        "`lockgate approve` works too: the first answer ends this wait.",
    ]
    return InboxRequest(
        subject=f"Promote {model} version {version} to champion?",
        body="\n".join(lines),
        assigned_users=[{"id": a, "name": a} for a in approvers],
    )


def is_inbox_answer(event: Mapping[str, Any]) -> bool:
    """Whether an event that resumed the wait is an inbox answer (the approval trigger's have `status`)."""
    return "chosen_options" in event


def _answered_at(value: object) -> datetime:
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, str):
        at = datetime.fromisoformat(value)
    else:
        raise ValueError(f"an inbox answer without a valid responded_at: {value!r}")
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def record_inbox_answer(
    model_name: str,
    version: str,
    evidence_hash: str,
    event: Mapping[str, Any],
    *,
    source_ref: str,
    policy: Policy | None = None,
    registry: ModelRegistry | None = None,
    state_url: str | None = None,
) -> InboxOutcome:
    """Turn an inbox answer into an approval (listed responder) or a recorded refusal (anyone else).

    Args:
        model_name: the model whose challenger the inbox asked about.
        version: the challenger version the inbox asked about.
        evidence_hash: the evidence the inbox request showed (what the answer is given on).
        event: the event Airflow resumed the task with (`HITLDetail.as_resume_event_payload()`).
        source_ref: which inbox request was answered (unique: the task instance and its try).
        policy: the policy (default: `load_policy()`).
        registry: the registry adapter (default: the configured MLflow).
        state_url: lockgate's state database.

    Returns:
        `answered` (the approval is set), `refused` (unlisted responder, or no responder), or
        `changed` (the version is no longer the challenger: nothing set).
    """
    policy = policy or load_policy()
    wm = policy.model(model_name)
    responder = event.get("responded_by_user") or {}
    who = str(responder.get("id") or "").strip()
    chosen = list(event.get("chosen_options") or [])
    value = "approved" if chosen == [APPROVE] else "rejected" if chosen == [REJECT] else None
    if not who or value is None:
        # No user: Airflow applied a default (lockgate sets none); an unknown option: not an answer.
        return InboxOutcome("refused", f"an inbox event without a responder or a valid option: {chosen}")
    at = _answered_at(event.get("responded_at"))
    name = str(responder.get("name") or who)
    shown = who if name == who else f"{who} ({name})"
    registry = registry or ModelRegistry()
    engine = state_engine(state_url)

    def refuse(event_name: str, why: str) -> InboxOutcome:
        message = f"{value} in {WHERE} by Airflow user {shown}, {why}: not counted, nothing was set"
        with engine.begin() as conn:
            record_audit(
                conn,
                AuditEntry(
                    model_name=model_name,
                    kind="approval_refused",
                    actor=who,
                    version=version,
                    evidence_hash=evidence_hash,
                    policy_hash=policy.policy_hash,
                    message=message,
                    at=at,
                    dedupe_key=f"approval_refused:{model_name}:{version}:{value}:{who}:{evidence_hash}:{source_ref}",
                    # The refused name was vouched for by Airflow: this is who really tried.
                    approval_auth="authenticated",
                ),
            )
        log.warning("%s version %s: %s", model_name, version, message)
        return InboxOutcome(event_name, message, by=who)

    if who not in wm.approvers:
        return refuse("refused", f"who is not in the approver list ({', '.join(wm.approvers)})")
    # As `lockgate approve`: one answer at a time per model, so that tag writes never interleave.
    with model_lock(engine, model_name, timeout_s=APPROVAL_LOCK_TIMEOUT_S):
        challenger = registry.state(model_name).challenger
        if challenger != version:
            return refuse("changed", f"but version {version} is no longer the challenger (now {challenger})")
        tags = registry.version_tags(model_name, version)
        values: dict[str, str | None] = {
            T.APPROVAL: value,
            T.APPROVED_BY: who,
            T.APPROVAL_EVIDENCE: evidence_hash,
            T.APPROVED_AT: at.isoformat(),
        }
        if (tags.get(T.APPROVAL) or "").strip():
            # The inbox answer ended the wait first; an approval tag set meanwhile is kept as a trace.
            values[T.PREVIOUS_APPROVAL] = (
                f"{tags[T.APPROVAL]} by {tags.get(T.APPROVED_BY) or '?'}: replaced by the answer in {WHERE}"
            )
        with engine.begin() as conn:
            # The verified row first: tags without it are merely asserted, never the other way round.
            record_verified_approval(
                conn,
                VerifiedApproval(
                    model_name=model_name,
                    version=version,
                    value=value,
                    approved_by=who,
                    user_name=name,
                    evidence_hash=evidence_hash,
                    at=at,
                    source=SOURCE,
                    source_ref=source_ref,
                ),
            )
        registry.set_tags(model_name, version, values)
    message = f"{value} in {WHERE} by Airflow user {shown} on evidence {evidence_hash}"
    log.info("%s version %s: %s", model_name, version, message)
    return InboxOutcome("answered", message, by=who)
