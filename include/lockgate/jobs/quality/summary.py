"""The quality job's summaries: the judge's note, the `QualitySummary` (the page), the `EvidenceSummary` (the gates)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from lockgate.evidence import EvidenceSummary, MetricEvidence, utcnow

if TYPE_CHECKING:
    from lockgate.jobs.quality.judging import Judging


def _judge_note(calibration: Any, trusted: bool, rubrics_for_judge: bool) -> str:
    if not rubrics_for_judge:
        return "No judge rubric was requested."
    if calibration is None:
        return "The judge was not calibrated."
    if trusted:
        note = (
            f"The judge agrees with {calibration.provenance} (Spearman {calibration.spearman.value:.2f}, "
            f"kappa {calibration.kappa.value:.2f}): its scores are evidence and gates may use them."
        )
        if calibration.uncalibrated_rubrics:
            note += (
                f" The set has no labelled item for {', '.join(calibration.uncalibrated_rubrics)}: "
                "those rubrics' scores are shown for transparency only and are not evidence."
            )
        return note
    return (
        f"The judge FAILED calibration against {calibration.provenance} (" + "; ".join(calibration.reasons) + "). "
        "Its scores carry no established signal: judge_* metrics and the win rate are left out of the evidence "
        "(gates on them are missing) and shown below for transparency only. Quality is judged on the MiniLM "
        "relevance and grounding scores, the refusal detector and error rates."
    )


def _message(j: Judging, enough_any: bool) -> str | None:
    plan, calibration, parts = j.plan, j.calibration, []
    if plan.mode in ("champion_only", "no_versions"):
        parts.append("no challenger to compare" if plan.mode == "champion_only" else "no versions found")
    if not enough_any:
        parts.append(f"fewer than {j.policy.quality.min_samples} answered samples for every version")
    if not calibration.passed:
        parts.append(
            "judge failed calibration (" + "; ".join(calibration.reasons) + "): judge_* metrics and win_rate omitted"
        )
    return "; ".join(parts) or None


def evidence_of(
    j: Judging, metrics: dict[str, MetricEvidence], untrusted: dict[str, MetricEvidence], pw: Any, how: str
) -> tuple[EvidenceSummary, Any]:
    """The evidence summary the gates read, and the quality summary the page shows."""
    from lockgate.judge.summary import PairwiseInfo, QualitySummary

    plan, calibration, qc = j.plan, j.calibration, j.policy.quality
    trusted = calibration.passed
    ch = j.scores["challenger"] if plan.challenger_version else None
    cp = j.scores["champion"] if plan.champion_version else None
    enough_any = any(vs is not None and vs.answered >= qc.min_samples for vs in (ch, cp))
    status: Literal["ok", "insufficient_data"] = "ok" if enough_any else "insufficient_data"
    quality = QualitySummary(
        model_name=plan.model_name,
        run_key=plan.run_key,
        mode=plan.mode,
        challenger_version=plan.challenger_version,
        champion_version=plan.champion_version,
        window_start=plan.window_start.isoformat(),
        window_end=plan.window_end.isoformat(),
        rubrics=sorted(r.id for r in j.rubrics.values()),
        judge=calibration.description,
        judge_identity=calibration.judge,
        judge_trusted=trusted,
        judge_note=_judge_note(calibration, trusted, bool(plan.rubrics)),
        calibration=calibration,
        versions=j.versions,
        pairwise=PairwiseInfo(
            pairs=pw.pairs,
            scored=len(pw.outcomes),
            unscored=pw.unscored,
            win_rate=pw.win_rate,
            position_consistency=pw.position_consistency,
            how=how,
        ),  # fmt: skip
        untrusted_judge_metrics=untrusted,
        redactions=j.redactions,
        notes=j.notes,
        timings_s={k: round(v, 2) for k, v in j.timings.items()},
        examples=_worst_examples(j.samples, j.scores, j.by_id, qc.worst_examples),
    )
    summary = EvidenceSummary(
        kind="quality",
        model_name=plan.model_name,
        challenger_version=plan.challenger_version,
        champion_version=plan.champion_version,
        created_at=utcnow(),
        window_start=plan.window_start,
        window_end=plan.window_end,
        status=status,
        valid=True,
        message=_message(j, enough_any),
        metrics=metrics,
        sample_sizes=_sample_sizes(j.versions, pw.pairs, len(pw.outcomes), calibration.n_items),
        quarantined=j.quarantined,
        dag_id=plan.dag_id,
        run_id=plan.run_id,
        run_key=plan.run_key,
        details={"quality": quality.compact(), "mode": plan.mode, "judge_trusted": trusted},
    )
    return summary, quality


def _sample_sizes(versions: Sequence[Any], pairs: int, scored_pairs: int, calibration_items: int) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for v in versions:
        sizes[v.role] = v.answered
        sizes[f"{v.role}_sampled"] = v.sampled
    sizes["pairs"] = pairs
    sizes["pairs_scored"] = scored_pairs
    sizes["calibration_items"] = calibration_items
    return sizes


def _worst_examples(
    samples: Mapping[str, Sequence[Any]], scores: Mapping[str, Any], judgments: Mapping[str, Any], limit: int
) -> list[Any]:
    """The lowest MiniLM-relevance answers of each version (already redacted)."""
    from lockgate.judge.summary import Example

    out: list[Example] = []
    for role in ("challenger", "champion"):
        rel = scores[role].series("embedding_relevance")
        answered = [s for s in samples[role] if s.answered and s.key in rel]
        answered.sort(key=lambda s: rel[s.key])
        for s in answered[:limit]:
            j = judgments.get(f"{s.id}|relevance")
            out.append(
                Example(
                    role=role,
                    version=s.version,
                    request_id=s.id,
                    metric="embedding_relevance",
                    value=rel[s.key],
                    prompt=s.prompt,
                    response=s.response,
                    context=s.context,
                    rationale=j.rationale if j is not None else None,
                )
            )
    return out
