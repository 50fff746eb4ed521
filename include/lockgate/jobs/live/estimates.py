"""The live job's statistics (pure): both comparisons, the gate-ready metrics, the canary requests each gate needs."""

from __future__ import annotations

from typing import Any

import numpy as np

from lockgate.evidence import Estimate, MetricEvidence
from lockgate.jobs.live.inputs import LiveInputs
from lockgate.live.compare import LIVE_METRICS, Group, GroupComparison, Side, compare_groups
from lockgate.live.stats import Interval, requests_needed
from lockgate.policy.schema import Policy


def _estimate(iv: Interval | None, confidence: float) -> Estimate | None:
    if iv is None or not np.isfinite(iv.value):
        return None
    ok = np.isfinite(iv.low) and np.isfinite(iv.high)
    return Estimate(
        value=float(iv.value),
        ci_low=float(iv.low) if ok else None,
        ci_high=float(iv.high) if ok else None,
        confidence=confidence if ok else None,
        n=iv.n,
    )


def build_metrics(
    canary: GroupComparison | None, baseline: GroupComparison | None, confidence: float
) -> dict[str, MetricEvidence]:
    """Gate-ready metrics from the stratified estimates (pure)."""
    out: dict[str, MetricEvidence] = {}
    for m in LIVE_METRICS:
        fields: dict[str, Any] = {"unit": m.unit, "description": m.description}
        if canary is not None:
            side: Side = canary.metrics[m.name].stratified
            fields["challenger"] = _estimate(side.a, confidence)
            fields["champion"] = _estimate(side.b, confidence)
            fields[m.comparison] = _estimate(side.compared, confidence)
        if baseline is not None:
            bside = baseline.metrics[m.name].stratified
            fields.setdefault("champion", _estimate(bside.a, confidence))
            if fields["champion"] is None:
                fields["champion"] = _estimate(bside.a, confidence)
            fields["baseline"] = _estimate(bside.b, confidence)
            fields[f"baseline_{m.comparison}"] = _estimate(bside.compared, confidence)
        if any(v is not None for k, v in fields.items() if k not in ("unit", "description")):
            out[m.name] = MetricEvidence(**fields)
    return out


def requests_needed_by_gate(
    policy: Policy, model_name: str, metrics: dict[str, MetricEvidence], canary_requests: int, min_requests: int
) -> list[dict[str, Any]]:
    """For each live gate comparing challenger and champion: how many canary requests resolve its threshold."""
    from lockgate.policy.gates import estimate_name, limit_of

    rows = []
    for gate in policy.model(model_name).gates:
        if gate.kind != "live" or gate.comparison == "absolute" or gate.subject != "challenger":
            continue
        metric = metrics.get(gate.metric_name)
        est = getattr(metric, estimate_name(gate)) if metric is not None else None
        limit = limit_of(gate)
        needed: int | None
        if est is None or est.ci_low is None or est.ci_high is None:
            needed = None
            note = (
                f"below live.min_requests ({min_requests}): at least that many"
                if canary_requests < min_requests
                else "no estimate"
            )
        else:
            needed = requests_needed(est.value, est.ci_low, est.ci_high, canary_requests, limit, gate.comparison)
            note = "resolved now" if needed is not None and needed <= canary_requests else "to resolve the threshold"
        rows.append(
            {
                "gate": gate.name,
                "metric": gate.metric,
                "limit": limit,
                "canary_requests": canary_requests,
                "needed": needed,
                "note": note,
            }
        )
    return rows


def evaluate(
    inputs: LiveInputs, policy: Policy, model_name: str
) -> tuple[GroupComparison | None, GroupComparison | None, dict[str, Any]]:
    """Both comparisons from the inputs (pure), with the reasons any of them is missing."""
    cfg, stats = policy.live, policy.statistics
    problems: dict[str, Any] = {}
    canary = baseline = None
    champ, chall, base = inputs.champion, inputs.challenger, inputs.baseline_group
    if champ is None:
        problems["champion"] = "the model has no champion (alias 'champion')"
        return None, None, problems
    if champ.requests < cfg.min_requests:
        problems["champion"] = (
            f"{champ.requests} champion requests in the window, live.min_requests is {cfg.min_requests}"
        )
        return None, None, problems
    if chall is None:
        problems["challenger"] = "no challenger (alias 'challenger') other than the champion"
    elif chall.requests < cfg.min_requests:
        problems["challenger"] = (
            f"{chall.requests} canary requests in the window, live.min_requests is {cfg.min_requests}"
        )
    else:
        canary = compare_groups(
            chall,
            champ,
            inputs.canary_cutoffs,
            confidence=stats.confidence,
            resamples=cfg.bootstrap_resamples,
            seed=stats.seed,
        )
    if base is None or base.requests < cfg.min_requests:
        n = base.requests if base is not None else 0
        problems["baseline"] = f"{n} champion requests in its baseline window, live.min_requests is {cfg.min_requests}"
    else:
        counts = inputs.champion_counts_baseline_strata or champ.counts
        champ_b = Group(champ.label, champ.version, counts, champ.sample)
        baseline = compare_groups(
            champ_b,
            base,
            inputs.baseline_cutoffs,
            confidence=stats.confidence,
            resamples=cfg.bootstrap_resamples,
            seed=stats.seed + 1,
        )
    return canary, baseline, problems


def _interval_json(iv: Interval | None) -> dict[str, float | int] | None:
    if iv is None:
        return None
    return {"value": iv.value, "low": iv.low, "high": iv.high, "n": iv.n}


def comparison_details(cmp: GroupComparison | None) -> dict[str, Any] | None:
    """A comparison as JSON (raw and stratified), for the page and for scripts."""
    if cmp is None:
        return None
    return {
        "a": cmp.a_label,
        "b": cmp.b_label,
        "a_requests": cmp.a_requests,
        "b_requests": cmp.b_requests,
        "cutoffs": cmp.cutoffs,
        "weights": {str(k): v for k, v in cmp.weights.items()},
        "strata_counts": {g: {str(k): v for k, v in c.items()} for g, c in cmp.strata_counts.items()},
        "metrics": {
            name: {
                "comparison": m.metric.comparison,
                "unit": m.metric.unit,
                "raw": {k: _interval_json(getattr(m.raw, k)) for k in ("a", "b", "compared")},
                "stratified": {k: _interval_json(getattr(m.stratified, k)) for k in ("a", "b", "compared")},
            }
            for name, m in cmp.metrics.items()
        },
    }
