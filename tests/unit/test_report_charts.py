"""The shared inline SVG charts: forest plot, effect bars, distributions; well-formed, escaped, one mark per datum."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from lockgate.reports.charts import (
    CountSeries,
    EffectRow,
    ForestRow,
    bin_counts,
    category_bars,
    effect_chart,
    forest_plot,
    overlaid_histogram,
    shared_edges,
)

NS = {"s": "http://www.w3.org/2000/svg"}
EVIL = "<script>alert(1)</script>"


def parse(markup: str) -> ET.Element:
    """Parse as XML: a chart that is not well-formed (an unescaped `<` or `&`) fails here."""
    return ET.fromstring(str(markup))


def classes(el: ET.Element) -> set[str]:
    return set((el.get("class") or "").split())


def forest_rows(svg: ET.Element) -> list[ET.Element]:
    return [g for g in svg.iter("{http://www.w3.org/2000/svg}g") if "forest-row" in classes(g)]


ROWS = [
    ForestRow("ttft", "benchmark.ttft_ms_p50", "ratio", "pass", "lower_is_better", 1.1, 1.01, 0.97, 1.05),
    ForestRow("live_ttft", "live.ttft_ms_p90", "ratio", "fail", "lower_is_better", 1.1, 1.38, 1.31, 1.45),
    ForestRow("tps", "live.tokens_per_s", "ratio", "warn", "higher_is_better", 0.9, 0.88, 0.8, 0.95),
    ForestRow("relevance", "quality.embedding_relevance", "difference", "pass", "higher_is_better", -0.05, -0.01),
    ForestRow("errors", "live.error_rate", "difference", "missing", "lower_is_better", 0.01),
    ForestRow("input_drift", "drift.drift_share", "absolute", "pass", "lower_is_better", 0.3, 0.1),
]


def test_forest_plot_has_one_row_per_verdict_coloured_by_status_with_its_limit() -> None:
    svg = parse(forest_plot(ROWS))
    rows = forest_rows(svg)
    assert len(rows) == len(ROWS)
    assert [classes(r) - {"forest-row"} for r in rows] == [{f"status-{r.status}"} for r in ROWS]
    for row, spec in zip(rows, ROWS, strict=True):
        title = row.find("s:title", NS)
        assert title is not None and spec.label in (title.text or "") and spec.metric in (title.text or "")
        assert len([e for e in row if "limit" in classes(e)]) == 1  # every gate here has a limit
    # the colour follows the status: the estimate of the failing row is red, the passing one green
    fill = {r: row.find("s:circle", NS).get("fill") for r, row in zip(("pass", "fail"), rows[:2], strict=True)}  # type: ignore[union-attr]
    assert fill == {"pass": "#2b8a3e", "fail": "#c92a2a"}


def test_forest_plot_groups_comparisons_into_panels() -> None:
    svg = parse(forest_plot(ROWS))
    panels = [g for g in svg.iter("{http://www.w3.org/2000/svg}g") if "forest-panel" in classes(g)]
    assert [(p.get("data-comparison"), len(forest_rows(p))) for p in panels] == [
        ("ratio", 3),
        ("difference", 2),
        ("absolute", 1),
    ]


def test_forest_plot_rows_without_interval_or_value() -> None:
    rows = forest_rows(parse(forest_plot(ROWS)))
    point_only, no_value = rows[3], rows[4]
    assert point_only.find("s:circle", NS) is not None
    assert not [e for e in point_only if "interval" in classes(e)]
    assert no_value.find("s:circle", NS) is None
    texts = " ".join(t.text or "" for t in no_value.iter("{http://www.w3.org/2000/svg}text"))
    assert "no value" in texts and "missing" in texts
    with_interval = rows[1]
    assert len([e for e in with_interval if "interval" in classes(e)]) == 1


def test_forest_plot_places_interval_and_limit_on_the_row_axis() -> None:
    rows = forest_rows(parse(forest_plot(ROWS[:2])))
    interval = next(e for e in rows[1] if "interval" in classes(e))
    limit = next(e for e in rows[1] if "limit" in classes(e))
    # live_ttft: the whole interval [1.31, 1.45] lies right of (above) its limit 1.1
    assert float(interval.get("x1", 0)) > float(limit.get("x1", 0))
    interval = next(e for e in rows[0] if "interval" in classes(e))
    limit = next(e for e in rows[0] if "limit" in classes(e))
    assert float(interval.get("x2", 0)) < float(limit.get("x1", 0))


def test_forest_plot_without_rows_or_limit() -> None:
    assert "no gates" in forest_plot([])
    row = ForestRow("g", "quality.x", "absolute", "missing", "lower_is_better", None)
    svg = parse(forest_plot([row]))
    (only,) = forest_rows(svg)
    assert not [e for e in only if "limit" in classes(e)]


def test_effect_chart_marks_minimum_and_drifted_columns() -> None:
    rows = [
        EffectRow("prompt_length", 0.9, 0.1, drifted=True, significant=True, measure="wasserstein_norm"),
        EffectRow("latency_ms", 0.02, 0.1, drifted=False, significant=False),
        EffectRow("status", 0.07, 0.05, drifted=False, significant=False),
        EffectRow("prompt_valid_json", None, 0.05, drifted=False),
    ]
    svg = parse(effect_chart(rows))
    groups = [g for g in svg.iter("{http://www.w3.org/2000/svg}g") if "effect-row" in classes(g)]
    assert [classes(g) - {"effect-row"} for g in groups] == [
        {"effect-drifted"},
        {"effect-small"},
        {"effect-large"},
        {"effect-untested"},
    ]
    assert all(len([e for e in g if "min-effect" in classes(e)]) == 1 for g in groups)
    # the drifted bar reaches past its minimum's tick
    bar = groups[0].findall("s:rect", NS)[1]
    tick = next(e for e in groups[0] if "min-effect" in classes(e))
    assert float(bar.get("x", 0)) + float(bar.get("width", 0)) > float(tick.get("x1", 0))
    assert "not tested" in ET.tostring(groups[3], encoding="unicode")


def test_shared_edges_and_counts() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 500), rng.normal(3, 1, 400)
    edges = shared_edges([ref, np.r_[cur, 1e9]], bins=20, trim=0.01)
    assert len(edges) == 21 and edges[-1] < 100  # the outlier does not stretch the axis
    counts = bin_counts(np.r_[cur, 1e9, np.nan], edges)
    assert sum(counts) == 401  # the outlier is in the last bin, NaN nowhere
    assert shared_edges([[1, 2, 2, 3], [2, 3, 4]]) == [0.5, 1.5, 2.5, 3.5, 4.5]  # one bin per integer
    wide = shared_edges([np.arange(0, 100)], bins=24)  # counts: every bin holds the same number of integers
    assert {round(b - a, 9) for a, b in zip(wide, wide[1:], strict=False)} == {5.0} and wide[0] == -0.5
    assert shared_edges([[0.5, 0.6]], span=(0.0, 1.0))[0] == 0.0
    assert shared_edges([[], [float("nan")]]) == []


def test_overlaid_histogram_draws_each_series_on_shared_bins() -> None:
    edges = [0.0, 1.0, 2.0, 3.0]
    svg = parse(
        overlaid_histogram(
            "x",
            edges,
            [CountSeries("reference", [10, 5, 0], "#1c7ed6", mean=0.8), CountSeries("current", [0, 5, 10], "#d9480f")],
            "ms",
        )
    )
    polys = [p for p in svg.iter("{http://www.w3.org/2000/svg}polygon") if "series" in classes(p)]
    assert len(polys) == 2
    hovers = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any("reference 66.7% (10)" in h and "current 0.0% (0)" in h for h in hovers)
    assert "no values" in overlaid_histogram("x", edges, [CountSeries("a", [1, 2], "#000")])
    assert "no values" in overlaid_histogram("x", edges, [CountSeries("a", [0, 0, 0], "#000")])


def test_category_bars_pair_the_windows() -> None:
    svg = parse(
        category_bars(
            "status", ["ok", "error"], [CountSeries("ref", [90, 10], "#1"), CountSeries("cur", [60, 40], "#2")]
        )
    )
    bars = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.find("s:title", NS) is not None]
    assert len(bars) == 4
    assert "error: cur 40.0% (40)" in [b.find("s:title", NS).text for b in bars]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "chart",
    [
        lambda: forest_plot([ForestRow(EVIL, EVIL, EVIL, "fail", "lower_is_better", 1.0, 2.0, 1.5, 2.5, EVIL)]),
        lambda: effect_chart([EffectRow(EVIL, 0.5, 0.1, True, True, EVIL, EVIL)], title=EVIL),
        lambda: overlaid_histogram(EVIL, [0.0, 1.0], [CountSeries(EVIL, [3], "#000")], EVIL, note=EVIL),
        lambda: category_bars(EVIL, [EVIL, "ok"], [CountSeries(EVIL, [1, 2], '"><script>')]),
    ],
    ids=["forest", "effect", "histogram", "categories"],
)
def test_hostile_names_are_escaped_in_every_chart(chart) -> None:
    markup = str(chart())
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    parse(markup)  # still well-formed
