"""Turning a `Decision` into registry writes: alias moves, status tags, approval bookkeeping, audit rows.

Called with the model's promotion lock held (`audit.model_lock`) and the connection it yields,
so audit rows and moves of concurrent runs cannot interleave. Every step is idempotent: an
alias already in place, a tag already at its value, an audit row already written (same
dedupe key) is not written again, so a run that crashed half-way can simply be rerun.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from sqlalchemy.engine import Connection

from lockgate.errors import ConcurrentMoveError
from lockgate.policy.model import ApprovalRecord, Decision
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry, RegistryState, approval_record
from lockgate.registry.audit import AuditEntry, record_audit

log = logging.getLogger(__name__)

REFUSED_STATUSES = ("unlisted", "invalid")
RESET_STATUSES = ("stale", "expired")
MAX_TAG_CHARS = 4000  # MLflow's SQL stores cap tag values at 5000 characters


def _short(text: str) -> str:
    return text if len(text) <= MAX_TAG_CHARS else text[: MAX_TAG_CHARS - 1] + "…"


class MoveContext:
    """What every write of one decision shares: the registry, the audit connection, who and when."""

    def __init__(
        self,
        registry: ModelRegistry,
        conn: Connection,
        decision: Decision,
        actor: str,
        now: datetime,
        run_key: str,
        report_path: str | None,
    ) -> None:
        self.registry = registry
        self.conn = conn
        self.decision = decision
        self.actor = actor
        self.now = now
        self.run_key = run_key
        self.report_path = report_path
        self.model = decision.model_name

    def audit(
        self,
        kind: str,
        dedupe: str,
        *,
        actor: str | None = None,
        version: str | None = None,
        alias: str | None = None,
        from_version: str | None = None,
        to_version: str | None = None,
        approved_by: str | None = None,
        message: str | None = None,
    ) -> bool:
        d = self.decision
        entry = AuditEntry(
            model_name=self.model,
            kind=kind,
            actor=actor or self.actor,
            version=version,
            alias=alias,
            from_version=from_version,
            to_version=to_version,
            approved_by=approved_by,
            evidence_hash=d.evidence_hash,
            policy_hash=d.policy_hash,
            run_key=self.run_key,
            message=message,
            at=self.now,
            dedupe_key=f"{kind}:{self.model}:{dedupe}",
        )
        return record_audit(self.conn, entry)

    def decision_tags(self) -> dict[str, str | None]:
        d = self.decision
        values: dict[str, str | None] = {
            T.EVIDENCE: d.evidence_hash,
            T.POLICY: d.policy_hash,
            T.DECISION: d.action,
            T.STATUS_REASON: _short("; ".join(d.reasons)) if d.reasons else None,
        }
        if d.subject_status:
            values[T.STATUS] = d.subject_status
        if self.report_path:
            values[T.DECISION_REPORT] = self.report_path
        return values

    def move_alias(self, alias: str, version: str, approved_by: str | None = None, why: str | None = None) -> bool:
        before = self.registry.state(self.model).as_dict().get(alias)
        if not self.registry.set_alias(self.model, alias, version):
            return False
        self.audit(
            "alias_move",
            f"{alias}:{before}:{version}:{self.decision.evidence_hash}",
            alias=alias,
            version=version,
            from_version=before,
            to_version=version,
            approved_by=approved_by,
            message=why,
        )
        return True

    def remove_alias(self, alias: str, why: str) -> bool:
        before = self.registry.state(self.model).as_dict().get(alias)
        if before is None or not self.registry.delete_alias(self.model, alias):
            return False
        self.audit(
            "alias_removed",
            f"{alias}:{before}:{self.decision.evidence_hash}",
            alias=alias,
            version=before,
            from_version=before,
            to_version=None,
            message=why,
        )
        return True


def check_unchanged(registry: ModelRegistry, model: str, expected: RegistryState, aliases: tuple[str, ...]) -> None:
    """Re-read the aliases just before a move; abort when another writer moved one since the decision.

    Raises:
        ConcurrentMoveError: an alias in `aliases` no longer points where the decision saw it.
    """
    now = registry.state(model).as_dict()
    seen = expected.as_dict()
    changed = [f"{a}: {seen[a]} -> {now[a]}" for a in aliases if now[a] != seen[a]]
    if changed:
        raise ConcurrentMoveError(f"{model}: aliases changed since the decision ({', '.join(changed)}); move aborted")


def bind_approval(ctx: MoveContext, version: str, tags: dict[str, str]) -> ApprovalRecord | None:
    """Pin an approval set in the MLflow UI to the evidence it was given on, and time-stamp it, once."""
    record = approval_record(tags)
    if record is None:
        return None
    pin: dict[str, str | None] = {}
    if T.APPROVAL_EVIDENCE not in tags and record.evidence_hash:
        pin[T.APPROVAL_EVIDENCE] = record.evidence_hash
    if T.APPROVED_AT not in tags:
        pin[T.APPROVED_AT] = ctx.now.isoformat()
    if pin:
        ctx.registry.set_tags(ctx.model, version, pin)
    return record


def settle_approval(ctx: MoveContext, version: str, tags: dict[str, str]) -> None:
    """Record how the challenger's approval was judged; clear one that does not count so a person is asked again."""
    check = ctx.decision.approval
    record = bind_approval(ctx, version, tags)
    if check is None or record is None:
        return
    given = f"{record.value} by {record.by or '?'} on {record.evidence_hash or 'no evidence'}"
    if check.status == "approved":
        ctx.audit(
            "approval",
            f"{version}:approved:{check.by}:{ctx.decision.evidence_hash}",
            actor=check.by,
            version=version,
            approved_by=check.by,
            message=check.reason,
        )
    elif check.status == "rejected":
        ctx.audit(
            "rejection",
            f"{version}:rejected:{check.by}:{ctx.decision.evidence_hash}",
            actor=check.by,
            version=version,
            approved_by=check.by,
            message=check.reason,
        )
    elif check.status in REFUSED_STATUSES or check.status in RESET_STATUSES:
        kind = "approval_refused" if check.status in REFUSED_STATUSES else "approval_reset"
        ctx.audit(
            kind,
            f"{version}:{record.value}:{record.by}:{record.evidence_hash}:{ctx.decision.evidence_hash}",
            actor=record.by or "unknown",
            version=version,
            approved_by=None,
            message=check.reason,
        )
        ctx.registry.set_tags(
            ctx.model,
            version,
            {**dict.fromkeys(T.APPROVAL_TAGS), T.PREVIOUS_APPROVAL: _short(f"{given}: {check.reason}")},
        )


def apply_promote(ctx: MoveContext, expected: RegistryState) -> str:
    d = ctx.decision
    new, old = d.target, d.champion
    if new is None:
        raise ValueError("a promote decision without a target")
    approved_by = d.approval.by if d.approval else None
    check_unchanged(ctx.registry, ctx.model, expected, (T.CHAMPION, T.CHALLENGER))
    if old is not None:
        ctx.move_alias(T.PREVIOUS_CHAMPION, old, why=f"champion {old} replaced by {new}")
    # the champion move itself: re-read once more right before it
    check_unchanged(ctx.registry, ctx.model, expected, (T.CHAMPION, T.CHALLENGER))
    ctx.move_alias(T.CHAMPION, new, approved_by=approved_by, why="; ".join(d.reasons))
    finish_promotion(ctx, new, old, approved_by)
    return "moved"


def finish_promotion(ctx: MoveContext, new: str, old: str | None, approved_by: str | None) -> None:
    """Everything after the champion move; also what completes a promotion a crash interrupted."""
    if ctx.registry.state(ctx.model).challenger == new:
        ctx.remove_alias(T.CHALLENGER, f"version {new} is the champion now")
    values = ctx.decision_tags()
    values[T.STATUS] = "promoted"
    values[T.PROMOTED_AT] = ctx.registry.version_tags(ctx.model, new).get(T.PROMOTED_AT) or ctx.now.isoformat()
    values[T.PROMOTED_FROM] = old or ""
    values[T.PROMOTED_BY] = approved_by or ctx.actor
    ctx.registry.set_tags(ctx.model, new, values)
    if old is not None and old != new:
        ctx.registry.set_tags(ctx.model, old, {T.REPLACED_BY: new})
    ctx.registry.set_model_tag(
        ctx.model,
        T.LAST_MOVE,
        json.dumps(
            {
                "kind": "promote",
                "from": old,
                "to": new,
                "by": approved_by or ctx.actor,
                "evidence": ctx.decision.evidence_hash,
                "policy": ctx.decision.policy_hash,
                "at": ctx.now.isoformat(),
            }
        ),
    )


def apply_rollback(ctx: MoveContext, expected: RegistryState) -> str:
    d = ctx.decision
    bad, good = d.champion, d.target
    if bad is None or good is None:
        raise ValueError("a rollback decision needs a champion and a target")
    check_unchanged(ctx.registry, ctx.model, expected, (T.CHAMPION, T.PREVIOUS_CHAMPION))
    ctx.move_alias(T.CHAMPION, good, why="rollback: " + "; ".join(d.reasons))
    # The rolled-back version must not become the next rollback target.
    ctx.remove_alias(T.PREVIOUS_CHAMPION, f"rolled back to {good}")
    values = ctx.decision_tags()
    values[T.ROLLED_BACK_AT] = ctx.now.isoformat()
    values[T.ROLLED_BACK_TO] = good
    ctx.registry.set_tags(ctx.model, bad, values)
    # the restored version is the champion again
    ctx.registry.set_tags(ctx.model, good, {T.STATUS: "promoted", T.REPLACED_BY: None})
    ctx.registry.set_model_tag(
        ctx.model,
        T.LAST_MOVE,
        json.dumps(
            {
                "kind": "rollback",
                "from": bad,
                "to": good,
                "by": ctx.actor,
                "evidence": d.evidence_hash,
                "policy": d.policy_hash,
                "at": ctx.now.isoformat(),
            }
        ),
    )
    return "moved"


def apply_decision(ctx: MoveContext, expected: RegistryState, challenger_tags: dict[str, str]) -> str:
    """Carry out a decision; returns the outcome.

    Outcomes: `moved` (an alias moved), `tagged` (status tags written), `repaired` (an interrupted
    promotion completed), `unchanged` (nothing to write), `aborted` (the aliases changed under us:
    recorded in the audit trail, nothing moved).
    """
    d = ctx.decision
    try:
        judged = d.action in ("promote", "await_approval", "hold")
        if judged and d.challenger is not None and d.challenger != d.champion:
            settle_approval(ctx, d.challenger, challenger_tags)
        if d.action == "promote":
            return apply_promote(ctx, expected)
        if d.action == "rollback":
            return apply_rollback(ctx, expected)
    except ConcurrentMoveError as exc:
        log.warning("%s", exc)
        ctx.audit("move_aborted", f"{ctx.run_key}:{d.action}:{d.evidence_hash}", message=str(exc))
        return "aborted"
    if d.action == "no_op" and d.challenger is not None and d.challenger == d.champion:
        # A promotion interrupted after the champion moved: finish it.
        before = ctx.registry.version_tags(ctx.model, d.champion)
        finish_promotion(ctx, d.champion, before.get(T.PROMOTED_FROM) or d.previous_champion, before.get(T.PROMOTED_BY))
        return "repaired"
    if d.subject_version is not None:
        changed = ctx.registry.set_tags(ctx.model, d.subject_version, ctx.decision_tags())
        return "tagged" if changed else "unchanged"
    return "unchanged"
