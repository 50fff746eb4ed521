"""Turning a `Decision` into registry writes: alias moves, status tags, approval bookkeeping, audit rows.

Called with the model's promotion lock held (`audit.model_lock`) and the connection it yields,
which commits every row at once, so audit rows and moves of concurrent runs cannot interleave
and no row is lost with the process that wrote it.

A move decision (`promote`, `rollback`) is carried out through an intent (`audit.open_intent`):
the decision, its approver and the planned alias moves are committed before the first MLflow
write, each move is recorded done right after MLflow accepted it, and `reconcile()`, which every
promotion run calls before it decides, finishes an intent a dead run left open, with that run's
decision and approver. Every step is idempotent: an alias already in place, a tag already at its
value, an audit row already written (same dedupe key) is not written again.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.errors import ConcurrentMoveError
from lockgate.policy.model import ApprovalCheck, ApprovalRecord, Decision
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry, RegistryState, approval_record
from lockgate.registry.audit import (
    ALIAS_KINDS,
    AuditEntry,
    Intent,
    PlannedMove,
    audit_table,
    close_intent,
    mark_move_done,
    open_intent,
    open_intents,
    record_audit,
    record_decision,
)

log = logging.getLogger(__name__)

REFUSED_STATUSES = ("unlisted", "invalid")
RESET_STATUSES = ("stale", "expired")
OUTSIDE_ACTOR = "outside lockgate"
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
        dag_id: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.registry = registry
        self.conn = conn
        self.decision = decision
        self.actor = actor
        self.now = now
        self.run_key = run_key
        self.report_path = report_path
        self.dag_id = dag_id
        self.run_id = run_id
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
        approval_auth: str | None = None,
    ) -> bool:
        entry = self.entry(
            kind,
            dedupe,
            actor=actor,
            version=version,
            alias=alias,
            from_version=from_version,
            to_version=to_version,
            approved_by=approved_by,
            message=message,
            approval_auth=approval_auth,
        )
        return record_audit(self.conn, entry)

    def entry(
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
        approval_auth: str | None = None,
    ) -> AuditEntry:
        d = self.decision
        return AuditEntry(
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
            approval_auth=approval_auth,
        )

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
            from lockgate.reports.links import report_url

            # A URL of the plugin's page: the MLflow UI is read on other machines than this one.
            values[T.DECISION_REPORT] = report_url(self.report_path) or self.report_path
        return values


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
    """Pin an approval set in the MLflow UI to the evidence it was given on, and time-stamp it, once.

    Not an approval that lockgate's MLflow app attested: the server recorded its evidence and time
    already, and a write by lockgate would make lockgate's own MLflow user its last writer.
    """
    record = approval_record(tags)
    if record is None or record.attested_by is not None:
        return record
    pin: dict[str, str | None] = {}
    if T.APPROVAL_EVIDENCE not in tags and record.evidence_hash:
        pin[T.APPROVAL_EVIDENCE] = record.evidence_hash
    if T.APPROVED_AT not in tags:
        pin[T.APPROVED_AT] = ctx.now.isoformat()
    if pin:
        ctx.registry.set_tags(ctx.model, version, pin)
    return record


def record_judged_approval(ctx: MoveContext, version: str, check: ApprovalCheck) -> None:
    """The audit row of an approval or rejection that counts (one per version, approver and evidence)."""
    kind = "approval" if check.status == "approved" else "rejection"
    # `lockgate approve` records an asserted approval under the same key: a verified answer the same
    # person gives later on the same evidence (after an expiry) must still get its own row.
    verified = ":authenticated" if check.authenticated else ""
    ctx.audit(
        kind,
        f"{version}:{check.status}:{check.by}:{ctx.decision.evidence_hash}{verified}",
        actor=check.by,
        version=version,
        approved_by=check.by,
        message=check.reason,
        approval_auth=check.auth_label,
    )


def settle_approval(ctx: MoveContext, version: str, tags: dict[str, str]) -> None:
    """Record how the challenger's approval was judged; clear one that does not count so a person is asked again."""
    check = ctx.decision.approval
    record = bind_approval(ctx, version, tags)
    if check is None or record is None:
        return
    given = f"{record.value} by {record.by or '?'} on {record.evidence_hash or 'no evidence'}"
    if check.status in ("approved", "rejected"):
        record_judged_approval(ctx, version, check)
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


def plan_moves(decision: Decision, seen: RegistryState) -> list[PlannedMove]:
    """The alias writes of a `promote` or `rollback` decision, in the order they are made.

    Raises:
        ValueError: a promote without a target, a rollback without a champion and a target.
    """
    d = decision
    if d.action == "promote":
        new, old = d.target, d.champion
        if new is None:
            raise ValueError("a promote decision without a target")
        moves: list[PlannedMove] = []
        if old is not None and seen.previous_champion != old:
            moves.append(
                PlannedMove(
                    T.PREVIOUS_CHAMPION,
                    seen.previous_champion,
                    old,
                    why=f"champion {old} replaced by {new}",
                    guards={T.CHAMPION: old, T.CHALLENGER: seen.challenger},
                )
            )
        moves.append(
            PlannedMove(T.CHAMPION, old, new, why="; ".join(d.reasons), guards={T.CHALLENGER: seen.challenger})
        )
        if seen.challenger == new:
            moves.append(PlannedMove(T.CHALLENGER, new, None, why=f"version {new} is the champion now"))
        return moves
    if d.action == "rollback":
        bad, good = d.champion, d.target
        if bad is None or good is None:
            raise ValueError("a rollback decision needs a champion and a target")
        moves = [
            PlannedMove(
                T.CHAMPION,
                bad,
                good,
                why="rollback: " + "; ".join(d.reasons),
                guards={T.PREVIOUS_CHAMPION: seen.previous_champion},
            )
        ]
        if seen.previous_champion is not None:
            # The rolled-back version must not become the next rollback target.
            moves.append(PlannedMove(T.PREVIOUS_CHAMPION, seen.previous_champion, None, why=f"rolled back to {good}"))
        return moves
    raise ValueError(f"a {d.action} decision moves no alias")


def carry_out(ctx: MoveContext, intent: Intent, resumed_by: str | None = None) -> str:
    """Make an intent's remaining moves, recording each as done right after MLflow accepted it.

    A move the registry already shows (made by a run that died before recording it) is recorded
    as done; one whose alias points elsewhere than planned (or whose guards no longer hold) ends
    the intent as abandoned, with the reason, and makes nothing more. `ctx` carries the intent's
    own decision, actor and run key, so the rows do too; `resumed_by` names a later run finishing it.

    Returns:
        `moved` when the champion moved (the status tags then follow), `aborted` when it did not.
    """
    done = intent.done
    for index, move in enumerate(intent.moves):
        if index < done:
            continue
        now = ctx.registry.state(ctx.model).as_dict()
        current = now.get(move.alias)
        found = current == move.to_version
        if not found:
            wrong = [] if current == move.from_version else [f"{move.alias} is at {current}, not {move.from_version}"]
            wrong += [f"{a} is at {now.get(a)}, not {v}" for a, v in move.guards.items() if now.get(a) != v]
            if wrong:
                reason = (
                    f"intent {intent.id} of run {intent.run_key} abandoned before moving {move.alias} "
                    f"{move.from_version} -> {move.to_version}: the registry moved meanwhile ({'; '.join(wrong)})"
                )
                log.warning("%s: %s", ctx.model, reason)
                ctx.audit("move_aborted", f"intent{intent.id}:{index}", message=reason)
                champion_moved = any(m.alias == T.CHAMPION for m in intent.moves[:done])
                if champion_moved:
                    finish_intent(ctx, intent)  # tags describe the champion move that did happen
                close_intent(ctx.conn, intent, "abandoned", ctx.now, reason)
                return "moved" if champion_moved else "aborted"
            if move.to_version is None:
                ctx.registry.delete_alias(ctx.model, move.alias)
            else:
                ctx.registry.set_alias(ctx.model, move.alias, move.to_version)
        kind = "alias_move" if move.to_version is not None else "alias_removed"
        note = ""
        if resumed_by and found:
            note = f" (made by run {intent.run_key}, which stopped before recording it; recorded by {resumed_by})"
        elif resumed_by:
            note = f" (made by {resumed_by}: run {intent.run_key} stopped before making it)"
        entry = ctx.entry(
            kind,
            f"intent{intent.id}:{index}",
            version=move.to_version or move.from_version,
            alias=move.alias,
            from_version=move.from_version,
            to_version=move.to_version,
            approved_by=intent.approved_by,
            approval_auth=intent.approval_auth,
            message=move.why + note,
        )
        mark_move_done(ctx.conn, intent, index, entry)
        done = index + 1
    finish_intent(ctx, intent)
    close_intent(ctx.conn, intent, "done", ctx.now)
    return "moved"


def finish_intent(ctx: MoveContext, intent: Intent) -> None:
    """The tags that follow an intent's champion move (idempotent: a rerun writes only what is missing)."""
    d = intent.decision
    if d.action == "promote" and d.target is not None:
        finish_promotion(ctx, d.target, d.champion, intent.approved_by)
    elif d.action == "rollback" and d.champion is not None and d.target is not None:
        finish_rollback(ctx, d.champion, d.target)


def start_intent(ctx: MoveContext, expected: RegistryState) -> Intent:
    """Check the aliases are still where the decision saw them, then commit the intent.

    Raises:
        ConcurrentMoveError: an alias the decision depends on moved since it was read.
    """
    d = ctx.decision
    watched = (T.CHAMPION, T.CHALLENGER) if d.action == "promote" else (T.CHAMPION, T.PREVIOUS_CHAMPION)
    check_unchanged(ctx.registry, ctx.model, expected, watched)
    auth = d.approval.auth_label if d.approval is not None and d.approval.status == "approved" else None
    return open_intent(
        ctx.conn,
        d,
        plan_moves(d, expected),
        actor=ctx.actor,
        approval_auth=auth,
        at=ctx.now,
        dag_id=ctx.dag_id,
        run_id=ctx.run_id,
    )


def reconcile(
    registry: ModelRegistry, conn: Connection, model_name: str, *, actor: str, now: datetime
) -> list[Decision]:
    """Finish every intent of a model that a run recorded and did not finish; call with the model lock held.

    Each move is checked against the registry: made and recorded, made and not recorded (recorded
    now), or not made (made now), unless the alias moved elsewhere meanwhile (the intent is
    abandoned, with the reason). Rows carry the intent's decision, actor and approver; `actor` is
    named in their message as who completed them.

    Returns:
        The intents' decisions, with the outcome each ended with (also written as decision rows).
    """
    finished: list[Decision] = []
    for intent in open_intents(conn, model_name):
        log.warning(
            "%s: run %s left its %s unfinished after %d of %d alias moves (approved by %s); finishing it",
            model_name,
            intent.run_key,
            intent.action,
            intent.done,
            len(intent.moves),
            intent.approved_by or "-",
        )
        ctx = MoveContext(
            registry,
            conn,
            intent.decision,
            actor=intent.actor,
            now=now,
            run_key=intent.run_key,
            report_path=intent.decision.report_path,
            dag_id=intent.dag_id,
            run_id=intent.run_id,
        )
        check = intent.decision.approval
        if intent.action == "promote" and check is not None and check.status == "approved":
            if intent.decision.challenger is not None:
                record_judged_approval(ctx, intent.decision.challenger, check)
        outcome = carry_out(ctx, intent, resumed_by=actor)
        decision = intent.decision.model_copy(update={"outcome": outcome})
        record_decision(conn, decision, dag_id=intent.dag_id, run_id=intent.run_id)
        finished.append(decision)
    return finished


def record_outside_moves(
    registry: ModelRegistry, conn: Connection, model_name: str, *, run_key: str, now: datetime
) -> list[AuditEntry]:
    """Record a `champion` move lockgate did not make; call after `reconcile`, with the model lock held.

    The audit trail's last `champion` row says where lockgate left the alias; when the registry
    says otherwise, someone moved (or removed) it by hand, in the MLflow UI ("Promote model") or
    its API, past every gate and approval. The move is written as done by "outside lockgate", so
    the trail still replays to the registry. Before lockgate's first move of a model there is no
    such row: the champion it finds is its starting point, not a bypass. Idempotent on reruns.
    """
    last = (
        conn.execute(
            sa.select(audit_table)
            .where(
                audit_table.c.model_name == model_name,
                audit_table.c.alias == T.CHAMPION,
                audit_table.c.kind.in_(ALIAS_KINDS),
            )
            .order_by(audit_table.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if last is None:
        return []
    left_at = last["to_version"] if last["kind"] == "alias_move" else None
    found = registry.state(model_name).champion
    if found == left_at:
        return []
    if T.LAST_MOVE not in registry.registered_model_tags(model_name):
        # Every champion move of lockgate tags the registered model; without the tag the model was
        # deleted and registered again since (the demo starts each story so): a new model under the
        # same name, whose champion is its starting point, not a bypass. (Registry and audit clocks
        # are not compared: they need not agree.)
        log.info("%s: registered anew since lockgate's last move: champion %s is the start", model_name, found)
        return []
    entry = AuditEntry(
        model_name=model_name,
        kind="alias_move" if found is not None else "alias_removed",
        actor=OUTSIDE_ACTOR,
        alias=T.CHAMPION,
        version=found,
        from_version=left_at,
        to_version=found,
        run_key=run_key,
        message=(
            f"the champion was moved from {left_at or '-'} to {found or '-'} outside lockgate (MLflow UI or API): "
            f"no gate and no approval was checked; found by run {run_key}"
        ),
        at=now,
        dedupe_key=f"outside:{model_name}:{last['id']}:{found}",
    )
    if not record_audit(conn, entry):
        return []
    log.warning("%s: %s", model_name, entry.message)
    return [entry]


def finish_promotion(ctx: MoveContext, new: str, old: str | None, approved_by: str | None) -> None:
    """The tags of a promotion whose champion moved; also what completes a promotion a crash interrupted."""
    if ctx.registry.state(ctx.model).challenger == new:
        # a promotion interrupted before intents existed: its challenger is still set on the new champion
        if ctx.registry.delete_alias(ctx.model, T.CHALLENGER):
            ctx.audit(
                "alias_removed",
                f"{T.CHALLENGER}:{new}:{ctx.decision.evidence_hash}",
                alias=T.CHALLENGER,
                version=new,
                from_version=new,
                to_version=None,
                message=f"version {new} is the champion now",
            )
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


def finish_rollback(ctx: MoveContext, bad: str, good: str) -> None:
    """The tags of a rollback whose champion moved back."""
    d = ctx.decision
    values = ctx.decision_tags()
    values[T.ROLLED_BACK_AT] = ctx.registry.version_tags(ctx.model, bad).get(T.ROLLED_BACK_AT) or ctx.now.isoformat()
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


def apply_decision(ctx: MoveContext, expected: RegistryState, challenger_tags: dict[str, str]) -> str:
    """Carry out a decision; returns the outcome.

    Outcomes: `moved` (an alias moved), `tagged` (status tags written), `repaired` (a promotion
    interrupted before intents existed, completed), `unchanged` (nothing to write), `aborted` (the
    aliases changed under us: recorded in the audit trail, nothing more moved).
    """
    d = ctx.decision
    intent: Intent | None = None
    if d.action in ("promote", "rollback"):
        try:
            intent = start_intent(ctx, expected)
        except ConcurrentMoveError as exc:
            log.warning("%s", exc)
            ctx.audit("move_aborted", f"{ctx.run_key}:{d.action}:{d.evidence_hash}", message=str(exc))
            return "aborted"
    judged = d.action in ("promote", "await_approval", "hold")
    if judged and d.challenger is not None and d.challenger != d.champion:
        settle_approval(ctx, d.challenger, challenger_tags)
    if intent is not None:
        return carry_out(ctx, intent)
    if d.action == "no_op" and d.challenger is not None and d.challenger == d.champion:
        # A promotion interrupted after the champion moved, by a lockgate without intents: finish it.
        before = ctx.registry.version_tags(ctx.model, d.champion)
        finish_promotion(ctx, d.champion, before.get(T.PROMOTED_FROM) or d.previous_champion, before.get(T.PROMOTED_BY))
        return "repaired"
    if d.subject_version is not None:
        changed = ctx.registry.set_tags(ctx.model, d.subject_version, ctx.decision_tags())
        return "tagged" if changed else "unchanged"
    return "unchanged"
