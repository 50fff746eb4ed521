"""The one Jinja2 environment every lockgate page is rendered with.

Autoescaping is on for every template, so a value from the data (a model name, a version, a gate,
a column, a reason, a logged prompt) is escaped wherever a template puts it, without the page
builder having to remember; only `markupsafe.Markup` passes unescaped, and only lockgate's chart
functions make it. `StrictUndefined` turns a misspelt or missing context name into an error at
render time instead of an empty cell on a page that looks complete.

The templates are package data (`lockgate/reports/templates/`, `*.html` and `*.css` in the
package-data of pyproject.toml), found through the installed package, not the source tree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from lockgate.reports.html import badge_class, cell_kind, fmt, safe_href

TEMPLATE_PACKAGE = "lockgate.reports"
TEMPLATE_FOLDER = "templates"


def stamp(when: datetime | None) -> str:
    """The "generated" time of a page header; a page without its own time shows when it was rendered."""
    return (when or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader(TEMPLATE_PACKAGE, TEMPLATE_FOLDER),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(fmt=fmt, badge_class=badge_class, safe_href=safe_href, cell_kind=cell_kind, stamp=stamp)
    return env


def render(template_name: str, **context: Any) -> str:
    """The page `template_name` (a file under lockgate/reports/templates/) filled with `context`."""
    return environment().get_template(template_name).render(**context)


def render_fragment(template_name: str, **context: Any) -> Markup:
    """A part of a page (no `base.html`) as Markup, for a caller that places it in another page."""
    # The template escaped every value it was given, so its output is safe HTML as a whole.
    return Markup(render(template_name, **context))  # noqa: S704
