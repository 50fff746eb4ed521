"""What the page templates are given: table cells that are more than text, number formats, report folders.

Pages are Jinja2 templates (`lockgate/reports/templates/`, rendered by `lockgate.reports.templating`)
with autoescaping: logged prompts and responses, model names, versions and tag values hold hostile
text (script tags, attribute breakers), and every value handed to a template is escaped unless it is a
`markupsafe.Markup`, which only lockgate's own chart functions produce (they escape their labels
themselves). So a page builder passes plain data; where a table cell is a badge, a link or code
rather than text, it says so with the small dataclasses below and the `cell` macro lays them out.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from markupsafe import Markup, escape

from lockgate.settings import get_settings

__all__ = [
    "Badge",
    "Cell",
    "ChartCell",
    "Code",
    "CodeList",
    "Link",
    "Links",
    "Markup",
    "Strong",
    "Table",
    "TextBlock",
    "Tone",
    "badge_class",
    "cell_kind",
    "esc",
    "fmt",
    "report_dir",
    "safe_href",
    "safe_segment",
    "svg_markup",
]


esc = escape
"""For the chart functions, which build SVG as text: every label they put in it goes through `esc`."""


def svg_markup(parts: Iterable[str]) -> Markup:
    """A chart that lockgate's chart functions built, as Markup a template places unescaped.

    Only for `lockgate.reports.charts` and `lockgate.reports.timeseries_svg`: their fixed markup and
    formatted numbers, and every label through `esc`, is what makes the joined text safe.
    """
    return Markup("".join(parts))  # noqa: S704


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "NaN"
        return f"{value:.{digits}g}"
    return str(value)


def badge_class(status: str) -> str:
    """The CSS class of a status badge: the status itself, reduced to the letters the stylesheet uses."""
    return re.sub(r"[^a-z_]", "", status.lower())


_HREF_OK = re.compile(r"^(https?://|/|\.{0,2}/?[\w.-])")


def safe_href(href: str | None) -> str | None:
    """`href` where a link may point there, else None (a `javascript:` or other scheme from the data)."""
    if not href or not _HREF_OK.match(href) or href.lower().startswith("javascript:"):
        return None
    return href


class Cell:
    """A table or key-value cell that is more than text; `kind` names its branch of the `cell` macro."""

    kind: ClassVar[str]


@dataclass(frozen=True)
class Badge(Cell):
    """A coloured status pill; `tone` picks the colour where it is not the text itself (the drift verdicts)."""

    text: str
    tone: str | None = None
    kind: ClassVar[str] = "badge"

    @property
    def css_class(self) -> str:
        return badge_class(self.tone or self.text)


@dataclass(frozen=True)
class Link(Cell):
    """A link, shown as its text alone when `href` is missing or unsafe."""

    href: str | None
    text: str
    kind: ClassVar[str] = "link"


@dataclass(frozen=True)
class Links(Cell):
    """Links side by side, separated by a dot."""

    links: Sequence[Link]
    kind: ClassVar[str] = "links"


@dataclass(frozen=True)
class Code(Cell):
    text: str
    kind: ClassVar[str] = "code"


@dataclass(frozen=True)
class CodeList(Cell):
    """Names as code, comma-separated; `none` when there are none."""

    items: Sequence[str]
    kind: ClassVar[str] = "codes"


@dataclass(frozen=True)
class Strong(Cell):
    text: str
    kind: ClassVar[str] = "strong"


@dataclass(frozen=True)
class Tone(Cell):
    """Text coloured by what it says for the challenger: worse (red) or better (green)."""

    text: str
    tone: Literal["worse", "better"]
    kind: ClassVar[str] = "tone"


@dataclass(frozen=True)
class TextBlock(Cell):
    """Logged text (a prompt, a response), wrapped and cut to `limit` characters."""

    text: str
    limit: int = 600
    kind: ClassVar[str] = "textblock"

    @property
    def shown(self) -> str:
        return self.text if len(self.text) <= self.limit else self.text[: self.limit] + " […]"


@dataclass(frozen=True)
class Table:
    """A table as data: `numeric` holds the indices of the right-aligned columns."""

    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    numeric: Collection[int] = field(default_factory=tuple)


@dataclass(frozen=True)
class ChartCell:
    """One chart of a grid of charts, with an optional note under it."""

    chart: Markup
    note: str = ""


def cell_kind(value: Any) -> str:
    """Which branch of the `cell` macro shows `value`."""
    if value is None:
        return "none"
    if isinstance(value, Cell):
        return value.kind
    if isinstance(value, Markup):
        return "markup"
    if isinstance(value, float):
        return "float"
    return "text"


def safe_segment(value: str) -> str:
    """A path segment from a user-controlled value (model name, run id): no traversal."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", value).strip(".")
    return cleaned[:120] or "_"


def report_dir(kind: str, model_name: str, run_key: str, reports_dir: Path | None = None) -> Path:
    """`<reports>/<kind>/<model>/<run>/`: where one run's report and summary live."""
    root = reports_dir or get_settings().reports_dir
    path = root / safe_segment(kind) / safe_segment(model_name) / safe_segment(run_key)
    path.mkdir(parents=True, exist_ok=True)
    return path
