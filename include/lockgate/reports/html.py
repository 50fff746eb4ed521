"""Small, dependency-free HTML building blocks. Everything from data is escaped.

Logged prompts and responses hold hostile text (script tags, attribute breakers):
`esc()` is applied to every value a page shows; only the fixed markup of this
module and `Markup` values built from it are emitted unescaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lockgate.settings import get_settings

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2933;background:#f7f8fa}
header{background:#102a43;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}
header .sub{opacity:.8;font-size:13px;margin-top:4px}
main{padding:20px 28px;max-width:1280px}
section{background:#fff;border:1px solid #d9e2ec;border-radius:8px;padding:16px 20px;margin:0 0 18px}
h2{font-size:17px;margin:0 0 10px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e4e7eb;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f0f4f8;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-size:12px;font-weight:600}
.pass,.ok,.promote,.promoted{background:#d5f5e3;color:#1e7b45}.fail,.rollback,.rolled_back,.rejected,.error{background:#fde2e1;color:#b42318}
.missing,.hold,.gates_failed,.insufficient_data,.invalid{background:#fff4ce;color:#8a6100}
.warn,.await_approval,.awaiting_approval{background:#e0ecff;color:#1d4ed8}.no_op,.evaluating{background:#eceff3;color:#52606d}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{background:#f0f4f8;padding:10px;border-radius:6px;white-space:pre-wrap;word-break:break-word}
.muted{color:#616e7c;font-size:12px}.kv td:first-child{width:260px;color:#52606d}
.text{max-width:520px;white-space:pre-wrap;word-break:break-word}
.charts{display:flex;flex-wrap:wrap;gap:12px 24px}svg.chart{max-width:100%;height:auto}
"""


class Markup(str):
    """HTML that this module built (already escaped where needed)."""


def esc(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup('<span class="muted">–</span>')
    return Markup(html.escape(str(value), quote=True))


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "NaN"
        return f"{value:.{digits}g}"
    return str(value)


def badge(status: str) -> Markup:
    css = re.sub(r"[^a-z_]", "", status.lower())
    return Markup(f'<span class="badge {css}">{esc(status)}</span>')


def link(href: str, text: Any) -> Markup:
    if not re.match(r"^(https?://|/|\.{0,2}/?[\w.-])", href) or href.lower().startswith("javascript:"):
        return esc(text)
    return Markup(f'<a href="{esc(href)}">{esc(text)}</a>')


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> Markup:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            content = cell if isinstance(cell, Markup) else esc(fmt(cell) if isinstance(cell, float) else cell)
            cells.append(f"<td{cls}>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def key_values(pairs: Iterable[tuple[str, Any]]) -> Markup:
    rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{v if isinstance(v, Markup) else esc(fmt(v))}</td></tr>" for k, v in pairs
    )
    return Markup(f'<table class="kv"><tbody>{rows}</tbody></table>')


def section(title: str, *parts: Any) -> Markup:
    inner = "".join(p if isinstance(p, Markup) else f"<p>{esc(p)}</p>" for p in parts)
    return Markup(f"<section><h2>{esc(title)}</h2>{inner}</section>")


def page(title: str, subtitle: str, *sections: Markup, generated_at: datetime | None = None) -> str:
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = "".join(sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><div class='sub'>{esc(subtitle)} · generated {esc(when)}</div></header>"
        f"<main>{body}</main></body></html>"
    )


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
