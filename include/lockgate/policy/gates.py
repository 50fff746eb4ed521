"""Applying one gate to one evidence summary: pass, fail, or missing (which never passes).

Estimated metrics are compared by an end of their confidence interval, never by their
point value. A `block_promotion` or `warn` gate reads the unfavourable end: a challenger
passes "no worse than the champion by more than m" only if the worst value the interval
allows is within m. A `rollback` gate reads the favourable end: a serving champion is
rolled back only when even the best value the interval allows breaches the bound, so
noise alone never moves production.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from lockgate.evidence import Estimate, EvidenceKind, EvidenceSummary
from lockgate.policy.model import EstimateName, EvidenceRef, GateVerdict, VerdictStatus
from lockgate.policy.schema import Gate


def _aware(t: datetime) -> datetime:
    # A summary written without a zone is read as UTC rather than rejected: jobs write UTC.
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


REGISTRATION_CLOCK_SKEW = timedelta(minutes=5)
"""How far the registry's clock (a version's creation time) and a job's (evidence's) may differ."""


def assess_evidence(
    kind: EvidenceKind,
    summary: EvidenceSummary | None,
    now: datetime,
    max_age_hours: float,
    model_name: str,
    error: str | None = None,
) -> EvidenceRef:
    """Whether a summary can be used at all: present, readable, valid, for this model, and fresh.

    Args:
        kind: the evidence kind the summary should be.
        summary: the latest summary of that kind, or None when there is none.
        now: the decision time (passed in: the engine never reads the clock).
        max_age_hours: older summaries are stale.
        model_name: the model being decided on.
        error: why the summary could not be read, when it could not.

    Returns:
        An `EvidenceRef` whose `usable` is False with a reason for every kind of unusable evidence.
    """
    if summary is None:
        return EvidenceRef(kind=kind, usable=False, reason=error or f"no {kind} evidence")
    created = _aware(summary.created_at)
    age = (_aware(now) - created).total_seconds() / 3600
    problem: str | None = None
    if summary.kind != kind:
        problem = f"the {kind} summary is a {summary.kind} summary"
    elif summary.model_name != model_name:
        problem = f"the {kind} summary is about model {summary.model_name!r}"
    elif not summary.valid or summary.status != "ok":
        detail = f": {summary.message}" if summary.message else ""
        problem = f"the {kind} summary is {summary.status if summary.status != 'ok' else 'invalid'}{detail}"
    elif age > max_age_hours:
        problem = f"the {kind} summary is stale ({age:.1f} h old, limit {max_age_hours:g} h)"
    return EvidenceRef(
        kind=kind,
        usable=problem is None,
        reason=problem or "ok",
        content_hash=summary.content_hash,
        created_at=created,
        age_hours=round(age, 3),
        report_path=summary.report_path,
        challenger_version=summary.challenger_version,
        champion_version=summary.champion_version,
    )


def estimate_name(gate: Gate) -> EstimateName:
    """Which estimate of a metric a gate reads."""
    if gate.comparison in ("ratio", "difference"):
        # Subject champion: the champion now against its own baseline window (production evidence).
        return f"baseline_{gate.comparison}" if gate.subject == "champion" else gate.comparison  # type: ignore[return-value]
    return gate.subject


def limit_of(gate: Gate) -> float:
    """The gate's threshold expressed in the unit of the compared estimate."""
    lower = gate.direction == "lower_is_better"
    if gate.comparison == "ratio":
        return 1 + gate.threshold if lower else 1 - gate.threshold
    if gate.comparison == "difference":
        return gate.threshold if lower else -gate.threshold
    return gate.threshold


def _version_mismatch(
    gate: Gate,
    estimate: EstimateName,
    summary: EvidenceSummary,
    challenger: str | None,
    champion: str | None,
    registered_at: Mapping[str, datetime],
) -> str | None:
    """Why the summary is about other versions than the ones the gate must judge, if it is.

    A version's number is unique only while its registered model lives: evidence made before the
    version with that number was registered is about an earlier one (a model deleted and
    registered again numbers its versions from 1 again).
    """
    needs_challenger = estimate in ("challenger", "ratio", "difference")
    needs_champion = estimate in (
        "champion",
        "ratio",
        "difference",
        "baseline",
        "baseline_ratio",
        "baseline_difference",
    )
    if needs_challenger and (challenger is None or summary.challenger_version != challenger):
        return f"evidence is for challenger {summary.challenger_version!r}, the challenger is {challenger!r}"
    if needs_champion and (champion is None or summary.champion_version != champion):
        if champion is None:
            return "there is no champion to compare with"
        return f"evidence is for champion {summary.champion_version!r}, the champion is {champion!r}"
    # A model-wide estimate describes the traffic the champion served: a recorded other champion means
    # the window predates the current one.
    if estimate == "model" and summary.champion_version is not None and summary.champion_version != champion:
        return f"evidence is for champion {summary.champion_version!r}, the champion is {champion!r}"
    made = _aware(summary.created_at).astimezone(UTC)
    for role, version, needed in (
        ("challenger", challenger, needs_challenger),
        ("champion", champion, needs_champion or estimate == "model"),
    ):
        registered = registered_at.get(version) if needed and version is not None else None
        if registered is not None and made < _aware(registered) - REGISTRATION_CLOCK_SKEW:
            return (
                f"evidence made at {made:%Y-%m-%d %H:%M} UTC predates the registration of {role} {version!r} "
                f"({_aware(registered).astimezone(UTC):%Y-%m-%d %H:%M} UTC): it is about an earlier version "
                f"numbered {version!r}"
            )
    return None


def _finite(*values: float | None) -> bool:
    return all(v is None or math.isfinite(v) for v in values)


def evaluate_gate(
    gate: Gate,
    summary: EvidenceSummary | None,
    ref: EvidenceRef,
    challenger: str | None,
    champion: str | None,
    registered_at: Mapping[str, datetime] | None = None,
) -> GateVerdict:
    """Apply one gate.

    Args:
        gate: the policy's gate.
        summary: the summary of the gate's kind (ignored unless `ref.usable`).
        ref: what `assess_evidence` said about that summary.
        challenger: the current challenger version (alias), if any.
        champion: the current champion version (alias), if any.
        registered_at: when those versions were registered, where known (the registry's creation time).

    Returns:
        The verdict. `missing` whenever the number cannot be trusted: no or unusable evidence,
        evidence about other versions, no estimate, a non-finite value, or an interval below the
        gate's required confidence (or none at all when the gate requires one).
    """
    est_name = estimate_name(gate)
    limit = limit_of(gate)

    def verdict(
        status: VerdictStatus, reason: str, est: Estimate | None = None, compared: float | None = None
    ) -> GateVerdict:
        return GateVerdict(
            gate=gate.name,
            metric=gate.metric,
            kind=gate.kind,
            action=gate.action,
            comparison=gate.comparison,
            subject=gate.subject,
            direction=gate.direction,
            estimate=est_name,
            status=status,
            reason=reason,
            threshold=gate.threshold,
            limit=limit,
            value=est.value if est else None,
            ci_low=est.ci_low if est else None,
            ci_high=est.ci_high if est else None,
            confidence=est.confidence if est else None,
            required_confidence=gate.confidence,
            compared=compared,
            n=est.n if est else None,
            evidence_hash=ref.content_hash,
            report_path=ref.report_path,
        )

    if summary is None or not ref.usable:
        return verdict("missing", ref.reason)
    mismatch = _version_mismatch(gate, est_name, summary, challenger, champion, registered_at or {})
    if mismatch:
        return verdict("missing", mismatch)
    metric = summary.metrics.get(gate.metric_name)
    if metric is None:
        return verdict("missing", f"the {gate.kind} evidence has no metric {gate.metric_name!r}")
    est: Estimate | None = getattr(metric, est_name)
    if est is None:
        return verdict("missing", f"{gate.metric} has no {est_name} estimate")
    if not _finite(est.value, est.ci_low, est.ci_high):
        return verdict("missing", f"{gate.metric} {est_name} is not a finite number", est)
    if gate.confidence is not None:
        if not est.has_interval:
            return verdict("missing", f"needs a {gate.confidence:.0%} interval; the evidence has none", est)
        level = est.confidence if est.confidence is not None else 0.0
        if level < gate.confidence:
            return verdict("missing", f"needs a {gate.confidence:.0%} interval; the evidence's is {level:.0%}", est)
    lower = gate.direction == "lower_is_better"
    if est.has_interval and est.ci_low is not None and est.ci_high is not None:
        # Unfavourable end for gates that block or warn; favourable end for rollback (see the module doc).
        upper = lower if gate.action != "rollback" else not lower
        compared = est.ci_high if upper else est.ci_low
        what = f"{'upper' if upper else 'lower'} bound {compared:.4g}"
    else:
        compared = est.value
        what = f"value {compared:.4g}"
    passed = compared <= limit if lower else compared >= limit
    sign = "<=" if lower else ">="
    if passed:
        return verdict("pass", f"{est_name} {what} {sign} {limit:.4g}", est, compared)
    return verdict("fail", f"{est_name} {what} is not {sign} {limit:.4g}", est, compared)
