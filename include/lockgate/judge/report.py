"""The HTML quality report: the functions here prepare rows and facts, `templates/quality.html` lays them out.

Logged prompts and responses are hostile text; the template is autoescaped, so they are shown as text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence
from lockgate.judge.calibration import CalibrationResult
from lockgate.judge.evaluation import METRIC_INFO, VersionScores, is_judge_score
from lockgate.judge.summary import QualitySummary
from lockgate.reports.charts import (
    CHALLENGER_COLOR,
    CHAMPION_COLOR,
    CountSeries,
    bin_counts,
    overlaid_histogram,
    shared_edges,
)
from lockgate.reports.html import Badge, ChartCell, Code, Markup, Table, TextBlock, fmt
from lockgate.reports.templating import render

ROLE_COLOURS = {"challenger": CHALLENGER_COLOR, "champion": CHAMPION_COLOR}
# The scale each kind of score lives on: the bins cover it even when a sample's values do not.
UNIT_SPANS = {"cosine": (0.0, 1.0), "score 1-5": (1.0, 5.0), "share": (0.0, 1.0)}
UNTRUSTED_NOTE = " (failed calibration: not a quality signal)"
UNCALIBRATED_NOTE = " (rubric without labelled items: not evidence)"


def _est(e: Estimate | None) -> str:
    if e is None:
        return "–"
    if e.ci_low is None or e.ci_high is None:
        return f"{fmt(e.value)}"
    return f"{fmt(e.value)} [{fmt(e.ci_low)}, {fmt(e.ci_high)}]"


def _n(e: Estimate | None) -> str:
    return "–" if e is None or e.n is None else str(e.n)


def metrics_table(metrics: Mapping[str, MetricEvidence]) -> Table:
    rows = []
    for name in sorted(metrics, key=lambda n: list(METRIC_INFO).index(n) if n in METRIC_INFO else 99):
        m = metrics[name]
        main = m.model or m.challenger
        rows.append(
            [
                Code(f"quality.{name}"),
                m.unit or "",
                _est(m.champion),
                _n(m.champion),
                _est(m.challenger if m.model is None else m.model),
                _n(main),
                _est(m.difference),
                m.description or "",
            ]
        )
    return Table(
        ["metric", "unit", "champion [CI]", "n", "challenger (or model) [CI]", "n", "difference [CI]", "meaning"],
        rows,
    )


def provenance(cal: CalibrationResult) -> dict[str, object]:
    """Which set the judge was checked against, who labelled it, and how much its labellers agree."""
    labellers = "; ".join(f"{lab.id}: {lab.description}" if lab.description else lab.id for lab in cal.labellers)
    origin = {
        "people": "people outside the project (the set's labellers)",
        "lockgate_project": "the lockgate project itself (an example set, not independent people)",
    }[cal.labels_from]
    facts = [
        ("calibration set", cal.set_name),
        ("what it is", cal.set_description),
        ("how it was made", cal.method),
        ("labels come from", origin),
        (f"labellers ({len(cal.labellers)})", labellers or "none declared"),
        (
            "size",
            f"{cal.set_size} labelled items, {cal.n_items} of them for the rubrics judged here"
            + (f"; {cal.n_unlabelled} not labelled yet" if cal.n_unlabelled else ""),
        ),
        ("file", f"{cal.set_path} (sha256 {cal.set_hash})"),
    ]
    agreement = (
        Table(
            ["labeller", "labeller", "items both labelled", "Spearman [CI]", "Cohen's kappa, quadratic [CI]"],
            [[a.a, a.b, a.n, _est(a.spearman), _est(a.kappa)] for a in cal.labeller_agreement],
            numeric=(2,),
        )
        if len(cal.labellers) >= 2 and cal.labeller_agreement
        else None
    )
    return {"facts": facts, "single_labeller": len(cal.labellers) < 2, "agreement": agreement}


def calibration_context(cal: CalibrationResult) -> dict[str, object]:
    """The judge's calibration: where its set comes from, how it agreed with the labels, the verdict."""
    return {
        "provenance": provenance(cal),
        "facts": [
            ("rubrics calibrated", ", ".join(cal.rubrics)),
            ("rubrics without labelled items", ", ".join(cal.uncalibrated_rubrics) or "none"),
            ("scored", f"{cal.n_scored}/{cal.n_items}"),
            ("Spearman [CI]", _est(cal.spearman)),
            ("Cohen's kappa, quadratic [CI]", _est(cal.kappa)),
            ("thresholds", ", ".join(f"{k} {v}" for k, v in cal.thresholds.items())),
            ("result", Badge("pass" if cal.passed else "fail")),
            ("from cache", "yes" if cal.cached else "no"),
        ],
        "reasons": cal.reasons,
        "per_rubric": Table(
            ["rubric", "items", "scored", "Spearman", "kappa"],
            [[r.rubric, r.n, r.scored, r.spearman, r.kappa] for r in cal.per_rubric],
            numeric=(1, 2, 3, 4),
        ),
    }


def histogram_svg(
    series: Mapping[str, Sequence[float]],
    low: float,
    high: float,
    bins: int = 20,
    *,
    title: str = "",
    versions: Mapping[str, str | None] | None = None,
    width: int = 440,
) -> Markup:
    """Each version's values over shared bins, as shares (the versions' sample sizes differ), means dashed.

    `low`/`high`: the score's scale, which the bins cover at least; `versions`: role -> version, for the legend.
    """
    edges = shared_edges([list(v) for v in series.values()], bins, span=(low, high))
    if not edges:
        return Markup('<p class="muted">{}no values</p>').format(f"{title}: " if title else "")
    counts = []
    for role, values in series.items():
        version = (versions or {}).get(role)
        finite = [v for v in values if math.isfinite(v)]
        mean = sum(finite) / len(finite) if finite else None
        label = f"{role} {version}" if version else role
        counts.append(CountSeries(label, bin_counts(values, edges), ROLE_COLOURS.get(role, "#555"), mean))
    return overlaid_histogram(title, edges, counts, note="dashed: the means", width=width)


def score_distributions(
    scores: Mapping[str, VersionScores], quality: QualitySummary
) -> dict[str, dict[str, list[float]]]:
    """Per score (MiniLM relevance and grounding, each judge rubric present), each version's values.

    A judge score kept out of the evidence says so in its title: shown for transparency, not as quality.
    """
    present: list[str] = []
    for vs in scores.values():
        present += [m for m in vs.values if m not in present and (m.startswith("embedding_") or is_judge_score(m))]
    order = list(METRIC_INFO)
    present.sort(key=lambda m: (order.index(m) if m in order else len(order), m))
    out: dict[str, dict[str, list[float]]] = {}
    for metric in present:
        series = {
            role: list(scores[role].series(metric).values())
            for role in ("champion", "challenger")
            if role in scores and scores[role].series(metric)
        }
        if not series:
            continue
        title = metric
        if is_judge_score(metric) and not quality.judge_trusted:
            title += UNTRUSTED_NOTE
        elif metric in quality.untrusted_judge_metrics:
            title += UNCALIBRATED_NOTE
        out[title] = series
    return out


def _span(title: str) -> tuple[float, float]:
    metric = title.split(" ", 1)[0]
    unit = METRIC_INFO.get(metric, (None, ""))[0]
    # a custom rubric's scale is not known here: its values alone set the bins
    return UNIT_SPANS.get(unit or "", (math.inf, -math.inf))


def _text(value: str | None, limit: int = 600) -> TextBlock | None:
    return None if value is None else TextBlock(value, limit)


MODE_TEXT = {
    "traffic": "its own canary traffic in the logs",
    "replay": "replayed: sampled production prompts generated through the challenger",
    "champion_only": "no challenger: champion only",
    "no_versions": "no version to evaluate",
}


def render_quality_report(
    summary: EvidenceSummary,
    quality: QualitySummary,
    distributions: Mapping[str, Mapping[str, Sequence[float]]],
    evidently_href: str | None = None,
) -> str:
    """The report page for one quality run."""
    status = summary.status if summary.valid else "invalid"
    overview = [
        ("status", Badge(status)),
        ("model", quality.model_name),
        ("challenger version", quality.challenger_version),
        ("champion version", quality.champion_version),
        ("how the challenger was evaluated", MODE_TEXT[quality.mode]),
        ("window", f"{quality.window_start} → {quality.window_end}"),
        ("judge", quality.judge),
        ("judge trusted for gating", Badge("pass" if quality.judge_trusted else "fail")),
        ("message", summary.message or ""),
    ]
    unscored = Table(
        ["version", "role", "unscored judgments by reason"],
        [
            [v.version, v.role, ", ".join(f"{k}: {n}" for k, n in sorted(v.unscored.items())) or "none"]
            for v in quality.versions
        ],
    )
    pw = quality.pairwise
    pairwise = [
        ("pairs", pw.pairs),
        ("scored pairs (both orders)", pw.scored),
        ("unscored pairs", pw.unscored),
        ("win rate [CI]", _est(pw.win_rate)),
        ("position consistency", pw.position_consistency),
        ("how", pw.how),
        ("used as evidence", "yes" if "win_rate" in summary.metrics else "no"),
    ]
    versions = {"challenger": quality.challenger_version, "champion": quality.champion_version}
    charts = [
        ChartCell(histogram_svg(series, *_span(metric), title=metric, versions=versions))
        for metric, series in distributions.items()
    ]
    examples = Table(
        ["role", "version", "request", "metric", "value", "prompt", "response", "context"],
        [
            [
                e.role,
                e.version,
                e.request_id,
                e.metric,
                e.value,
                _text(e.prompt),
                _text(e.response),
                _text(e.context, 300),
            ]
            for e in quality.examples
        ],
        numeric=(4,),
    )
    sampling = Table(
        ["role", "version", "source", "rows in window", "sampled", "usable", "answered", "quarantined"],
        [
            [
                v.role,
                v.version,
                v.source,
                v.window_rows,
                v.sampled,
                v.usable,
                v.answered,
                ", ".join(f"{k}: {n}" for k, n in sorted(v.quarantined.items())) or "0",
            ]
            for v in quality.versions
        ],
        numeric=(3, 4, 5, 6),
    )
    method = [
        ("rubrics", ", ".join(quality.rubrics)),
        ("judge identity", quality.judge_identity),
        ("timings (s)", ", ".join(f"{k} {v:.1f}" for k, v in quality.timings_s.items())),
        ("run key", quality.run_key),
        ("DAG run", f"{summary.dag_id or '–'} / {summary.run_id or '–'}"),
    ]
    return render(
        "quality.html",
        title=f"Quality: {quality.model_name}",
        subtitle=f"challenger {quality.challenger_version or '–'} vs champion {quality.champion_version or '–'}",
        generated_at=summary.created_at,
        overview=overview,
        notes=quality.notes,
        metrics=metrics_table(summary.metrics),
        judge_note=quality.judge_note,
        calibration=calibration_context(quality.calibration) if quality.calibration is not None else None,
        unscored=unscored,
        pairwise=pairwise,
        untrusted=metrics_table(quality.untrusted_judge_metrics) if quality.untrusted_judge_metrics else None,
        charts=charts,
        evidently_href=evidently_href,
        examples=examples,
        sampling=sampling,
        redactions=[("redactions before judging", ", ".join(f"{k}: {n}" for k, n in quality.redactions.items()))],
        method=method,
    )
