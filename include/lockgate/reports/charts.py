"""Inline SVG charts shared by the report pages.

Box plots, line charts and histograms (benchmark); the forest plot of gate intervals against
their limits (decision); per-column effect bars and reference-vs-current distributions (drift);
per-version score distributions (quality).

Generated here so the pages work offline (no JavaScript, no CDN); hovering an element shows
its numbers through an SVG `<title>`. Every label goes through `esc()` (gate, column,
category and model names may be hostile text); numbers are formatted by this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from lockgate.reports.html import Markup, esc, svg_markup

CHALLENGER_COLOR = "#d9480f"
CHAMPION_COLOR = "#1c7ed6"
PALETTE = ("#d9480f", "#1c7ed6", "#2b8a3e", "#7048e8", "#c2255c", "#e67700")

_FONT = 'font-family="system-ui,sans-serif" font-size="11"'


def fmt_number(x: float) -> str:
    """A number as charts label it: 3 significant digits below 1, 2 decimals below 100, grouped above."""
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `high`."""
    if high <= 0 or not math.isfinite(high):
        return [0.0, 1.0]
    raw = high / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(math.ceil(high / step)) + 1)]


@dataclass(frozen=True)
class BoxGroup:
    label: str
    values: Sequence[float]
    color: str = CHAMPION_COLOR


def box_plot(title: str, groups: Sequence[BoxGroup], unit: str, width: int = 760) -> Markup:
    """Horizontal box plots: box p25-p75, whiskers p5-p95, median line, mean dot, p99 tick."""
    groups = [g for g in groups if len(g.values)]
    if not groups:
        return Markup("<p class='muted'>{}: no data</p>").format(title)
    row_h, left, right, top = 26, 230, 70, 28
    height = top + row_h * len(groups) + 34
    stats: list[tuple[BoxGroup, float, float, float, float, float, float, float]] = []
    for g in groups:
        x = np.asarray(g.values, dtype=float)
        x = x[np.isfinite(x)]
        q = [float(v) for v in np.percentile(x, [5, 25, 50, 75, 95, 99])] if x.size else [math.nan] * 6
        mean = float(np.mean(x)) if x.size else math.nan
        stats.append((g, q[0], q[1], q[2], q[3], q[4], q[5], mean))
    high = max(s[6] for s in stats if math.isfinite(s[6])) * 1.05 if stats else 1.0
    ticks = _ticks(high)
    high = ticks[-1]
    plot_w = width - left - right

    def xp(v: float) -> float:
        return left + plot_w * (v / high if high > 0 else 0)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(title)}">',
        f'<text x="{left}" y="16" {_FONT} font-weight="600">{esc(title)} ({esc(unit)})</text>',
    ]
    axis_y = top + row_h * len(groups) + 4
    for t in ticks:
        tx = xp(t)
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{axis_y}" stroke="#e4e7eb"/>')
        parts.append(f'<text x="{tx:.1f}" y="{axis_y + 14}" {_FONT} text-anchor="middle">{esc(fmt_number(t))}</text>')
    for i, (g, p5, p25, p50, p75, p95, p99, mean) in enumerate(stats):
        y = top + i * row_h + row_h / 2
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" {_FONT} text-anchor="end">{esc(g.label)}</text>')
        if not math.isfinite(p50):
            continue
        color = esc(g.color)
        parts.append(f'<line x1="{xp(p5):.1f}" y1="{y:.1f}" x2="{xp(p95):.1f}" y2="{y:.1f}" stroke="{color}"/>')
        parts.append(
            f'<rect x="{xp(p25):.1f}" y="{y - 8:.1f}" width="{max(1.0, xp(p75) - xp(p25)):.1f}" height="16" '
            f'fill="{color}" fill-opacity="0.25" stroke="{color}"/>'
        )
        parts.append(f'<line x1="{xp(p50):.1f}" y1="{y - 8:.1f}" x2="{xp(p50):.1f}" y2="{y + 8:.1f}" '
                     f'stroke="{color}" stroke-width="2"/>')  # fmt: skip
        parts.append(f'<circle cx="{xp(mean):.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>')
        parts.append(
            f'<line x1="{xp(p99):.1f}" y1="{y - 4:.1f}" x2="{xp(p99):.1f}" y2="{y + 4:.1f}" stroke="{color}"/>'
        )
        parts.append(f'<text x="{width - right + 6}" y="{y + 4:.1f}" {_FONT}>p50 {esc(fmt_number(p50))}</text>')
    parts.append("</svg>")
    return svg_markup(parts)


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    color: str = CHAMPION_COLOR
    dashed: bool = False


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str, width: int = 760) -> Markup:
    """Lines over categorical x values (batch sizes), y from zero."""
    series = [s for s in series if s.points]
    xs = sorted({x for s in series for x, _ in s.points})
    if not xs:
        return Markup("<p class='muted'>{}: no data</p>").format(title)
    left, right, top, bottom = 70, 200, 28, 40
    height = 260
    plot_w, plot_h = width - left - right, height - top - bottom
    ys = [y for s in series for _, y in s.points if math.isfinite(y)]
    ticks = _ticks(max(ys) * 1.05 if ys else 1.0)
    high = ticks[-1]

    def xp(x: float) -> float:
        return left + (plot_w * xs.index(x) / (len(xs) - 1) if len(xs) > 1 else plot_w / 2)

    def yp(y: float) -> float:
        return top + plot_h * (1 - (y / high if high > 0 else 0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(title)}">',
        f'<text x="{left}" y="16" {_FONT} font-weight="600">{esc(title)}</text>',
    ]
    for t in ticks:
        parts.append(f'<line x1="{left}" y1="{yp(t):.1f}" x2="{left + plot_w}" y2="{yp(t):.1f}" stroke="#e4e7eb"/>')
        parts.append(f'<text x="{left - 6}" y="{yp(t) + 4:.1f}" {_FONT} text-anchor="end">{esc(fmt_number(t))}</text>')
    for x in xs:
        parts.append(
            f'<text x="{xp(x):.1f}" y="{top + plot_h + 16}" {_FONT} text-anchor="middle">{esc(fmt_number(x))}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" {_FONT} text-anchor="middle">{esc(x_label)}</text>'
    )
    parts.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" {_FONT} text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">{esc(y_label)}</text>'
    )
    for i, s in enumerate(series):
        pts = [(xp(x), yp(y)) for x, y in sorted(s.points) if math.isfinite(y)]
        color = esc(s.color)
        dash = ' stroke-dasharray="5,3"' if s.dashed else ""
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for px, py in pts:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>')
        ly = top + 4 + i * 16
        parts.append(
            f'<line x1="{left + plot_w + 12}" y1="{ly}" x2="{left + plot_w + 30}" y2="{ly}" stroke="{color}" '
            f'stroke-width="2"{dash}/>'
        )
        parts.append(f'<text x="{left + plot_w + 34}" y="{ly + 4}" {_FONT}>{esc(s.label)}</text>')
    parts.append("</svg>")
    return svg_markup(parts)


def histogram(title: str, values: Sequence[float], unit: str, bins: int = 20, width: int = 760) -> Markup:
    """Bars of counts over equal-width bins."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Markup("<p class='muted'>{}: no data</p>").format(title)
    counts, edges = np.histogram(x, bins=min(bins, max(1, len(np.unique(x)))))
    left, right, top, bottom = 50, 20, 28, 36
    height = 200
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(int(counts.max()), 1)
    bar_w = plot_w / len(counts)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(title)}">',
        f'<text x="{left}" y="16" {_FONT} font-weight="600">{esc(title)}</text>',
    ]
    for i, c in enumerate(counts):
        h = plot_h * int(c) / peak
        parts.append(
            f'<rect x="{left + i * bar_w + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(1.0, bar_w - 2):.1f}" '
            f'height="{h:.1f}" fill="{CHAMPION_COLOR}" fill-opacity="0.6"><title>{esc(fmt_number(edges[i]))}-'
            f"{esc(fmt_number(edges[i + 1]))} {esc(unit)}: {int(c)}</title></rect>"
        )
    for frac in (0.0, 0.5, 1.0):
        v = edges[0] + frac * (edges[-1] - edges[0])
        parts.append(
            f'<text x="{left + frac * plot_w:.1f}" y="{top + plot_h + 16}" {_FONT} text-anchor="middle">'
            f"{esc(fmt_number(float(v)))}</text>"
        )
    parts.append(f'<text x="{left - 6}" y="{top + 8}" {_FONT} text-anchor="end">{peak}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" {_FONT} text-anchor="middle">{esc(unit)}</text>')
    parts.append("</svg>")
    return svg_markup(parts)


# --------------------------------------------------------------------------- shared helpers

_SMALL = 'font-family="system-ui,sans-serif" font-size="9.5" fill="#616e7c"'
_GRID = "#e4e7eb"
_INK = "#102a43"


def _clip(text: str, limit: int) -> str:
    """Cut a label to fit its column (before escaping, so no entity is cut); the full text is in a `<title>`."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt(x: float | None) -> str:
    """A value as a row shows it: four significant digits, enough to tell 1.049 from 1.05."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}"


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (which may be negative)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low, low + 1.0] if math.isfinite(low) else [0.0, 1.0]
    raw = (high - low) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < high - 1e-9 * step:
        ticks.append(first + len(ticks) * step)
    # 0.1 + 0.2 style noise would print as 0.30000000000000004
    return [round(t, 12) for t in ticks]


def _svg_open(title: str, width: int, height: int, css: str) -> str:
    """The `<svg>` element and its title line, cut to the chart's width (the full title is its label)."""
    shown = _clip(title, max(12, int((width - 16) / 6.8)))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>'
        f'<text x="8" y="16" {_FONT} font-weight="600">{esc(shown)}</text>'
    )


# --------------------------------------------------------------------------- forest plot (decision page)

ForestStatus = Literal["pass", "fail", "missing", "warn"]
STATUS_COLORS: dict[str, str] = {"pass": "#2b8a3e", "fail": "#c92a2a", "missing": "#b7791f", "warn": "#1d4ed8"}
_STATUS_TEXT = {"pass": "pass", "fail": "FAIL", "missing": "missing", "warn": "warn"}
_PANELS = (
    ("ratio", "Ratios (challenger / champion, or champion / its baseline): 1 is no change", 1.0, True),
    ("difference", "Differences (challenger − champion, or champion − its baseline): 0 is no change", 0.0, False),
    ("absolute", "Absolute values", None, False),
)


@dataclass(frozen=True)
class ForestRow:
    """One gate verdict: its estimate and interval against the gate's limit.

    `status` is the colour: pass, fail, missing (no usable value: never a pass) or warn (a warn
    gate that did not pass: shown, never blocking). `detail` is the hover text (the rule, the
    number compared, the reason).
    """

    label: str
    metric: str
    comparison: str
    status: ForestStatus
    direction: str
    limit: float | None
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    detail: str = ""


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _row_points(r: ForestRow, null: float | None) -> list[float]:
    pts = [r.value, r.ci_low, r.ci_high, r.limit, null]
    return [p for p in (_finite_or_none(x) for x in pts) if p is not None]


def _domain(points: Sequence[float]) -> tuple[float, float]:
    if not points:
        return 0.0, 1.0
    lo, hi = min(points), max(points)
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def forest_plot(rows: Sequence[ForestRow], title: str = "Gates: interval against limit", width: int = 900) -> Markup:
    """Each gate's point estimate and interval against its limit, one row per verdict, coloured by status.

    Rows are grouped by comparison into panels, because a ratio, a difference and an absolute value
    have no common scale. Ratios share one axis (all are unitless multiples of the champion); the
    rows of the difference and absolute panels each get their own axis, printed under the row,
    since their units differ (an error rate, a latency in ms, a drift share). The failing side of
    each limit is shaded; a row without an interval shows its point only, one without a value says so.
    """
    if not rows:
        return Markup("<p class='muted'>{}: no gates</p>").format(title)
    left, right, row_h, head_h, axis_h = 260, 250, 38, 22, 24
    plot_w = width - left - right
    panels = [(p, [r for r in rows if r.comparison == p[0]]) for p in _PANELS]
    known = {p[0] for p in _PANELS}
    other = [r for r in rows if r.comparison not in known]
    if other:  # a comparison this chart does not know: shown on per-row axes rather than dropped
        panels.append(((other[0].comparison, "Other comparisons", None, False), other))
    panels = [(p, rs) for p, rs in panels if rs]
    height = 28 + sum(head_h + row_h * len(rs) + (axis_h if p[3] else 6) for p, rs in panels) + 20
    out = [_svg_open(title, width, height, "chart forest-plot")]
    legend_x = left
    for status in ("pass", "fail", "warn", "missing"):
        color = STATUS_COLORS[status]
        out.append(f'<circle cx="{legend_x}" cy="{height - 10}" r="4" fill="{color}"/>')
        out.append(f'<text x="{legend_x + 8}" y="{height - 6}" {_SMALL}>{esc(status)}</text>')
        legend_x += 70
    out.append(
        f'<line x1="{legend_x}" y1="{height - 16}" x2="{legend_x}" y2="{height - 4}" stroke="{_INK}" stroke-width="2"/>'
        f'<text x="{legend_x + 6}" y="{height - 6}" {_SMALL}>limit (shaded: the failing side)</text>'
    )
    y = 28
    for (kind, heading, null, shared), panel_rows in panels:
        out.append(f'<g class="forest-panel" data-comparison="{esc(kind)}">')
        out.append(f'<text x="8" y="{y + 15}" {_FONT} font-weight="600" fill="#334e68">{esc(heading)}</text>')
        y += head_h
        panel_domain = _domain([p for r in panel_rows for p in _row_points(r, null)]) if shared else None
        if panel_domain is not None:
            ticks = _nice_ticks(*panel_domain)
            panel_domain = (min(ticks[0], panel_domain[0]), max(ticks[-1], panel_domain[1]))
        for r in panel_rows:
            lo, hi = panel_domain or _domain(_row_points(r, null))
            out.append(_forest_row(r, y, row_h, left, plot_w, width, lo, hi, null, per_row_axis=not shared))
            y += row_h
        if panel_domain is not None:
            lo, hi = panel_domain
            for t in _nice_ticks(lo, hi):
                if lo <= t <= hi:
                    tx = left + plot_w * (t - lo) / (hi - lo)
                    out.append(f'<line x1="{tx:.1f}" y1="{y}" x2="{tx:.1f}" y2="{y + 4}" stroke="#9aa5b1"/>')
                    out.append(f'<text x="{tx:.1f}" y="{y + 15}" {_SMALL} text-anchor="middle">{esc(_fmt(t))}</text>')
            out.append(f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#9aa5b1"/>')
            y += axis_h
        else:
            y += 6
        out.append("</g>")
    out.append("</svg>")
    return svg_markup(out)


def _forest_row(
    r: ForestRow,
    y: float,
    row_h: int,
    left: int,
    plot_w: int,
    width: int,
    lo: float,
    hi: float,
    null: float | None,
    *,
    per_row_axis: bool,
) -> str:
    status = r.status if r.status in STATUS_COLORS else "missing"
    color = STATUS_COLORS[status]
    text_x = left + plot_w
    cy = y + row_h / 2 - (3 if per_row_axis else 0)

    def xp(v: float) -> float:
        return left + plot_w * (min(max(v, lo), hi) - lo) / (hi - lo)

    value, ci_low, ci_high = (_finite_or_none(x) for x in (r.value, r.ci_low, r.ci_high))
    limit = _finite_or_none(r.limit)
    interval = f" [{_fmt(ci_low)}, {_fmt(ci_high)}]" if ci_low is not None and ci_high is not None else ""
    numbers = f"{_fmt(value)}{interval}" if value is not None else "no value"
    sign = "≤" if r.direction == "lower_is_better" else "≥"
    limit_text = f"limit {sign} {_fmt(limit)}" if limit is not None else "no limit"
    hover = f"{r.label} · {r.metric}: {numbers}; {limit_text}; {_STATUS_TEXT[status]}"
    if r.detail:
        hover += f" — {r.detail}"
    parts = [
        f'<g class="forest-row status-{status}">',
        f"<title>{esc(hover)}</title>",
        # a transparent band so that hovering anywhere on the row shows its numbers
        f'<rect x="0" y="{y}" width="{width}" height="{row_h}" fill="#ffffff" fill-opacity="0"/>',
        f'<text x="8" y="{y + 15}" {_FONT} font-weight="600">{esc(_clip(r.label, 38))}</text>',
        f'<text x="8" y="{y + 28}" {_SMALL}>{esc(_clip(r.metric, 46))}</text>',
        f'<line x1="{left}" y1="{cy:.1f}" x2="{left + plot_w}" y2="{cy:.1f}" stroke="{_GRID}"/>',
    ]
    top, bottom = y + 3, y + row_h - (9 if per_row_axis else 3)
    if limit is not None:
        lx = xp(limit)
        fail_x, fail_w = (lx, left + plot_w - lx) if r.direction == "lower_is_better" else (left, lx - left)
        parts.append(
            f'<rect class="failing-side" x="{fail_x:.1f}" y="{top}" width="{max(0.0, fail_w):.1f}" '
            f'height="{bottom - top}" fill="#c92a2a" fill-opacity="0.07"/>'
        )
    if null is not None and lo <= null <= hi:
        nx = xp(null)
        parts.append(
            f'<line x1="{nx:.1f}" y1="{top}" x2="{nx:.1f}" y2="{bottom}" stroke="#9aa5b1" stroke-dasharray="3,3"/>'
        )
    if limit is not None:
        lx = xp(limit)
        parts.append(
            f'<line class="limit" x1="{lx:.1f}" y1="{top}" x2="{lx:.1f}" y2="{bottom}" stroke="{_INK}" '
            f'stroke-width="2"/>'
        )
    if ci_low is not None and ci_high is not None:
        x1, x2 = xp(ci_low), xp(ci_high)
        parts.append(
            f'<line class="interval" x1="{x1:.1f}" y1="{cy:.1f}" x2="{x2:.1f}" y2="{cy:.1f}" stroke="{color}" '
            f'stroke-width="3"/>'
        )
        for x in (x1, x2):
            parts.append(f'<line x1="{x:.1f}" y1="{cy - 5:.1f}" x2="{x:.1f}" y2="{cy + 5:.1f}" stroke="{color}"/>')
    if value is not None:
        parts.append(f'<circle class="estimate" cx="{xp(value):.1f}" cy="{cy:.1f}" r="5" fill="{color}"/>')
    else:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{cy + 4:.1f}" {_FONT} font-style="italic" fill="{color}" '
            f'text-anchor="middle">no value: missing evidence</text>'
        )
    if per_row_axis:
        parts.append(f'<text x="{left}" y="{y + row_h - 1}" {_SMALL}>{esc(_fmt(lo))}</text>')
        parts.append(f'<text x="{left + plot_w}" y="{y + row_h - 1}" {_SMALL} text-anchor="end">{esc(_fmt(hi))}</text>')
    parts.append(
        f'<text x="{text_x + 10}" y="{y + 15}" {_FONT} font-weight="700" fill="{color}">'
        f"{esc(_STATUS_TEXT[status])}</text>"
    )
    parts.append(f'<text x="{text_x + 72}" y="{y + 15}" {_FONT}>{esc(_clip(numbers, 28))}</text>')
    parts.append(f'<text x="{text_x + 72}" y="{y + 28}" {_SMALL}>{esc(limit_text)}</text>')
    parts.append("</g>")
    return "".join(parts)


# --------------------------------------------------------------------------- effect bars (drift page)

EFFECT_COLORS = {"drifted": "#c92a2a", "large": "#e67700", "small": "#829ab1"}


@dataclass(frozen=True)
class EffectRow:
    """One column's effect size against its minimum. `effect` None: the column was not tested."""

    column: str
    effect: float | None
    min_effect: float
    drifted: bool
    significant: bool | None = None
    measure: str = ""
    detail: str = ""


def effect_chart(rows: Sequence[EffectRow], title: str = "Effect size per column against its minimum",
                 width: int = 900) -> Markup:  # fmt: skip
    """Horizontal bars of each column's effect, its minimum effect as a dark tick on the row.

    Red: the column drifts (significant after BH and at least its minimum); orange: the effect
    reaches the minimum but is not significant; grey: below the minimum. Untested columns say so.
    The measures differ per column kind (normed Wasserstein, Jensen-Shannon, 2*AUC-1), all >= 0
    with 0 for no change, so they share one axis; each row's own minimum is the line that matters.
    The axis is square-root scaled: a shifted length distribution has a normed Wasserstein effect
    of 5 or more, which on a linear axis squeezes every minimum (0.05-0.2) into a few pixels.
    """
    if not rows:
        return Markup("<p class='muted'>{}: no columns</p>").format(title)
    left, right, top, row_h = 230, 170, 40, 22
    plot_w = width - left - right
    height = top + row_h * len(rows) + 44
    peak = max([r.effect for r in rows if r.effect is not None and math.isfinite(r.effect)] +
               [r.min_effect for r in rows], default=1.0)  # fmt: skip
    steps = [m * 10.0**e for e in range(-2, 5) for m in (1, 2, 5)]
    high = next((t for t in steps if t >= peak * 1.02), peak * 1.02)

    def xp(v: float) -> float:
        return left + plot_w * math.sqrt(min(max(v, 0.0), high) / high)

    # From the top down on a 1-5 series, so that 0.1 (the usual minimum) is labelled rather than 0.05.
    ticks = [high]
    one_five = [m * 10.0**e for e in range(4, -3, -1) for m in (5, 1)]
    for t in [t for t in one_five if t < high]:
        if xp(ticks[-1]) - xp(t) >= 34 and xp(t) - xp(0.0) >= 34:
            ticks.append(t)
    ticks.append(0.0)

    out = [_svg_open(title, width, height, "chart effect-chart")]
    legend = (("drifted", "drifts"), ("large", "≥ minimum, not significant"), ("small", "below minimum"))
    lx = left
    for key, text in legend:
        out.append(f'<rect x="{lx}" y="23" width="10" height="10" fill="{EFFECT_COLORS[key]}"/>')
        out.append(f'<text x="{lx + 14}" y="32" {_SMALL}>{esc(text)}</text>')
        lx += 30 + 6 * len(text)
    out.append(f'<line x1="{lx}" y1="22" x2="{lx}" y2="34" stroke="{_INK}" stroke-width="2"/>')
    out.append(f'<text x="{lx + 6}" y="32" {_SMALL}>the column\'s minimum effect</text>')
    axis_y = top + row_h * len(rows) + 2
    for t in ticks:
        tx = xp(t)
        out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{axis_y}" stroke="{_GRID}"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_y + 13}" {_SMALL} text-anchor="middle">{esc(_fmt(t))}</text>')
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{axis_y + 28}" {_SMALL} text-anchor="middle">'
        "effect size (square-root scale; 0: no change)</text>"
    )
    for i, r in enumerate(rows):
        y = top + i * row_h
        cy = y + row_h / 2
        effect = _finite_or_none(r.effect)
        if effect is None:
            css, color, numbers = "effect-untested", "#9aa5b1", "not tested"
        elif r.drifted:
            css, color, numbers = (
                "effect-drifted",
                EFFECT_COLORS["drifted"],
                f"{_fmt(effect)} (min {_fmt(r.min_effect)})",
            )
        elif effect >= r.min_effect:
            css, color, numbers = "effect-large", EFFECT_COLORS["large"], f"{_fmt(effect)} (min {_fmt(r.min_effect)})"
        else:
            css, color, numbers = "effect-small", EFFECT_COLORS["small"], f"{_fmt(effect)} (min {_fmt(r.min_effect)})"
        hover = f"{r.column}: {r.measure + ' ' if r.measure else ''}{numbers}"
        if r.detail:
            hover += f" — {r.detail}"
        weight = ' font-weight="700"' if r.drifted else ""
        out.append(f'<g class="effect-row {css}"><title>{esc(hover)}</title>')
        out.append(f'<rect x="0" y="{y}" width="{width}" height="{row_h}" fill="#ffffff" fill-opacity="0"/>')
        out.append(
            f'<text x="{left - 8}" y="{cy + 4:.1f}" {_FONT} text-anchor="end"{weight}>{esc(_clip(r.column, 34))}</text>'
        )
        if effect is not None:
            out.append(
                f'<rect x="{left}" y="{cy - 6:.1f}" width="{max(1.0, xp(effect) - left):.1f}" height="12" '
                f'fill="{color}"/>'
            )
        mx = xp(r.min_effect)
        out.append(
            f'<line class="min-effect" x1="{mx:.1f}" y1="{y + 2}" x2="{mx:.1f}" y2="{y + row_h - 2}" '
            f'stroke="{_INK}" stroke-width="2"/>'
        )
        out.append(f'<text x="{left + plot_w + 8}" y="{cy + 4:.1f}" {_SMALL}>{esc(numbers)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return svg_markup(out)


# --------------------------------------------------------------------------- distributions (drift, quality)


@dataclass(frozen=True)
class CountSeries:
    """Counts of one sample over shared bins (or categories); shown as shares, so sizes may differ."""

    label: str
    counts: Sequence[int]
    color: str
    mean: float | None = None


def shared_edges(
    samples: Sequence[npt.ArrayLike], bins: int = 24, *, span: tuple[float, float] | None = None, trim: float = 0.0
) -> list[float]:
    """Bin edges common to every sample, so their bars line up.

    `span`: a range the edges cover at least (a score's scale), widened where values fall outside
    it. `trim`: the share cut from each end of the pooled values (0.01: the 1st to 99th percentile)
    so one outlier does not squeeze the rest into a bin; `bin_counts` puts cut values in the end bins.
    Integer-valued data gets bins of whole numbers of integers (one per integer where they fit).
    """
    arrays = [np.asarray(s, dtype=float) for s in samples]
    pooled = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.array([])
    if pooled.size == 0:
        return []
    lo, hi = (float(np.quantile(pooled, trim)), float(np.quantile(pooled, 1 - trim))) if trim else (
        float(pooled.min()), float(pooled.max()))  # fmt: skip
    if span is not None:
        lo, hi = min(lo, span[0]), max(hi, span[1])
    if np.all(pooled == np.round(pooled)):
        # Counts (tokens, words): bins of whole numbers each, or every other integer would fall
        # in a bin of its own and the bars would comb.
        first, last = math.floor(lo), math.ceil(hi)
        step = max(1, math.ceil((last - first + 1) / bins))
        n = math.ceil((last - first + 1) / step)
        return [first - 0.5 + k * step for k in range(n + 1)]
    if hi - lo < 1e-12:
        return [lo - 0.5, lo + 0.5]
    return [float(e) for e in np.linspace(lo, hi, bins + 1)]


def bin_counts(values: npt.ArrayLike, edges: Sequence[float]) -> list[int]:
    """Counts per bin; values outside the edges count in the end bins, non-finite ones not at all."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(edges) < 2:
        return []
    counts, _ = np.histogram(np.clip(x, edges[0], edges[-1]), bins=np.asarray(edges, dtype=float))
    return [int(c) for c in counts]


def _legend(series: Sequence[CountSeries], x: float, y: float) -> str:
    out = []
    for s in series:
        n = int(sum(s.counts))
        text = _clip(f"{s.label} (n={n})", 44)
        out.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{esc(s.color)}" fill-opacity="0.6"/>'
        )
        out.append(f'<text x="{x + 14:.1f}" y="{y:.1f}" {_SMALL}>{esc(text)}</text>')
        x += 26 + 5.6 * len(text)
    return "".join(out)


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def overlaid_histogram(
    title: str, edges: Sequence[float], series: Sequence[CountSeries], unit: str = "", *, note: str = "",
    width: int = 440, height: int = 190,
) -> Markup:  # fmt: skip
    """Samples over shared bins as overlaid step outlines of their shares, dashed lines at their means.

    Shares, not counts, so a 300-row window and a 3,000-row one compare. Hovering a bin shows
    every sample's share and count in it.
    """
    series = [s for s in series if sum(s.counts)]
    if len(edges) < 2 or not series or any(len(s.counts) != len(edges) - 1 for s in series):
        return Markup("<p class='muted'>{}: no values</p>").format(title)
    left, right, top, bottom = 44, 12, 40, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    shares = [_shares(s.counts) for s in series]
    peak = max(max(sh) for sh in shares) or 1.0
    lo, hi = edges[0], edges[-1]

    def xp(v: float) -> float:
        return left + plot_w * (v - lo) / (hi - lo)

    def yp(share: float) -> float:
        return top + plot_h * (1 - share / peak)

    out = [_svg_open(title, width, height, "chart distribution"), _legend(series, left, 32)]
    for frac in (0.0, 0.5, 1.0):
        gy = top + plot_h * (1 - frac)
        out.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{left + plot_w}" y2="{gy:.1f}" stroke="{_GRID}"/>')
        out.append(f'<text x="{left - 4}" y="{gy + 3:.1f}" {_SMALL} text-anchor="end">{frac * peak:.0%}</text>')
    for s, sh in zip(series, shares, strict=True):
        color = esc(s.color)
        pts = [f"{xp(lo):.1f},{yp(0):.1f}"]
        for i, v in enumerate(sh):
            pts.append(f"{xp(edges[i]):.1f},{yp(v):.1f} {xp(edges[i + 1]):.1f},{yp(v):.1f}")
        pts.append(f"{xp(hi):.1f},{yp(0):.1f}")
        out.append(
            f'<polygon class="series" points="{" ".join(pts)}" fill="{color}" fill-opacity="0.15" stroke="{color}" '
            'stroke-width="1.5"/>'
        )
        if s.mean is not None and math.isfinite(s.mean) and lo <= s.mean <= hi:
            mx = xp(s.mean)
            out.append(
                f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + plot_h}" stroke="{color}" '
                f'stroke-dasharray="4,3"><title>{esc(s.label)} mean {esc(_fmt(s.mean))}</title></line>'
            )
    for i in range(len(edges) - 1):
        x1, x2 = xp(edges[i]), xp(edges[i + 1])
        cells = "; ".join(f"{s.label} {sh[i]:.1%} ({int(s.counts[i])})" for s, sh in zip(series, shares, strict=True))
        hover = f"{_fmt(edges[i])} to {_fmt(edges[i + 1])} {unit}: {cells}".replace("  ", " ")
        out.append(
            f'<rect x="{x1:.1f}" y="{top}" width="{max(0.5, x2 - x1):.1f}" height="{plot_h}" fill="#ffffff" '
            f'fill-opacity="0"><title>{esc(hover)}</title></rect>'
        )
    axis_y = top + plot_h
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#9aa5b1"/>')
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        v = lo + frac * (hi - lo)
        out.append(
            f'<text x="{left + frac * plot_w:.1f}" y="{axis_y + 13}" {_SMALL} text-anchor="{anchor}">'
            f"{esc(_fmt(v))}</text>"
        )
    caption = " · ".join(p for p in (unit, note) if p)
    if caption:
        out.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" {_SMALL} text-anchor="middle">'
            f"{esc(_clip(caption, 90))}</text>"
        )
    out.append("</svg>")
    return svg_markup(out)


def category_bars(
    title: str, categories: Sequence[str], series: Sequence[CountSeries], *, width: int = 440, height: int = 190
) -> Markup:
    """Paired bars: each sample's share of every category, side by side."""
    series = [s for s in series if sum(s.counts)]
    if not categories or not series or any(len(s.counts) != len(categories) for s in series):
        return Markup("<p class='muted'>{}: no values</p>").format(title)
    left, right, top, bottom = 44, 12, 40, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    shares = [_shares(s.counts) for s in series]
    peak = max(max(sh) for sh in shares) or 1.0
    group_w = plot_w / len(categories)
    bar_w = max(1.0, (group_w - 6) / len(series))
    out = [_svg_open(title, width, height, "chart categories"), _legend(series, left, 32)]
    for frac in (0.0, 0.5, 1.0):
        gy = top + plot_h * (1 - frac)
        out.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{left + plot_w}" y2="{gy:.1f}" stroke="{_GRID}"/>')
        out.append(f'<text x="{left - 4}" y="{gy + 3:.1f}" {_SMALL} text-anchor="end">{frac * peak:.0%}</text>')
    max_chars = max(3, int(group_w / 6))
    for c, category in enumerate(categories):
        gx = left + c * group_w + 3
        for k, (s, sh) in enumerate(zip(series, shares, strict=True)):
            h = plot_h * sh[c] / peak
            hover = f"{category}: {s.label} {sh[c]:.1%} ({int(s.counts[c])})"
            out.append(
                f'<rect x="{gx + k * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{max(1.0, bar_w - 1):.1f}" '
                f'height="{h:.1f}" fill="{esc(s.color)}" fill-opacity="0.7"><title>{esc(hover)}</title></rect>'
            )
        out.append(
            f'<text x="{left + (c + 0.5) * group_w:.1f}" y="{top + plot_h + 13}" {_SMALL} text-anchor="middle">'
            f"{esc(_clip(category, max_chars))}</text>"
        )
    out.append("</svg>")
    return svg_markup(out)
