"""Lockgate's drift page: the verdict, how it was reached, and everything that limits it.

Model names, version labels, column names, quarantine reasons and statuses come from the logs and
may hold hostile text: the functions here turn a `DriftSummary` into plain rows and facts, and the
autoescaped template (`lockgate/reports/templates/drift.html`) lays them out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lockgate.drift.summary import ColumnDistribution, ColumnDrift, DriftSummary, Rate, WindowSample
from lockgate.reports.charts import (
    CHALLENGER_COLOR,
    CHAMPION_COLOR,
    CountSeries,
    EffectRow,
    category_bars,
    effect_chart,
    overlaid_histogram,
)
from lockgate.reports.html import Badge, ChartCell, Link, Links, Markup, Strong, Table, fmt
from lockgate.reports.templating import render

METHOD_NOTES = (
    "Each column has one fixed method, whatever the sample size. Numeric: two-sample "
    "Kolmogorov-Smirnov test; effect = Wasserstein distance / reference standard deviation. "
    "Categorical: chi-square test of homogeneity (Fisher's exact test on sparse 2x2 tables); "
    "effect = Jensen-Shannon distance. Embeddings (MiniLM): a logistic regression fitted on half "
    "of each window scores the other half; its held-out AUC gives an exact Mann-Whitney p-value; "
    "effect = 2*AUC - 1. A column drifts only when its p-value is significant after "
    "Benjamini-Hochberg correction across every tested column AND its effect reaches the column's "
    "minimum, so a large sample does not flag a trivial shift. Columns without variation or with "
    "too few values are not tested and do not count in the drift share."
)


def _verdict(summary: DriftSummary) -> Badge:
    if summary.status != "ok" or summary.drift_share is None:
        return Badge("insufficient data: no evidence", tone="insufficient_data")
    return Badge("drift detected", tone="fail") if summary.drift_detected else Badge("no drift", tone="pass")


def _rate(r: Rate | None) -> str:
    if r is None:
        return "–"
    return f"{r.value:.2%} [{r.ci_low:.2%}, {r.ci_high:.2%}] ({r.count}/{r.n}, {r.confidence:.0%} Wilson)"


def _window_rows(windows: Iterable[WindowSample]) -> list[list[Any]]:
    rows = []
    for w in windows:
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(w.versions.items())) or "–"
        rows.append(
            [
                w.role,
                w.mode,
                w.start.isoformat() if w.start else "unresolved",
                w.end.isoformat() if w.end else "unresolved",
                w.window_rows,
                w.sampled,
                w.usable,
                sum(w.quarantined.values()),
                w.embedded,
                versions,
            ]
        )
    return rows


def quarantine_table(summary: DriftSummary) -> Table | None:
    """Sampled rows left out per reason and window; None when none broke the log contract."""
    reasons = sorted(set(summary.reference.quarantined) | set(summary.current.quarantined))
    if not reasons:
        return None
    rows: list[list[Any]] = [
        [r, summary.reference.quarantined.get(r, 0), summary.current.quarantined.get(r, 0)] for r in reasons
    ]
    rows.append(
        [Strong("total"), sum(summary.reference.quarantined.values()), sum(summary.current.quarantined.values())]
    )
    return Table(["reason", "reference", "current"], rows, numeric=(1, 2))


def _column_verdict(c: ColumnDrift) -> Badge:
    if not c.tested:
        return Badge(f"not tested: {c.reason}", tone="missing")
    if c.drifted:
        return Badge("drift", tone="fail")
    why = []
    if not c.significant:
        why.append("not significant")
    if c.effect_size is not None and c.effect_size < c.min_effect:
        why.append("effect below minimum")
    return Badge("no drift: " + (", ".join(why) or "below thresholds"), tone="pass")


def _column_rows(columns: Iterable[ColumnDrift]) -> list[list[Any]]:
    rows = []
    for c in columns:
        rows.append(
            [
                c.column,
                c.group,
                c.method or "–",
                fmt(c.statistic),
                fmt(c.p_value, 3),
                fmt(c.p_adjusted, 3),
                c.effect_measure or "–",
                fmt(c.effect_size, 3),
                fmt(c.min_effect, 3),
                fmt(c.evidently_value, 3),
                f"{c.n_reference} / {c.n_current}",
                _column_verdict(c),
            ]
        )
    return rows


def _effect_row(c: ColumnDrift) -> EffectRow:
    if not c.tested:
        detail = f"not tested: {c.reason}"
    else:
        detail = (
            f"{c.method} p={fmt(c.p_value, 3)}, BH-adjusted {fmt(c.p_adjusted, 3)} "
            f"({'significant' if c.significant else 'not significant'}); "
            f"{'drift' if c.drifted else 'no drift'}"
        )
    return EffectRow(
        column=c.column,
        effect=c.effect_size if c.tested else None,
        min_effect=c.min_effect,
        drifted=c.drifted,
        significant=c.significant,
        measure=c.effect_measure or "",
        detail=detail,
    )


def distribution_chart(d: ColumnDistribution) -> ChartCell:
    """One drifted column: reference against current, as shares over shared bins or per category."""
    series = [
        CountSeries("reference", d.reference, CHAMPION_COLOR, d.reference_mean),
        CountSeries("current", d.current, CHALLENGER_COLOR, d.current_mean),
    ]
    title = f"{d.column}: {d.label}"
    chart: Markup
    if d.kind == "categorical":
        chart = category_bars(title, d.categories, series)
    else:
        chart = overlaid_histogram(title, d.edges, series, note="dashed: the means")
    return ChartCell(chart, d.note or "")


def _power_note(col: ColumnDrift, power: float) -> str:
    """What an embedding column's "no drift" is worth, in words."""
    auc = 0.5 + col.min_effect / 2
    strength = "weak evidence of no shift" if power < 0.8 else "good evidence of no shift this large"
    return (
        f"{power:.0%}: with {col.n_reference} / {col.n_current} embedded rows, the chance this test flags a "
        f"shift of exactly its minimum effect (held-out AUC {auc:.3f}); not flagged here is {strength} "
        "(drift.embedding_sample_size or drift.embedding_power set the rows)"
    )


def render_drift_page(
    summary: DriftSummary,
    *,
    run_key: str,
    evidently_href: str | None = None,
    challenger_version: str | None = None,
    champion_version: str | None = None,
) -> str:
    """The whole HTML page for one drift run."""
    verdict_pairs: list[tuple[str, Any]] = [
        ("verdict", _verdict(summary)),
        ("status", Badge(summary.status)),
    ]
    if summary.message:
        verdict_pairs.append(("message", summary.message))
    if summary.drift_share is not None:
        verdict_pairs += [
            (
                "drift share",
                f"{summary.drift_share:.3f} ({len(summary.drifted_columns)} of {summary.n_tested} tested columns)",
            ),
            ("drifted columns", ", ".join(summary.drifted_columns) or "none"),
        ]
    else:
        verdict_pairs.append(("drift share", "no evidence (insufficient data): this is not a 'no drift' result"))
    for col in summary.columns:
        if col.power is not None and not col.drifted:
            verdict_pairs.append((f"{col.column}: power", _power_note(col, col.power)))
    verdict_pairs += [
        ("false discovery rate (BH)", summary.fdr_alpha),
        ("champion / challenger", f"{champion_version or '–'} / {challenger_version or '–'}"),
        ("run", run_key),
    ]
    links = []
    if evidently_href:
        links.append(Link(evidently_href, "Evidently report (offline, self-contained)"))
    links += [Link("summary.json", "evidence summary (summary.json)"), Link("drift_summary.json", "drift_summary.json")]
    verdict_pairs.append(("files", Links(links)))

    ok = summary.status == "ok"
    rate_pairs: list[tuple[str, Any]] = [
        ("error rate (current)", _rate(summary.error_rate)),
        ("timeout rate (current)", _rate(summary.timeout_rate)),
    ]
    for version, rates in sorted(summary.version_rates.items()):
        rate_pairs.append(
            (
                f"version {version}: error / timeout",
                f"{_rate(rates.get('error_rate'))} / {_rate(rates.get('timeout_rate'))}",
            )
        )
    windows = Table(
        [
            "window",
            "mode",
            "start",
            "end",
            "rows in window",
            "sampled",
            "usable",
            "quarantined",
            "embedded",
            "versions (usable rows)",
        ],
        _window_rows((summary.reference, summary.current)),
        numeric=(4, 5, 6, 7, 8),
    )
    columns = Table(
        [
            "column",
            "group",
            "test",
            "statistic",
            "p",
            "p (BH)",
            "effect measure",
            "effect",
            "min effect",
            "Evidently (same measure; AUC for embeddings)",
            "n ref / cur",
            "verdict",
        ],
        _column_rows(summary.columns),
        numeric=(3, 4, 5, 7, 8, 9),
    )
    return render(
        "drift.html",
        title=f"Drift · {summary.model_name}",
        subtitle=f"reference vs current window · run {run_key}",
        generated_at=None,
        ok=ok,
        verdict=verdict_pairs,
        effect_chart=effect_chart([_effect_row(c) for c in summary.columns]) if ok else None,
        any_drifted=bool(summary.drifted_columns),
        distributions=[distribution_chart(d) for d in summary.distributions],
        windows=windows,
        quarantined_total=sum(summary.quarantined_total.values()),
        quarantine=quarantine_table(summary),
        rates=rate_pairs,
        columns=columns,
        method_notes=METHOD_NOTES,
        timings=[(k, round(v, 3)) for k, v in summary.timings_s.items()],
        settings=[(k, str(v)) for k, v in summary.config.items()],
    )
