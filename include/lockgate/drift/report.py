"""Lockgate's drift page: the verdict, how it was reached, and everything that limits it.

Built only from `lockgate.reports.html` blocks, which escape every value: model
names, version labels, quarantine reasons and statuses come from the logs and may
hold hostile text.
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
from lockgate.reports.html import Markup, badge, esc, fmt, key_values, link, page, section, table

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


def _pill(css: str, text: str) -> Markup:
    """A badge whose colour class is one of ours and whose text is escaped."""
    return Markup(f'<span class="badge {css}">{esc(text)}</span>')


def _verdict(summary: DriftSummary) -> Markup:
    if summary.status != "ok" or summary.drift_share is None:
        return _pill("insufficient_data", "insufficient data: no evidence")
    return _pill("fail", "drift detected") if summary.drift_detected else _pill("pass", "no drift")


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


def _quarantine_section(summary: DriftSummary) -> Markup:
    reasons = sorted(set(summary.reference.quarantined) | set(summary.current.quarantined))
    total = sum(summary.quarantined_total.values())
    if not reasons:
        return section("Quarantined rows", "No sampled row broke the log contract.")
    rows = [[r, summary.reference.quarantined.get(r, 0), summary.current.quarantined.get(r, 0)] for r in reasons]
    rows.append(
        [Markup("<b>total</b>"), sum(summary.reference.quarantined.values()), sum(summary.current.quarantined.values())]
    )
    return section(
        "Quarantined rows",
        f"{total} sampled rows broke the log contract and were left out (never silently dropped).",
        table(["reason", "reference", "current"], rows, numeric=(1, 2)),
    )


def _column_verdict(c: ColumnDrift) -> Markup:
    if not c.tested:
        return _pill("missing", f"not tested: {c.reason}")
    if c.drifted:
        return _pill("fail", "drift")
    why = []
    if not c.significant:
        why.append("not significant")
    if c.effect_size is not None and c.effect_size < c.min_effect:
        why.append("effect below minimum")
    return _pill("pass", "no drift: " + (", ".join(why) or "below thresholds"))


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


def effect_section(summary: DriftSummary) -> Markup:
    """Every column's effect against its minimum: what decides a drift beside significance."""
    return section(
        "Effect against minimum",
        effect_chart([_effect_row(c) for c in summary.columns]),
        Markup(
            '<p class="muted">A column drifts when its effect reaches its minimum (the dark tick) AND its '
            "p-value is significant after Benjamini-Hochberg; hover a row for the test, p-value and adjusted "
            "p-value. The columns table below has the same numbers.</p>"
        ),
    )


def distribution_chart(d: ColumnDistribution) -> Markup:
    """One drifted column: reference against current, as shares over shared bins or per category."""
    series = [
        CountSeries("reference", d.reference, CHAMPION_COLOR, d.reference_mean),
        CountSeries("current", d.current, CHALLENGER_COLOR, d.current_mean),
    ]
    title = f"{d.column}: {d.label}"
    if d.kind == "categorical":
        chart = category_bars(title, d.categories, series)
    else:
        chart = overlaid_histogram(title, d.edges, series, note="dashed: the means")
    note = Markup(f'<div class="muted">{esc(d.note)}</div>') if d.note else Markup("")
    return Markup(f'<div class="chart-cell">{chart}{note}</div>')


def distributions_section(summary: DriftSummary) -> Markup:
    """Reference-vs-current distributions of the drifted columns (binned by the job: no rows in the page)."""
    if not summary.drifted_columns:
        return section("Drifted columns: reference vs current", "No column drifts.")
    if not summary.distributions:
        return section(
            "Drifted columns: reference vs current",
            "The distributions of the drifted columns were not recorded for this run.",
        )
    cells = "".join(distribution_chart(d) for d in summary.distributions)
    return section(
        "Drifted columns: reference vs current",
        Markup(f'<div class="charts">{cells}</div>'),
        Markup(
            '<p class="muted">Shares of each window\'s values per bin (hover a bin for both shares and counts). '
            "Text is compared through its descriptors (lengths, word counts, shares, flags); an embedding column "
            "through the held-out scores of the classifier that tested it, which separate the windows as far as "
            "the embeddings do.</p>"
        ),
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
        ("status", badge(summary.status)),
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
    verdict_pairs += [
        ("false discovery rate (BH)", summary.fdr_alpha),
        ("champion / challenger", f"{champion_version or '–'} / {challenger_version or '–'}"),
        ("run", run_key),
    ]
    links = []
    if evidently_href:
        links.append(link(evidently_href, "Evidently report (offline, self-contained)"))
    links += [link("summary.json", "evidence summary (summary.json)"), link("drift_summary.json", "drift_summary.json")]
    verdict_pairs.append(("files", Markup(" · ".join(links))))

    sections = [section("Verdict", key_values(verdict_pairs))]
    if summary.status == "ok":
        sections += [effect_section(summary), distributions_section(summary)]
    sections += [
        section(
            "Windows and samples",
            table(
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
            ),
        ),
        _quarantine_section(summary),
    ]
    if summary.status == "ok":
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
        sections.append(section("Operational rates", key_values(rate_pairs)))
        sections.append(
            section(
                "Columns",
                table(
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
                ),
                Markup(f'<p class="muted">{esc(METHOD_NOTES)}</p>'),
            )
        )
    else:
        sections.append(
            section(
                "Insufficient data",
                "At least one window holds fewer usable rows than the policy's drift.min_rows: no column was tested, "
                "the evidence summary is invalid and carries no metrics, so every drift gate reads it as missing.",
            )
        )
    if summary.timings_s:
        sections.append(section("Timings (s)", key_values([(k, round(v, 3)) for k, v in summary.timings_s.items()])))
    sections.append(section("Settings", key_values([(k, str(v)) for k, v in summary.config.items()])))
    return page(f"Drift · {summary.model_name}", f"reference vs current window · run {run_key}", *sections)
