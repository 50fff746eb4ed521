"""The history page from plain data: one SVG per chart with data, the markers, the tables, escaping,
the empty and unknown cases, and the axis helpers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from lockgate.reports.history import CHARTS, AliasMove, DecisionMark, EvidenceRun, HistoryData, Point, charts_for
from lockgate.reports.history_page import render_history_page
from lockgate.reports.timeseries_svg import time_ticks, value_ticks

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"


def _points(kind: str, values: list[tuple[float, float]], trusted: bool = True, unit: str | None = None) -> list[Point]:
    """Champion and challenger points, one pair a day up to NOW."""
    out = []
    for i, (champion, challenger) in enumerate(values):
        at = NOW - timedelta(days=len(values) - i)
        common = {"at": at, "run_key": f"{kind}-{i}", "trusted": trusted, "unit": unit}
        out.append(Point(value=champion, role="champion", version="1", **common))
        out.append(
            Point(value=challenger, role="challenger", version="2", ci_low=challenger * 0.9,
                  ci_high=challenger * 1.1, confidence=0.95, n=200, **common)
        )  # fmt: skip
    return out


def full_history(model: str = "support-bot", column: str = "prompt_embedding") -> HistoryData:
    points: dict[tuple[str, str], tuple[Point, ...]] = {}
    for spec in CHARTS:
        if spec.kind == "drift":
            points[(spec.kind, spec.metric)] = tuple(
                Point(at=NOW - timedelta(days=3 - i), value=v, run_key=f"drift-{i}", role="model")
                for i, v in enumerate((0.05, 0.1, 0.3))
            )
        else:
            points[(spec.kind, spec.metric)] = tuple(_points(spec.kind, [(2.0, 2.1), (2.0, 2.6)]))
    points[("quality", "judge_relevance")] = tuple(_points("quality", [(3.0, 3.2)], trusted=False, unit="score 1-5"))
    runs = tuple(
        EvidenceRun(kind="drift", run_key=f"drift-{i}", at=NOW - timedelta(days=3 - i), status="ok", valid=True,
                    drifted_columns=(column,) if i == 2 else ())
        for i in range(3)
    ) + (EvidenceRun(kind="drift", run_key="drift-short", at=NOW - timedelta(hours=1), status="insufficient_data",
                     valid=False, drifted_columns=None, message="too few usable rows"),)  # fmt: skip
    decisions = (
        DecisionMark(at=NOW - timedelta(days=2), action="hold", outcome=None, champion="1", challenger="2",
                     target=None, run_key="h", reasons=("ttft_regression failed",), repeats=4,
                     last_at=NOW - timedelta(days=2) + timedelta(hours=1.5), report_path="/r/decision/h/index.html"),
        DecisionMark(at=NOW - timedelta(days=1), action="promote", outcome="moved", champion="1", challenger="2",
                     target="2", run_key="p"),
    )  # fmt: skip
    moves = (
        AliasMove(at=NOW - timedelta(days=1), alias="champion", from_version="1", to_version="2", actor="lockgate"),
        AliasMove(at=NOW - timedelta(days=1), alias="previous_champion", from_version=None, to_version="1",
                  actor="lockgate"),
    )  # fmt: skip
    return HistoryData(
        model_name=model,
        since=NOW - timedelta(days=30),
        until=NOW,
        runs=runs,
        points=points,
        decisions=decisions,
        alias_moves=moves,
    )


def test_one_svg_per_chart_with_markers_hover_titles_and_tables() -> None:
    data = full_history()
    charts = charts_for(data)
    assert [c.metric for c in charts[len(CHARTS) :]] == ["judge_relevance"]
    html = render_history_page(
        data, period_href=lambda d: f"/lockgate/history?model=support-bot&days={d}", report_href=lambda p: "/x" + p
    )
    assert html.count("<svg") == len(charts) == len(CHARTS) + 1
    for spec in charts:
        assert f"id='{spec.key}'" in html
    # Markers: the decisions (a repeated hold once) and the champion's move, on every chart.
    assert html.count(">hold 2</text>") == len(charts)
    assert html.count(">promote 2</text>") == len(charts)
    assert html.count(">champion 1→2</text>") == len(charts)
    assert "the same decision 4 times until 2026-02-27 13:30 UTC" in html
    assert "previous_champion -→1" in html and ">previous_champion -→1</text>" not in html  # table only
    # Hover text on a challenger point: version, time, value, interval, n, run.
    assert (
        "<title>challenger 2 · 2026-02-28 12:00 UTC · 2.60 ms [2.34, 2.86] (95%) · n=200 · run benchmark-1</title>"
        in html
    )
    # Champion and challenger are told apart (colour and legend), with interval whiskers.
    assert "#1c7ed6" in html and "#d9480f" in html and ">champion</text>" in html and ">challenger</text>" in html
    # Units on the axes; the drift table lists the drifted columns and an insufficient run.
    assert ">ms</text>" in html and ">share of tested columns</text>" in html and "time (UTC)" in html
    assert "run drift-2 · drifted: prompt_embedding</title>" in html and "run drift-0 · drifted: none</title>" in html
    assert "<code>prompt_embedding</code>" in html and "insufficient_data" in html and "too few usable rows" in html
    # An uncalibrated judge is shown, as not evidence.
    assert "challenger (uncalibrated)" in html and ">score 1-5</text>" in html and "no: judge not calibrated" in html
    # Period links and the decision page link.
    assert 'href="/lockgate/history?model=support-bot&amp;days=7"' in html and "<strong>last 30 days</strong>" in html
    assert 'href="/x/r/decision/h/index.html"' in html
    assert "<script" not in html  # readable without JavaScript, and none slipped in


def test_hostile_model_version_and_column_names_are_escaped() -> None:
    data = full_history(model=HOSTILE, column=HOSTILE)
    data = HistoryData(
        **{
            **data.__dict__,
            "decisions": data.decisions
            + (
                DecisionMark(
                    at=NOW,
                    action="hold",
                    outcome=None,
                    champion=HOSTILE,
                    challenger=HOSTILE,
                    target=None,
                    run_key=HOSTILE,
                    reasons=(HOSTILE,),
                ),
            ),  # fmt: skip
        }
    )
    html = render_history_page(data, period_href=lambda d: f"/lockgate/history?model={HOSTILE}&days={d}")
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_an_empty_period_says_so_instead_of_empty_charts() -> None:
    data = HistoryData(model_name="support-bot", since=NOW - timedelta(days=7), until=NOW)
    html = render_history_page(data)
    assert "No evidence in the last 7 days for support-bot" in html
    assert "<svg" not in html
    # Evidence of some kinds only: the others say which evidence is missing, with no chart.
    partial = HistoryData(
        model_name="support-bot",
        since=NOW - timedelta(days=7),
        until=NOW,
        runs=(EvidenceRun(kind="live", run_key="l", at=NOW, status="ok", valid=True),),
        points={("live", "ttft_ms_p90"): (Point(at=NOW, value=80.0, run_key="l", role="champion", version="1"),)},
    )
    html = render_history_page(partial)
    assert html.count("<svg") == 1
    assert "No benchmark evidence of this metric in the last 7 days." in html


def test_an_unknown_model_is_named_as_unknown() -> None:
    html = render_history_page(
        HistoryData(model_name="nope", since=NOW - timedelta(days=7), until=NOW, known_model=False)
    )
    assert "Unknown model" in html and "model named &#39;nope&#39;" in html and "<svg" not in html


def test_axis_ticks_cover_the_values_and_the_period() -> None:
    ticks = value_ticks(0.013, 0.052)
    assert ticks[0] <= 0.013 and ticks[-1] >= 0.052 and 3 <= len(ticks) <= 7
    assert value_ticks(5.0, 5.0)[0] < 5.0 < value_ticks(5.0, 5.0)[-1]
    times, fmt = time_ticks(NOW - timedelta(days=30), NOW)
    assert 2 <= len(times) <= 6 and fmt == "%Y-%m-%d"
    assert all(NOW - timedelta(days=30) <= t <= NOW for t in times)
    minutes, fmt = time_ticks(NOW - timedelta(minutes=20), NOW)
    assert fmt == "%m-%d %H:%M" and all(re.fullmatch(r"\d\d:\d\d", t.strftime("%H:%M")) for t in minutes)
