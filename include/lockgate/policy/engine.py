"""The promotion decision: evidence + policy + registry state + approval -> one `Decision`.

Pure: no I/O and no clock (`now` is an argument), so every branch is a unit test.

Order of precedence:

1. Rollback gates check the champion. One that *fails* (missing evidence never triggers a
   rollback) with a `previous_champion` to go back to gives `rollback`, whatever the challenger.
   Without one the decision is `hold` with an alert naming the degraded metrics and "no
   rollback target", whatever the challenger (its canary was compared with a degraded champion).
2. No challenger, or the challenger already is the champion: `no_op`.
3. Any `block_promotion` gate that does not pass (fail or missing): `hold`.
   `warn` gates are reported and never block.
4. Every blocking gate passes: the approval decides. Not required or approved by a listed
   approver on the current evidence within its expiry: `promote`. Rejected the same way:
   `hold`. Anything else (none, unlisted, given on other evidence, expired): `await_approval`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from lockgate.evidence import EvidenceKind
from lockgate.policy.gates import assess_evidence, evaluate_gate
from lockgate.policy.model import (
    APPROVAL_VALUES,
    Action,
    ApprovalCheck,
    ApprovalRecord,
    ApprovalStatus,
    Decision,
    EvidenceRef,
    GateVerdict,
    PromotionInputs,
    VersionStatus,
)
from lockgate.policy.schema import Gate, WatchedModel


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def gate_kinds(gates: Iterable[Gate]) -> list[EvidenceKind]:
    """The evidence kinds a list of gates reads, in a stable order."""
    return sorted({g.kind for g in gates})


def evidence_hash(inputs: PromotionInputs, kinds: Iterable[EvidenceKind]) -> str:
    """Hash of what an approval is given on: the versions, each used summary's content hash, the policy.

    A new summary, another champion or challenger, or an edited policy all give a new hash,
    so an approval given before counts no more.
    """
    summaries = {}
    for kind in sorted(set(kinds)):
        s = inputs.evidence.get(kind)
        summaries[kind] = s.content_hash if s is not None else None
    payload = {
        "model": inputs.model_name,
        "champion": inputs.champion,
        "challenger": inputs.challenger,
        "evidence": summaries,
        "policy": inputs.policy_hash,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


APPROVAL_CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of the decision time an `approved_at` may be (clocks of two machines differ)."""


def check_approval(
    record: ApprovalRecord | None, model_policy: WatchedModel, current_evidence: str, now: datetime
) -> ApprovalCheck:
    """Judge a challenger's approval tags against the approver list, the current evidence and the expiry.

    An `approved_at` that is not a time, or lies ahead of `now` by more than `APPROVAL_CLOCK_SKEW`,
    makes the approval `invalid`: a time that can never expire must not count.

    Args:
        record: the approval tags as read from the registry (None: no tags).
        model_policy: the watched model (approvers, expiry, whether approval is required).
        current_evidence: the evidence hash of this decision.
        now: the decision time.

    Returns:
        The check; only `approved` and `rejected` (and `not_required`) count. `authenticated` is
        True only when an authentication system vouches for the approver's name.
    """
    if not model_policy.require_approval:
        return ApprovalCheck(status="not_required", reason="the policy does not require an approval")
    if record is None or not (record.value or "").strip():
        return ApprovalCheck(status="none", reason="no approval yet")
    value = (record.value or "").strip().lower()
    by = (record.by or "").strip() or None
    authenticated = by is not None and record.authenticated_as is not None and record.authenticated_as == by
    if value not in APPROVAL_VALUES:
        return ApprovalCheck(
            status="invalid", by=by, reason=f"lockgate.approval is {record.value!r}, not one of {list(APPROVAL_VALUES)}"
        )
    if by is None:
        return ApprovalCheck(status="unlisted", reason=f"{value} without lockgate.approved_by: not counted")
    if by not in model_policy.approvers:
        return ApprovalCheck(
            status="unlisted", by=by, reason=f"{value} by {by!r}, who is not in the approver list: not counted"
        )
    if record.unverified_reason:
        return ApprovalCheck(
            status="invalid", by=by, reason=f"{value} by {by!r} not counted: {record.unverified_reason}"
        )
    if record.at is None and (record.at_text or "").strip():
        return ApprovalCheck(
            status="invalid",
            by=by,
            reason=f"{value} by {by} with lockgate.approved_at {record.at_text!r}, which is not an ISO time: "
            "not counted",
        )
    if record.at is not None and _aware(record.at) - _aware(now) > APPROVAL_CLOCK_SKEW:
        return ApprovalCheck(
            status="invalid",
            by=by,
            reason=f"{value} by {by} dated {_aware(record.at).isoformat()}, later than the decision time "
            f"{_aware(now).isoformat()}: not counted",
        )
    if record.evidence_hash != current_evidence:
        given = record.evidence_hash or "no evidence"
        return ApprovalCheck(
            status="stale",
            by=by,
            reason=f"{value} by {by} on evidence {given}; the evidence is now {current_evidence}: asked again",
        )
    if record.at is not None and _aware(now) - _aware(record.at) > timedelta(hours=model_policy.approval_expiry_hours):
        return ApprovalCheck(
            status="expired",
            by=by,
            reason=f"{value} by {by} at {_aware(record.at).isoformat()} is older than "
            f"{model_policy.approval_expiry_hours:g} h: asked again",
        )
    via = record.authenticated_via if authenticated else None
    if not authenticated:
        who = f"{by} (unauthenticated: the name was asserted, not verified)"
    else:
        who = f"{by}: authenticated ({via}: {by})" if via else by
    status: ApprovalStatus = "approved" if value == "approved" else "rejected"
    return ApprovalCheck(
        status=status, by=by, reason=f"{status} by {who}", authenticated=authenticated, authenticated_via=via
    )


def _summary_line(v: GateVerdict) -> str:
    return f"{v.gate} ({v.metric}): {v.status}: {v.reason}"


def decide_promotion(inputs: PromotionInputs, model_policy: WatchedModel, now: datetime) -> Decision:
    """Apply every gate of a watched model to the evidence and say what to do.

    Args:
        inputs: registry aliases, the latest summary of each kind, the approval tags, the policy hash.
        model_policy: the watched model's gates, approvers and expiry.
        now: the decision time (used for staleness and expiry; the engine never reads the clock).

    Returns:
        The decision with a verdict per evaluated gate, the reasons, and the evidence hash.
    """
    if model_policy.name != inputs.model_name:
        raise ValueError(f"policy for {model_policy.name!r} applied to {inputs.model_name!r}")
    champion, challenger, previous = inputs.champion, inputs.challenger, inputs.previous_champion
    kinds = gate_kinds(model_policy.gates)
    refs: dict[EvidenceKind, EvidenceRef] = {
        kind: assess_evidence(
            kind,
            inputs.evidence.get(kind),
            now,
            inputs.max_evidence_age_hours,
            inputs.model_name,
            error=inputs.evidence_errors.get(kind),
        )
        for kind in kinds
    }
    ev_hash = evidence_hash(inputs, kinds)

    def build(
        action: Action,
        reasons: list[str],
        verdicts: list[GateVerdict],
        target: str | None = None,
        subject_version: str | None = None,
        subject_status: VersionStatus | None = None,
        approval: ApprovalCheck | None = None,
    ) -> Decision:
        return Decision(
            model_name=inputs.model_name,
            action=action,
            champion=champion,
            challenger=challenger,
            previous_champion=previous,
            target=target,
            subject_version=subject_version,
            subject_status=subject_status,
            reasons=reasons,
            verdicts=verdicts,
            approval=approval,
            evidence=refs,
            evidence_hash=ev_hash,
            policy_hash=inputs.policy_hash,
            decided_at=_aware(now),
        )

    def apply(gates: list[Gate]) -> list[GateVerdict]:
        return [
            evaluate_gate(g, inputs.evidence.get(g.kind), refs[g.kind], challenger, champion, inputs.registered_at)
            for g in gates
        ]

    # 1. the champion's own health
    rollback_gates = [g for g in model_policy.gates if g.action == "rollback"]
    if champion is None:
        rb_verdicts = [
            GateVerdict.model_validate({**v.model_dump(), "status": "missing", "reason": "there is no champion"})
            for v in apply(rollback_gates)
        ]
    else:
        rb_verdicts = apply(rollback_gates)
    breaches = [v for v in rb_verdicts if v.status == "fail"]
    reasons: list[str] = []
    stuck = False
    if breaches:
        names = ", ".join(v.gate for v in breaches)
        if previous is not None and previous != champion:
            return build(
                "rollback",
                target=previous,
                subject_version=champion,
                subject_status="rolled_back",
                reasons=[f"champion {champion} breaches rollback gate(s) {names}: back to {previous}"]
                + [_summary_line(v) for v in breaches],
                verdicts=rb_verdicts,
            )
        stuck = True
        metrics = ", ".join(sorted({v.metric for v in breaches}))
        reasons.append(
            f"ALERT: champion {champion} is degraded ({metrics}: rollback gate(s) {names}) and there is "
            "no rollback target (no previous_champion)"
        )
        reasons.extend(_summary_line(v) for v in breaches)

    # 2. is there anything to promote?
    if challenger is None or challenger == champion:
        why = "no challenger" if challenger is None else f"the challenger {challenger} already is the champion"
        return build(
            "hold" if stuck else "no_op",
            reasons=[*reasons, why],
            verdicts=rb_verdicts,
        )

    # 3. the challenger's gates
    promo_verdicts = apply([g for g in model_policy.gates if g.action != "rollback"])
    verdicts = [*promo_verdicts, *rb_verdicts]
    if stuck:
        # A canary compared with a degraded champion clears a lowered bar: nothing is promoted on it.
        return build(
            "hold",
            subject_version=challenger,
            reasons=[
                *reasons,
                f"challenger {challenger} is not promoted while the champion it is compared with is degraded",
            ],
            verdicts=verdicts,
        )
    blocking = [v for v in promo_verdicts if v.blocks]
    warnings = [v for v in promo_verdicts if v.action == "warn" and v.status != "pass"]
    reasons.extend(f"warning: {_summary_line(v)}" for v in warnings)
    if blocking:
        return build(
            "hold",
            subject_version=challenger,
            subject_status="gates_failed",
            reasons=[f"blocked: {_summary_line(v)}" for v in blocking] + reasons,
            verdicts=verdicts,
        )

    # 4. every blocking gate passes: the approval decides
    approval = check_approval(inputs.approval, model_policy, ev_hash, now)
    reasons.insert(0, f"all {len([v for v in promo_verdicts if v.action == 'block_promotion'])} blocking gates pass")
    if approval.status in ("approved", "not_required"):
        return build(
            "promote",
            target=challenger,
            subject_version=challenger,
            subject_status="promoted",
            reasons=[*reasons, approval.reason, f"champion {champion} -> {challenger}"],
            verdicts=verdicts,
            approval=approval,
        )
    if approval.status == "rejected":
        return build(
            "hold",
            subject_version=challenger,
            subject_status="rejected",
            reasons=[*reasons, approval.reason],
            verdicts=verdicts,
            approval=approval,
        )
    return build(
        "await_approval",
        subject_version=challenger,
        subject_status="awaiting_approval",
        reasons=[*reasons, approval.reason],
        verdicts=verdicts,
        approval=approval,
    )
