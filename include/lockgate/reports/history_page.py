"""The history page of one model: its evidence over a period as time series, decisions and alias moves marked.

A pure function of `HistoryData` (`lockgate.reports.history.history_series`): the plugin reads the
state database and hands the data here. Every chart is inline SVG with the numbers in a table
under it, so the page needs neither JavaScript nor the network; every text from the database
(model names, versions, run keys, column names, reasons) is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from lockgate.reports import html as h
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
from lockgate.reports.timeseries_svg import TsMarker, TsPoint, TsSeries, fmt_value, time_series_chart

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
    return f" [{fmt_value(p.ci_low)}, {fmt_value(p.ci_high)}]{level}"


def _point_title(spec: ChartSpec, p: Point, note: str = "") -> str:
    who = p.role if p.version is None else f"{p.role} {p.version}"
    n = f" · n={p.n}" if p.n is not None else ""
    trust = " · not evidence (judge not calibrated)" if not p.trusted else ""
    extra = f" · {note}" if note else ""
    return f"{who} · {_when(p.at)} · {fmt_value(p.value)} {spec.unit}{_interval(p)}{n} · run {p.run_key}{trust}{extra}"


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


def _numbers_table(spec: ChartSpec, points: Sequence[Point]) -> h.Markup:
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
    return h.table(headers, rows, numeric=(3, 4, 5, 7))


def _drift_table(runs: Sequence[EvidenceRun], points: Sequence[Point]) -> h.Markup:
    share = {p.run_key: p.value for p in points if p.role == "model"}
    rows = []
    for r in runs:
        if r.kind != "drift":
            continue
        if r.drifted_columns is None:
            columns = h.esc(None)
        else:
            columns = h.Markup(", ".join(f"<code>{h.esc(c)}</code>" for c in r.drifted_columns) or "none")
        window = f"{_when(r.window_start)} → {_when(r.window_end)}" if r.window_start and r.window_end else None
        rows.append([_when(r.at), h.badge(r.status), share.get(r.run_key), columns, window, r.run_key, r.message])
    return h.table(["time", "status", "drift share", "drifted columns", "current window", "run", "note"], rows, (2,))


def _details(summary: str, body: h.Markup) -> h.Markup:
    # <details> opens without JavaScript; the table keeps the chart's numbers readable as text.
    return h.Markup(f"<details><summary>{h.esc(summary)}</summary>{body}</details>")


def _chart_section(
    spec: ChartSpec, data: HistoryData, marks: Sequence[TsMarker], domain: tuple[datetime, datetime]
) -> h.Markup:
    points = data.points.get((spec.kind, spec.metric), ())
    parts: list[h.Markup] = []
    if spec.note:
        parts.append(h.Markup(f"<p class='muted'>{h.esc(spec.note)}</p>"))
    if any(not p.trusted for p in points):
        parts.append(
            h.Markup(
                "<p class='muted'>Open circles: scores of a judge that failed calibration (or a rubric the "
                "calibration set has no labelled item for). They are not evidence and no gate reads them.</p>"
            )
        )
    if points:
        notes = {
            r.run_key: "drifted: " + (", ".join(r.drifted_columns) or "none")
            for r in data.runs
            if r.kind == spec.kind and r.drifted_columns is not None
        }
        parts.append(time_series_chart(spec.title, spec.unit, _series(spec, points, notes), marks, *domain))
    else:
        parts.append(h.Markup(f"<p>No {h.esc(spec.kind)} evidence of this metric in the last {data.days} days.</p>"))
    if spec.kind == "drift":
        drift_runs = [r for r in data.runs if r.kind == "drift"]
        if drift_runs:
            table = _drift_table(drift_runs, points)
            parts.append(_details(f"runs and drifted columns ({len(drift_runs)} runs)", table))
    elif points:
        parts.append(_details(f"the numbers ({len(points)} points)", _numbers_table(spec, points)))
    return h.Markup(f"<section id='{h.esc(spec.key)}'><h2>{h.esc(spec.title)}</h2>{''.join(parts)}</section>")


def _events_section(data: HistoryData, report_href: Callable[[str], str] | None) -> h.Markup:
    events: list[tuple[datetime, list[object]]] = []
    for d in data.decisions:
        href = report_href(d.report_path) if report_href and d.report_path else ""
        page = h.link(href, "decision page") if href else None
        repeats = f"{d.repeats} times until {_when(d.last_at)}" if d.repeats > 1 else "once"
        versions = f"champion {d.champion or '-'}, challenger {d.challenger or '-'}"
        events.append(
            (d.at, [_when(d.at), "decision", h.badge(d.action), versions, repeats, "; ".join(d.reasons[:3]), page])
        )
    for m in data.alias_moves:
        marked = " (marked on the charts)" if m.alias == MARKED_ALIAS else ""
        events.append((m.at, [_when(m.at), "alias move", _move_label(m) + marked, m.actor, None, m.message, None]))
    events.sort(key=lambda e: e[0])
    body = (
        h.table(["time", "event", "what", "versions / by", "repeated", "why", "report"], [e[1] for e in events])
        if events
        else h.Markup(f"<p>No decisions and no alias moves in the last {data.days} days.</p>")
    )
    return h.section("Decisions and alias moves", body)


def _legend() -> h.Markup:
    def swatch(color: str, text: str, dashed: bool) -> str:
        style = "dashed" if dashed else "solid"
        return (
            f"<span style='display:inline-block;width:0;height:14px;border-left:2px {style} {color};"
            f"margin:0 6px -2px 12px'></span>{h.esc(text)}"
        )

    items = [swatch(c, f"decision: {a}", True) for a, c in DECISION_COLORS.items()]
    items.append(swatch(ALIAS_COLOR, f"{MARKED_ALIAS} alias moved", False))
    roles = "".join(
        f"<span style='color:{c};font-weight:600;margin-left:12px'>● {h.esc(r)}</span>"
        for r, c in ROLE_COLORS.items()
        if r != "baseline"
    )
    return h.Markup(f"<p class='muted'>Markers:{''.join(items)}</p><p class='muted'>Series:{roles}</p>")


def _period_links(data: HistoryData, period_href: Callable[[int], str] | None) -> h.Markup:
    links = []
    for days in PERIOD_DAYS:
        text = f"last {days} days"
        if days == data.days:
            links.append(f"<strong>{h.esc(text)}</strong>")
        elif period_href is not None:
            links.append(str(h.link(period_href(days), text)))
    return h.Markup(f"<p>Period: {' · '.join(links)}</p>")


def render_history_page(
    data: HistoryData,
    *,
    period_href: Callable[[int], str] | None = None,
    report_href: Callable[[str], str] | None = None,
    generated_at: datetime | None = None,
) -> str:
    """The whole page. `period_href(days)`: the URL of the same page for another period;
    `report_href(path)`: the URL of a decision page recorded at `path` (empty: no link)."""
    title = f"History of {data.model_name}"
    subtitle = f"last {data.days} days: {_when(data.since)} → {_when(data.until)}"
    intro = h.section(
        "Period",
        _period_links(data, period_href),
        h.Markup(
            "<p class='muted'>Each point is one run's estimate, placed at the time the run created its evidence; "
            "whiskers are its confidence interval; a line joins the points of one version in one role (a new "
            "label where the version changes). Markers: the decisions (dry runs and no_op decisions left out; "
            "an unbroken series of equal decisions, like a hold every 30 minutes, is marked once) and the moves "
            "of the champion alias. Hover a point or a marker for its details; the numbers are in the table "
            "under each chart.</p>"
        ),
        _legend(),
    )
    if not data.known_model:
        body = h.section(
            "Unknown model",
            f"lockgate has recorded no evidence, no decision and no alias move of a model named "
            f"{data.model_name!r}. Check the name: the Lockgate index links every model it knows.",
        )
        return h.page(title, "unknown model", body, generated_at=generated_at)
    if data.empty:
        body = h.section(
            "No evidence",
            f"No evidence in the last {data.days} days for {data.model_name}: no evidence run, no decision and no "
            "alias move. Choose a longer period, or run the lockgate DAGs.",
        )
        return h.page(title, subtitle, intro, body, generated_at=generated_at)
    marks = markers(data)
    domain = _time_domain(data)
    sections = [_chart_section(spec, data, marks, domain) for spec in charts_for(data)]
    return h.page(title, subtitle, intro, *sections, _events_section(data, report_href), generated_at=generated_at)
