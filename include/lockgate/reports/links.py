"""Addresses of reports as people open them: URLs of the Lockgate plugin's pages, not file paths.

Registry tags and pages carry these, so a person reading MLflow on another machine can open them.
The base is `LOCKGATE_PUBLIC_URL` (how people reach Airflow's API server, e.g. behind a proxy),
else the local stack's `LOCKGATE_AIRFLOW_URL`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from lockgate.settings import Settings, get_settings

PLUGIN_PREFIX = "/lockgate"


def report_url(path: str | Path, settings: Settings | None = None) -> str | None:
    """The plugin URL that serves the report file at `path`; None for a file outside the reports folder."""
    s = settings or get_settings()
    root = s.reports_dir.resolve()
    try:
        rel = Path(path).resolve().relative_to(root)
    except ValueError:
        return None
    return f"{s.public_url.rstrip('/')}{PLUGIN_PREFIX}/reports/" + "/".join(quote(part) for part in rel.parts)


def report_path(url: str, settings: Settings | None = None) -> Path | None:
    """The file a `report_url` points at (the inverse), or None for any other address."""
    s = settings or get_settings()
    marker = f"{PLUGIN_PREFIX}/reports/"
    route = urlsplit(url).path
    if marker not in route:
        return None
    rel = unquote(route.split(marker, 1)[1])
    root = s.reports_dir.resolve()
    target = (root / rel).resolve()
    return target if target.is_relative_to(root) else None
