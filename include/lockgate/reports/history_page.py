"""The history page of one model: its evidence over a period as time series, decisions and alias moves marked.

A pure function of `HistoryData` (`lockgate.reports.history.history_series`): the plugin reads the
state database and hands the data here. Every chart is inline SVG with the numbers in a table
under it, so the page needs neither JavaScript nor the network. The functions here prepare the
charts and tables; `templates/history.html` lays them out and, being autoescaped, escapes every
text from the database (model names, versions, run keys, column names, reasons).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from lockgate.reports.charts import fmt_number
from lockgate.reports.history import (
    PERIOD_DAYS,
    AliasMove,
    ChartSpec,
    DecisionMark,
    EvidenceRun,
    HistoryData,
    Point,
    charts_for,
)
from lockgate.reports.html import Badge, CodeList, Link, Markup, Table
from lockgate.reports.templating import render
from lockgate.reports.timeseries_svg import TsMarker, TsPoint, TsSeries, time_series_chart

ROLE_COLORS = {"champion": "#1c7ed6", "challenger": "#d9480f", "baseline": "#5c940d", "model": "#0b7285"}
DECISION_COLORS = {"promote": "#2b8a3e", "await_approval": "#7048e8", "hold": "#e67700", "rollback": "#c92a2a"}
ALIAS_COLOR = "#212529"
MARKED_ALIAS = "champion"
"""Moves of this alias are drawn on every chart; the other aliases' moves are listed in the events table."""

_TIME = "%Y-%m-%d %H:%M UTC"


def _when(t: datetime | None) -> str | None:
    return t.strftime(_TIME) if t else None


def _interval(p: Point) -> str:
    if p.ci_low is None or p.ci_high is None:
        return ""
    level = f" ({p.confidence:.0%})" if p.confidence else ""
    return f" [{fmt_number(p.ci_low)}, {fmt_number(p.ci_high)}]{level}"


def _point_title(spec: ChartSpec, p: Point, note: str = "") -> str:
    who = p.role if p.version is None else f"{p.role} {p.version}"
    n = f" · n={p.n}" if p.n is not None else ""
    trust = " · not evidence (judge not calibrated)" if not p.trusted else ""
    extra = f" · {note}" if note else ""
    return f"{who} · {_when(p.at)} · {fmt_number(p.value)} {spec.unit}{_interval(p)}{n} · run {p.run_key}{trust}{extra}"


def _series(spec: ChartSpec, points: Sequence[Point], notes: Mapping[str, str] | None = None) -> list[TsSeries]:
    """`notes`: a line per run key for the hover text (a drift run's drifted columns)."""
    out = []
    for role in spec.roles:
        for trusted in (True, False):
            mine = [p for p in points if p.role == role and p.trusted == trusted]
            if not mine:
                continue
            label = "drift share" if role == "model" and spec.kind == "drift" else role
            out.append(
                TsSeries(
                    label=label if trusted else f"{label} (uncalibrated)",
                    color=ROLE_COLORS.get(role, "#495057"),
                    points=[
                        TsPoint(
                            at=p.at,
                            value=p.value,
                            title=_point_title(spec, p, (notes or {}).get(p.run_key, "")),
                            low=p.ci_low,
                            high=p.ci_high,
                            group=f"v{p.version}" if p.version else None,
                        )
                        for p in mine
                    ],
                    hollow=not trusted,
                )
            )
    return out


def _decision_label(d: DecisionMark) -> str:
    about = d.target or d.challenger
    return f"{d.action} {about}" if about else d.action


def _decision_title(d: DecisionMark) -> str:
    parts = [f"{_when(d.at)} decision: {d.action}"]
    if d.outcome:
        parts.append(f"outcome {d.outcome}")
    parts.append(f"champion {d.champion or '-'}, challenger {d.challenger or '-'}")
    if d.repeats > 1:
        parts.append(f"the same decision {d.repeats} times until {_when(d.last_at)}")
    parts.extend(d.reasons[:3])
    return " · ".join(parts)


def _move_label(m: AliasMove) -> str:
    if m.removed:
        return f"{m.alias} removed from {m.from_version}"
    return f"{m.alias} {m.from_version or '-'}→{m.to_version}"


def markers(data: HistoryData) -> list[TsMarker]:
    """The decisions and the `champion` alias moves of the period, as chart markers."""
    out = [
        TsMarker(at=d.at, label=_decision_label(d), color=DECISION_COLORS.get(d.action, "#495057"),
                 title=_decision_title(d), dashed=True)
        for d in data.decisions
    ]  # fmt: skip
    out += [
        TsMarker(
            at=m.at,
            label=_move_label(m),
            color=ALIAS_COLOR,
            title=f"{_when(m.at)} {_move_label(m)} by {m.actor}" + (f": {m.message}" if m.message else ""),
        )
        for m in data.alias_moves
        if m.alias == MARKED_ALIAS
    ]
    return out


def _time_domain(data: HistoryData) -> tuple[datetime, datetime]:
    """The span of what the period holds, padded: the charts of the page share it."""
    times = [r.at for r in data.runs] + [d.at for d in data.decisions] + [m.at for m in data.alias_moves]
    times += [d.last_at for d in data.decisions if d.last_at]
    first, last = min(times), max(times)
    # Padded so that the first and last points are not on the axes; a single moment gets an hour each side.
    pad = max((last - first) * 0.04, timedelta(minutes=1)) if last > first else timedelta(hours=1)
    return first - pad, last + pad


def _numbers_table(spec: ChartSpec, points: Sequence[Point]) -> Table:
    rows = [
        [
            _when(p.at),
            p.role,
            p.version,
            p.value,
            p.ci_low,
            p.ci_high,
            f"{p.confidence:.0%}" if p.confidence else None,
            p.n,
            p.run_key,
            *([] if spec.kind != "quality" else ["yes" if p.trusted else "no: judge not calibrated"]),
        ]
        for p in sorted(points, key=lambda p: (p.at, p.role))
    ]
    headers = ["time", "role", "version", f"value ({spec.unit})", "CI low", "CI high", "level", "n", "run"]
    if spec.kind == "quality":
        headers.append("evidence")
    return Table(headers, rows, numeric=(3, 4, 5, 7))


def _drift_table(runs: Sequence[EvidenceRun], points: Sequence[Point]) -> Table:
    share = {p.run_key: p.value for p in points if p.role == "model"}
    rows = []
    for r in runs:
        if r.kind != "drift":
            continue
        columns = None if r.drifted_columns is None else CodeList(r.drifted_columns)
        window = f"{_when(r.window_start)} → {_when(r.window_end)}" if r.window_start and r.window_end else None
        rows.append([_when(r.at), Badge(r.status), share.get(r.run_key), columns, window, r.run_key, r.message])
    return Table(["time", "status", "drift share", "drifted columns", "current window", "run", "note"], rows, (2,))


@dataclass(frozen=True)
class ChartSection:
    """One chart of the page: the chart (None: no evidence of its metric), and the numbers behind it."""

    spec: ChartSpec
    chart: Markup | None
    untrusted: bool
    table: Table | None
    table_summary: str


def chart_section(
    spec: ChartSpec, data: HistoryData, marks: Sequence[TsMarker], domain: tuple[datetime, datetime]
) -> ChartSection:
    points = data.points.get((spec.kind, spec.metric), ())
    chart = None
    if points:
        notes = {
            r.run_key: "drifted: " + (", ".join(r.drifted_columns) or "none")
            for r in data.runs
            if r.kind == spec.kind and r.drifted_columns is not None
        }
        chart = time_series_chart(spec.title, spec.unit, _series(spec, points, notes), marks, *domain)
    table, summary = None, ""
    if spec.kind == "drift":
        drift_runs = [r for r in data.runs if r.kind == "drift"]
        if drift_runs:
            table = _drift_table(drift_runs, points)
            summary = f"runs and drifted columns ({len(drift_runs)} runs)"
    elif points:
        table, summary = _numbers_table(spec, points), f"the numbers ({len(points)} points)"
    return ChartSection(spec, chart, any(not p.trusted for p in points), table, summary)


def _events_table(data: HistoryData, report_href: Callable[[str], str] | None) -> Table | None:
    events: list[tuple[datetime, list[object]]] = []
    for d in data.decisions:
        href = report_href(d.report_path) if report_href and d.report_path else ""
        page = Link(href, "decision page") if href else None
        repeats = f"{d.repeats} times until {_when(d.last_at)}" if d.repeats > 1 else "once"
        versions = f"champion {d.champion or '-'}, challenger {d.challenger or '-'}"
        events.append(
            (d.at, [_when(d.at), "decision", Badge(d.action), versions, repeats, "; ".join(d.reasons[:3]), page])
        )
    for m in data.alias_moves:
        marked = " (marked on the charts)" if m.alias == MARKED_ALIAS else ""
        events.append((m.at, [_when(m.at), "alias move", _move_label(m) + marked, m.actor, None, m.message, None]))
    if not events:
        return None
    events.sort(key=lambda e: e[0])
    return Table(["time", "event", "what", "versions / by", "repeated", "why", "report"], [e[1] for e in events])


@dataclass(frozen=True)
class PeriodLink:
    text: str
    href: str | None
    current: bool


def _period_links(data: HistoryData, period_href: Callable[[int], str] | None) -> list[PeriodLink]:
    """The periods on offer: the current one marked, the others linked where the page knows their URL."""
    out = []
    for days in PERIOD_DAYS:
        text = f"last {days} days"
        if days == data.days:
            out.append(PeriodLink(text, None, True))
        elif period_href is not None:
            out.append(PeriodLink(text, period_href(days), False))
    return out


def render_history_page(
    data: HistoryData,
    *,
    period_href: Callable[[int], str] | None = None,
    report_href: Callable[[str], str] | None = None,
    generated_at: datetime | None = None,
) -> str:
    """The whole page. `period_href(days)`: the URL of the same page for another period;
    `report_href(path)`: the URL of a decision page recorded at `path` (empty: no link)."""
    state = "unknown" if not data.known_model else "empty" if data.empty else "charts"
    sections: list[ChartSection] = []
    if state == "charts":
        marks = markers(data)
        domain = _time_domain(data)
        sections = [chart_section(spec, data, marks, domain) for spec in charts_for(data)]
    return render(
        "history.html",
        title=f"History of {data.model_name}",
        subtitle="unknown model"
        if state == "unknown"
        else f"last {data.days} days: {_when(data.since)} → {_when(data.until)}",
        generated_at=generated_at,
        state=state,
        model_name=data.model_name,
        days=data.days,
        periods=_period_links(data, period_href),
        decision_colors=DECISION_COLORS,
        alias_color=ALIAS_COLOR,
        marked_alias=MARKED_ALIAS,
        role_colors={r: c for r, c in ROLE_COLORS.items() if r != "baseline"},
        sections=sections,
        events=_events_table(data, report_href) if state == "charts" else None,
    )
