"""Inline SVG time series for the history page: points with interval whiskers, event markers.

Offline and readable without JavaScript: no script, no CDN; every point and marker carries a
`<title>` (the browser shows it on hover) and every label goes through `esc()`. Time is UTC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lockgate.reports.charts import fmt_number
from lockgate.reports.html import Markup, esc, svg_markup

_FONT = 'font-family="system-ui,sans-serif" font-size="11"'
_GRID = "#e4e7eb"
_MARKER_ROWS = 3  # marker labels are staggered over this many rows so that close markers overlap less
_MARKER_LABEL_CHARS = 22

# Steps the time axis may use, shortest first (seconds).
_TIME_STEPS: tuple[int, ...] = (
    60,
    2 * 60,
    5 * 60,
    10 * 60,
    15 * 60,
    30 * 60,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    30 * 86400,
)


@dataclass(frozen=True)
class TsPoint:
    at: datetime
    value: float
    title: str
    """The hover text: what, when, value with its interval, version, run."""
    low: float | None = None
    high: float | None = None
    group: str | None = None
    """Consecutive points of one group are joined by a line; a new group (version) starts a new line."""


@dataclass(frozen=True)
class TsSeries:
    label: str
    color: str
    points: Sequence[TsPoint]
    hollow: bool = False
    """Open circles: values shown for reference that are not evidence (an uncalibrated judge)."""


@dataclass(frozen=True)
class TsMarker:
    at: datetime
    label: str
    color: str
    title: str
    dashed: bool = False


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """A tick value with as many decimals as the step between ticks needs (0.05, 0.10, 0.15; 70, 80, 90)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value)
    if step == 0 or not math.isfinite(step):
        return fmt_number(value)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    scaled = step * 10**decimals
    if abs(scaled - round(scaled)) > 1e-6:  # a step of 2.5 or 0.25 needs one more
        decimals += 1
    return f"{value:,.{decimals}f}"


def value_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    n = int(round((last - first) / step))
    return [round(first + i * step, 12) for i in range(n + 1)]


def time_ticks(start: datetime, end: datetime, max_ticks: int = 6) -> tuple[list[datetime], str]:
    """Tick times aligned to round UTC steps within [start, end], and the strftime format to show them."""
    span = max((end - start).total_seconds(), 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= max_ticks), _TIME_STEPS[-1])
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = math.ceil((start - epoch).total_seconds() / step) * step
    ticks = []
    t = epoch + timedelta(seconds=first)
    while t <= end:
        ticks.append(t)
        t += timedelta(seconds=step)
    return ticks, ("%m-%d %H:%M" if step < 86400 else "%Y-%m-%d")


def time_series_chart(
    title: str,
    y_label: str,
    series: Sequence[TsSeries],
    markers: Sequence[TsMarker],
    start: datetime,
    end: datetime,
    *,
    width: int = 900,
    plot_height: int = 190,
) -> Markup:
    """Points over time (with whiskers where they have an interval), joined per group, and vertical markers.

    `start`/`end` fix the time axis, so that the charts of one page line up.
    """
    if end <= start:
        start, end = start - timedelta(hours=1), start + timedelta(hours=1)
    left, right, bottom = 72, 190, 44
    top = 26 + 13 * _MARKER_ROWS
    height = top + plot_height + bottom
    plot_w = width - left - right
    values = [
        v for s in series for p in s.points for v in (p.value, p.low, p.high) if v is not None and math.isfinite(v)
    ]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if low >= 0 and low <= 0.5 * high:
        low = 0.0  # a non-negative quantity near zero is read against zero
    ticks = value_ticks(low, high)
    y_lo, y_hi = ticks[0], ticks[-1]
    span_s = (end - start).total_seconds()

    def xp(t: datetime) -> float:
        return left + plot_w * (t - start).total_seconds() / span_s

    def yp(v: float) -> float:
        return top + plot_height * (1 - (v - y_lo) / (y_hi - y_lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" style="max-width:100%;height:auto" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<text x="{left}" y="14" {_FONT} font-weight="600">{esc(title)}</text>',
    ]
    for v in ticks:
        parts.append(f'<line x1="{left}" y1="{yp(v):.1f}" x2="{left + plot_w}" y2="{yp(v):.1f}" stroke="{_GRID}"/>')
        tick = esc(tick_label(v, ticks))
        parts.append(f'<text x="{left - 6}" y="{yp(v) + 4:.1f}" {_FONT} text-anchor="end">{tick}</text>')
    times, time_format = time_ticks(start, end)
    axis_y = top + plot_height
    for t in times:
        x = xp(t)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="{_GRID}"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y + 15}" {_FONT} text-anchor="middle">{esc(t.strftime(time_format))}</text>'
        )
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#9aa5b1"/>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" {_FONT} text-anchor="middle">time (UTC)</text>')
    mid = top + plot_height / 2
    parts.append(
        f'<text x="14" y="{mid:.1f}" {_FONT} text-anchor="middle" transform="rotate(-90 14 {mid:.1f})">'
        f"{esc(y_label)}</text>"
    )
    for i, m in enumerate(sorted(markers, key=lambda m: m.at)):
        x = xp(m.at)
        color = esc(m.color)
        dash = ' stroke-dasharray="4,3"' if m.dashed else ""
        label = m.label if len(m.label) <= _MARKER_LABEL_CHARS else m.label[: _MARKER_LABEL_CHARS - 1] + "…"
        label_y = 28 + 13 * (i % _MARKER_ROWS)
        parts.append(
            f"<g><title>{esc(m.title)}</title>"
            f'<line x1="{x:.1f}" y1="{label_y + 2}" x2="{x:.1f}" y2="{axis_y}" stroke="{color}" '
            f'stroke-width="1.5"{dash}/>'
            f'<text x="{x + 3:.1f}" y="{label_y}" {_FONT} fill="{color}">{esc(label)}</text></g>'
        )
    for index, s in enumerate(series):
        color = esc(s.color)
        label_dy = -6 if index % 2 == 0 else 14  # the version labels of two series close together do not collide
        pts = sorted((p for p in s.points if math.isfinite(p.value)), key=lambda p: p.at)
        segments: list[list[TsPoint]] = []
        for p in pts:
            if segments and segments[-1][-1].group == p.group:
                segments[-1].append(p)
            else:
                segments.append([p])
        for seg in segments:
            if len(seg) > 1:
                path = " ".join(f"{xp(p.at):.1f},{yp(p.value):.1f}" for p in seg)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
            first = seg[0]
            if first.group:
                parts.append(
                    f'<text x="{xp(first.at) + 5:.1f}" y="{yp(first.value) + label_dy:.1f}" {_FONT} fill="{color}">'
                    f"{esc(first.group)}</text>"
                )
        for p in pts:
            x, y = xp(p.at), yp(p.value)
            whisker = ""
            if p.low is not None and p.high is not None and math.isfinite(p.low) and math.isfinite(p.high):
                y1, y2 = yp(p.low), yp(p.high)
                whisker = (
                    f'<line x1="{x:.1f}" y1="{y1:.1f}" x2="{x:.1f}" y2="{y2:.1f}" stroke="{color}"/>'
                    f'<line x1="{x - 3:.1f}" y1="{y1:.1f}" x2="{x + 3:.1f}" y2="{y1:.1f}" stroke="{color}"/>'
                    f'<line x1="{x - 3:.1f}" y1="{y2:.1f}" x2="{x + 3:.1f}" y2="{y2:.1f}" stroke="{color}"/>'
                )
            fill = "#fff" if s.hollow else color
            parts.append(
                f"<g><title>{esc(p.title)}</title>{whisker}"
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="{color}" stroke-width="1.5"/></g>'
            )
    legend_x = left + plot_w + 14
    for i, s in enumerate(series):
        ly = top + 4 + i * 16
        color = esc(s.color)
        fill = "#fff" if s.hollow else color
        parts.append(
            f'<line x1="{legend_x}" y1="{ly}" x2="{legend_x + 18}" y2="{ly}" stroke="{color}" stroke-width="1.5"/>'
            f'<circle cx="{legend_x + 9}" cy="{ly}" r="3.5" fill="{fill}" stroke="{color}" stroke-width="1.5"/>'
            f'<text x="{legend_x + 24}" y="{ly + 4}" {_FONT}>{esc(s.label)}</text>'
        )
    parts.append("</svg>")
    return svg_markup(parts)
