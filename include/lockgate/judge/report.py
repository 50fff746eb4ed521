"""The HTML quality report. Every value from data goes through `esc()` (logged text is hostile)."""

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
from lockgate.reports.html import Markup, badge, esc, fmt, key_values, link, page, section, table

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


def metrics_table(metrics: Mapping[str, MetricEvidence]) -> Markup:
    rows = []
    for name in sorted(metrics, key=lambda n: list(METRIC_INFO).index(n) if n in METRIC_INFO else 99):
        m = metrics[name]
        main = m.model or m.challenger
        rows.append(
            [
                Markup(f"<code>quality.{esc(name)}</code>"),
                m.unit or "",
                _est(m.champion),
                _n(m.champion),
                _est(m.challenger if m.model is None else m.model),
                _n(main),
                _est(m.difference),
                m.description or "",
            ]
        )
    return table(
        ["metric", "unit", "champion [CI]", "n", "challenger (or model) [CI]", "n", "difference [CI]", "meaning"],
        rows,
    )


def provenance_block(cal: CalibrationResult) -> Markup:
    """Which set the judge was checked against, who labelled it, and how much its labellers agree."""
    labellers = "; ".join(f"{lab.id}: {lab.description}" if lab.description else lab.id for lab in cal.labellers)
    origin = {
        "people": "people outside the project (the set's labellers)",
        "lockgate_project": "the lockgate project itself (an example set, not independent people)",
    }[cal.labels_from]
    parts: list[Markup] = [
        key_values(
            [
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
        )
    ]
    if len(cal.labellers) < 2:
        parts.append(
            Markup(
                '<p class="muted">One labeller: how much two people agree on these items, the most agreement '
                "the judge can be expected to reach, is unknown.</p>"
            )
        )
    elif cal.labeller_agreement:
        parts.append(
            Markup(
                '<p class="muted">The labellers\' agreement with each other, on the items both labelled: '
                "the ceiling the judge's agreement is read against.</p>"
            )
        )
        parts.append(
            table(
                ["labeller", "labeller", "items both labelled", "Spearman [CI]", "Cohen's kappa, quadratic [CI]"],
                [[a.a, a.b, a.n, _est(a.spearman), _est(a.kappa)] for a in cal.labeller_agreement],
                numeric=(2,),
            )
        )
    return Markup("".join(str(p) for p in parts))


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
        return Markup(f'<p class="muted">{esc(title) + ": " if title else ""}no values</p>')
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


def _text(value: str | None, limit: int = 600) -> Markup:
    if value is None:
        return esc(None)
    cut = value if len(value) <= limit else value[:limit] + " […]"
    return Markup(f'<div class="text">{esc(cut)}</div>')


def render_quality_report(
    summary: EvidenceSummary,
    quality: QualitySummary,
    distributions: Mapping[str, Mapping[str, Sequence[float]]],
    evidently_href: str | None = None,
) -> str:
    """The report page for one quality run."""
    status = summary.status if summary.valid else "invalid"
    overview = section(
        "Overview",
        key_values(
            [
                ("status", badge(status)),
                ("model", quality.model_name),
                ("challenger version", quality.challenger_version),
                ("champion version", quality.champion_version),
                (
                    "how the challenger was evaluated",
                    {
                        "traffic": "its own canary traffic in the logs",
                        "replay": "replayed: sampled production prompts generated through the challenger",
                        "champion_only": "no challenger: champion only",
                        "no_versions": "no version to evaluate",
                    }[quality.mode],
                ),
                ("window", f"{quality.window_start} → {quality.window_end}"),
                ("judge", quality.judge),
                ("judge trusted for gating", badge("pass" if quality.judge_trusted else "fail")),
                ("message", summary.message or ""),
            ]
        ),
        *(Markup(f"<p>{esc(n)}</p>") for n in quality.notes),
    )
    metrics = section(
        "Evidence the gates read",
        Markup(
            '<p class="muted">Bootstrap intervals at the policy confidence; difference = challenger − champion. '
            "A gate on a metric that is missing here is <em>missing</em>, which never passes.</p>"
        ),
        metrics_table(summary.metrics),
    )
    cal = quality.calibration
    trust_parts: list[Markup] = [Markup(f"<p>{esc(quality.judge_note)}</p>")]
    if cal is not None:
        trust_parts.append(provenance_block(cal))
        trust_parts.append(
            key_values(
                [
                    ("rubrics calibrated", ", ".join(cal.rubrics)),
                    ("rubrics without labelled items", ", ".join(cal.uncalibrated_rubrics) or "none"),
                    ("scored", f"{cal.n_scored}/{cal.n_items}"),
                    ("Spearman [CI]", _est(cal.spearman)),
                    ("Cohen's kappa, quadratic [CI]", _est(cal.kappa)),
                    (
                        "thresholds",
                        ", ".join(f"{k} {v}" for k, v in cal.thresholds.items()),
                    ),
                    ("result", badge("pass" if cal.passed else "fail")),
                    ("from cache", "yes" if cal.cached else "no"),
                ]
            )
        )
        if cal.reasons:
            trust_parts.append(Markup("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in cal.reasons) + "</ul>"))
        trust_parts.append(
            table(
                ["rubric", "items", "scored", "Spearman", "kappa"],
                [[r.rubric, r.n, r.scored, r.spearman, r.kappa] for r in cal.per_rubric],
                numeric=(1, 2, 3, 4),
            )
        )
    trust_parts.append(
        table(
            ["version", "role", "unscored judgments by reason"],
            [
                [v.version, v.role, ", ".join(f"{k}: {n}" for k, n in sorted(v.unscored.items())) or "none"]
                for v in quality.versions
            ],
        )
    )
    trust = section("Trust in the judge", *trust_parts)

    pw = quality.pairwise
    pairwise = section(
        "Pairwise: challenger against champion on the same prompts",
        key_values(
            [
                ("pairs", pw.pairs),
                ("scored pairs (both orders)", pw.scored),
                ("unscored pairs", pw.unscored),
                ("win rate [CI]", _est(pw.win_rate)),
                ("position consistency", pw.position_consistency),
                ("how", pw.how),
                ("used as evidence", "yes" if "win_rate" in summary.metrics else "no"),
            ]
        ),
    )
    untrusted = (
        section(
            "Judge scores kept out of the evidence",
            Markup(
                "<p><strong>Not a quality signal:</strong> the judge failed its calibration, or the "
                "calibration set has no labelled item for these rubrics, so these scores are shown for "
                "transparency only.</p>"
            ),
            metrics_table(quality.untrusted_judge_metrics),
        )
        if quality.untrusted_judge_metrics
        else Markup("")
    )
    versions = {"challenger": quality.challenger_version, "champion": quality.champion_version}
    cells = "".join(
        f'<div class="chart-cell">{histogram_svg(series, *_span(metric), title=metric, versions=versions)}</div>'
        for metric, series in distributions.items()
    )
    dist_parts: list[Markup] = []
    if cells:
        dist_parts += [
            Markup(f'<div class="charts">{cells}</div>'),
            Markup(
                '<p class="muted">Each version\'s answered samples: the share of them per bin (hover a bin for '
                "shares and counts), dashed lines at the means. MiniLM scores are cosines; judge scores are expected "
                "scores on the rubric's scale (1-5), or probabilities for two-label rubrics.</p>"
            ),
        ]
    if evidently_href:
        dist_parts.append(Markup(f"<p>{link(evidently_href, 'Evidently descriptor report')}</p>"))
    distributions_html = section("Score distributions per version", *dist_parts) if dist_parts else Markup("")

    example_rows = [
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
    ]
    examples = section(
        "Lowest-scoring examples (redacted)",
        table(
            ["role", "version", "request", "metric", "value", "prompt", "response", "context"],
            example_rows,
            numeric=(4,),
        )
        if example_rows
        else Markup('<p class="muted">none</p>'),
    )
    sampling = section(
        "Sampling",
        table(
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
        ),
        key_values([("redactions before judging", ", ".join(f"{k}: {n}" for k, n in quality.redactions.items()))]),
    )
    method = section(
        "Method",
        key_values(
            [
                ("rubrics", ", ".join(quality.rubrics)),
                ("judge identity", quality.judge_identity),
                ("timings (s)", ", ".join(f"{k} {v:.1f}" for k, v in quality.timings_s.items())),
                ("run key", quality.run_key),
                ("DAG run", f"{summary.dag_id or '–'} / {summary.run_id or '–'}"),
            ]
        ),
    )
    title = f"Quality: {quality.model_name}"
    subtitle = f"challenger {quality.challenger_version or '–'} vs champion {quality.champion_version or '–'}"
    return page(
        title,
        subtitle,
        overview,
        metrics,
        trust,
        pairwise,
        untrusted,
        distributions_html,
        examples,
        sampling,
        method,
        generated_at=summary.created_at,
    )
