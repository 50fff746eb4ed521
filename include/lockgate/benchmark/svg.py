"""Moved to `lockgate.reports.charts`, where every page's charts live; kept importable for older callers."""

from lockgate.reports.charts import (
    CHALLENGER_COLOR,
    CHAMPION_COLOR,
    PALETTE,
    BoxGroup,
    Series,
    box_plot,
    histogram,
    line_chart,
)

__all__ = [
    "CHALLENGER_COLOR",
    "CHAMPION_COLOR",
    "PALETTE",
    "BoxGroup",
    "Series",
    "box_plot",
    "histogram",
    "line_chart",
]
