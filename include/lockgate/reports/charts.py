"""Inline SVG charts shared by the report pages: box plots, line charts, histograms.

Generated here so the report works offline (no JavaScript, no CDN). Every label goes
through `esc()`; numbers are formatted by this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lockgate.reports.html import Markup, esc

CHALLENGER_COLOR = "#d9480f"
CHAMPION_COLOR = "#1c7ed6"
PALETTE = ("#d9480f", "#1c7ed6", "#2b8a3e", "#7048e8", "#c2255c", "#e67700")

_FONT = 'font-family="system-ui,sans-serif" font-size="11"'


def _num(x: float) -> str:
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
        return Markup(f"<p class='muted'>{esc(title)}: no data</p>")
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
        parts.append(f'<text x="{tx:.1f}" y="{axis_y + 14}" {_FONT} text-anchor="middle">{esc(_num(t))}</text>')
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
        parts.append(f'<text x="{width - right + 6}" y="{y + 4:.1f}" {_FONT}>p50 {esc(_num(p50))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


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
        return Markup(f"<p class='muted'>{esc(title)}: no data</p>")
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
        parts.append(f'<text x="{left - 6}" y="{yp(t) + 4:.1f}" {_FONT} text-anchor="end">{esc(_num(t))}</text>')
    for x in xs:
        parts.append(
            f'<text x="{xp(x):.1f}" y="{top + plot_h + 16}" {_FONT} text-anchor="middle">{esc(_num(x))}</text>'
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
    return Markup("".join(parts))


def histogram(title: str, values: Sequence[float], unit: str, bins: int = 20, width: int = 760) -> Markup:
    """Bars of counts over equal-width bins."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Markup(f"<p class='muted'>{esc(title)}: no data</p>")
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
            f'height="{h:.1f}" fill="{CHAMPION_COLOR}" fill-opacity="0.6"><title>{esc(_num(edges[i]))}-'
            f"{esc(_num(edges[i + 1]))} {esc(unit)}: {int(c)}</title></rect>"
        )
    for frac in (0.0, 0.5, 1.0):
        v = edges[0] + frac * (edges[-1] - edges[0])
        parts.append(
            f'<text x="{left + frac * plot_w:.1f}" y="{top + plot_h + 16}" {_FONT} text-anchor="middle">'
            f"{esc(_num(float(v)))}</text>"
        )
    parts.append(f'<text x="{left - 6}" y="{top + 8}" {_FONT} text-anchor="end">{peak}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" {_FONT} text-anchor="middle">{esc(unit)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
