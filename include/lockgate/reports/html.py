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
from collections.abc import Collection, Sequence
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
]


def esc(value: Any) -> Markup:
    """For the chart functions, which build SVG as text: every label they take goes through it."""
    if value is None:
        return Markup('<span class="muted">–</span>')
    return escape(value)


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


# --------------------------------------------------------------------------- string builders
# Kept while the pages move to templates one by one; removed once none uses them. Each escapes what it
# interpolates (esc), which is why their Markup(...) calls are allowed (S704).


def badge(status: str) -> Markup:
    return Markup(f'<span class="badge {badge_class(status)}">{esc(status)}</span>')  # noqa: S704


def link(href: str, text: Any) -> Markup:
    target = safe_href(href)
    return Markup(f'<a href="{esc(target)}">{esc(text)}</a>') if target else esc(text)  # noqa: S704


def table(headers: Sequence[str], rows: Any, numeric: Collection[int] = ()) -> Markup:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            content = c if isinstance(c, Markup) else esc(fmt(c) if isinstance(c, float) else c)
            cells.append(f"<td{cls}>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")  # noqa: S704


def key_values(pairs: Any) -> Markup:
    rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{v if isinstance(v, Markup) else esc(fmt(v))}</td></tr>" for k, v in pairs
    )
    return Markup(f'<table class="kv"><tbody>{rows}</tbody></table>')  # noqa: S704


def section(title: str, *parts: Any) -> Markup:
    inner = "".join(p if isinstance(p, Markup) else f"<p>{esc(p)}</p>" for p in parts)
    return Markup(f"<section><h2>{esc(title)}</h2>{inner}</section>")  # noqa: S704


def page(title: str, subtitle: str, *sections: Markup, generated_at: Any = None) -> str:
    from lockgate.reports.templating import render

    return render(
        "legacy.html",
        title=title,
        subtitle=subtitle,
        body=Markup("".join(sections)),  # noqa: S704
        generated_at=generated_at,
    )
