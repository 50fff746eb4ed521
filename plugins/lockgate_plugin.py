"""The "Lockgate" menu in the Airflow UI: an index of reports and a history page per model, behind Airflow's login.

A plugin's FastAPI app is public unless its routes depend on Airflow's user
dependency, so every route of the reports app requires `get_user` (a bearer token or the UI's
`_token` cookie). Being logged in is not enough to read a report: each one needs Airflow's
permission to read the runs of the DAG that produced it (lockgate.report_access), so the pages list
only those, and a user who may read no lockgate DAG's runs gets 403. The one exception is MLflow's
registry webhook (`/lockgate-hooks/mlflow`, see lockgate.registry.webhook_receiver): MLflow cannot
log in, so it is trusted only when signed.
Files are served only from the reports store (lockgate.reports.store): LOCKGATE_REPORTS_DIR, resolved
and checked to stay inside it, or the objects under LOCKGATE_REPORTS_URL (`s3://...`), by plain
relative keys only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote, urlencode

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from lockgate.registry.webhook_receiver import app as webhook_app
from lockgate.report_access import (
    KIND_DAGS,
    ReportAccess,
    readable_history,
    readable_reports,
    report_access,
    some_report_access,
)

if TYPE_CHECKING:
    from markupsafe import Markup

PREFIX = "/lockgate"
SERVED_SUFFIXES = {".html": "text/html; charset=utf-8", ".json": "application/json", ".svg": "image/svg+xml"}

# Any readable DAG: the listing pages filter what they show. One DAG: a single report or run.
SomeAccess = Annotated[ReportAccess, Depends(some_report_access)]
Access = Annotated[ReportAccess, Depends(report_access)]

app = FastAPI(title="Lockgate reports", dependencies=[Depends(get_user)], docs_url=None, redoc_url=None)


def _reports_dir() -> Path:
    from lockgate.settings import get_settings

    return get_settings().reports_dir.resolve()


def _href(path: str) -> str:
    """URL of a report file given its path (absolute or relative to the reports dir)."""
    root = _reports_dir()
    p = Path(path)
    try:
        rel = p.resolve().relative_to(root) if p.is_absolute() else p
    except ValueError:
        return ""
    return f"{PREFIX}/reports/" + "/".join(quote(part) for part in rel.parts)


@app.get("/", response_class=HTMLResponse)
def index(access: SomeAccess, kind: str | None = None, model: str | None = None) -> str:
    from lockgate.reports.html import Badge, Link, Links, Table
    from lockgate.reports.templating import render

    entries = readable_reports(access, kind=kind, model_name=model, limit=500)
    rows = []
    for e in entries:
        href = _href(e.path)
        rows.append(
            [
                e.created_at.strftime("%Y-%m-%d %H:%M UTC") if e.created_at else None,
                e.model_name,
                e.model_version,
                e.champion_version,
                e.kind,
                Badge(e.status),
                Link(href, e.title) if href else e.title,
                e.dag_id,
                e.run_id,
            ]
        )
    kinds = ["benchmark", "drift", "quality", "live", "decision"]
    filters = Links([Link(f"{PREFIX}/", "all")] + [Link(f"{PREFIX}/?kind={k}", k) for k in kinds])
    reports = Table(["date", "model", "version", "champion", "kind", "status", "report", "DAG", "run"], rows)
    return render(
        "plugin_index.html",
        title="Lockgate reports",
        subtitle=f"{len(entries)} reports",
        generated_at=None,
        history_links=_history_links(),
        filters=filters,
        reports=reports if rows else None,
    )


def _history_href(model: str, days: int | None = None) -> str:
    query = {"model": model} if days is None else {"model": model, "days": str(days)}
    return f"{PREFIX}/history?{urlencode(query)}"


def _watched_models() -> tuple[list[str], str | None]:
    """The models the policy watches, and why the policy could not be read (None when it could)."""
    from lockgate.errors import LockgateError
    from lockgate.policy.schema import load_policy

    try:
        return [m.name for m in load_policy().models], None
    except LockgateError as exc:
        return [], f"The policy could not be read ({exc}): only models with recorded evidence are listed."


def _history_links() -> Markup:
    from lockgate.reports.history import history_models, state_engine
    from lockgate.reports.templating import render_fragment

    watched, problem = _watched_models()
    engine = state_engine()
    try:
        models = sorted(set(watched) | set(history_models(engine)))
    finally:
        engine.dispose()
    return render_fragment("plugin_history_links.html", models=[(m, _history_href(m)) for m in models], problem=problem)


HISTORY_DEFAULT_DAYS = 30


def _message_page(title: str, subtitle: str, heading: str, text: str = "", fragment: Markup | None = None) -> str:
    """A page of one section: a sentence (an error, an empty result), or a fragment such as the list of models."""
    from lockgate.reports.templating import render

    return render(
        "plugin_message.html",
        title=title,
        subtitle=subtitle,
        generated_at=None,
        heading=heading,
        text=text,
        fragment=fragment,
    )


@app.get("/history", response_class=HTMLResponse)
def history(access: SomeAccess, model: str | None = None, days: str | None = None) -> HTMLResponse:
    """`?model=<name>&days=7|30|90`: the model's history page; without a model, the list of models."""
    from lockgate.reports.history import PERIOD_DAYS, history_series, period_start, state_engine
    from lockgate.reports.history_page import render_history_page

    allowed = ", ".join(map(str, PERIOD_DAYS))
    if days is None or days == "":
        period = HISTORY_DEFAULT_DAYS
    elif days in {str(d) for d in PERIOD_DAYS}:
        period = int(days)
    else:
        text = f"days must be one of {allowed}, not {days!r}."
        return HTMLResponse(_message_page("Lockgate history", "bad request", "Bad period", text), status_code=400)
    if model is None or not model.strip():
        page = _message_page("Lockgate history", "choose a model", "History per model", fragment=_history_links())
        return HTMLResponse(page)
    engine = state_engine()
    try:
        data = readable_history(access, history_series(engine, model, period_start(period)))
    finally:
        engine.dispose()
    if not data.known_model and model in _watched_models()[0]:
        data = replace(data, known_model=True)  # watched, nothing recorded yet: "no evidence", not "unknown"
    page = render_history_page(
        data,
        period_href=lambda d: _history_href(model, d),
        report_href=_href,
    )
    return HTMLResponse(page, status_code=200 if data.known_model else 404)


@app.get("/runs/{dag_id}/{run_id:path}", response_model=None)
def run_report(access: Access, dag_id: str, run_id: str) -> RedirectResponse | HTMLResponse:
    """Where the DAG-run view's "Lockgate report" link lands."""
    from lockgate.reports.index import find_report

    access.require_dag(dag_id)
    entry = find_report(dag_id, run_id)
    if entry is not None:
        href = _href(entry.path)
        if href:
            return RedirectResponse(href, status_code=307)
    text = f"{dag_id} run {run_id} has not written a report (yet)."
    return HTMLResponse(_message_page("Lockgate report", f"{dag_id} / {run_id}", "No report", text), status_code=404)


@app.get("/reports/{path:path}", response_model=None)
def report_file(access: Access, path: str) -> FileResponse | Response:
    from lockgate.reports.store import clean_key, reports_store

    store = reports_store()
    if store.is_local:
        root = _reports_dir()
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            raise HTTPException(status_code=404, detail="no such report")
        parts = target.relative_to(root).parts
    else:
        # An object store has no links to resolve: a plain relative key is the whole guard.
        key = clean_key(path)
        if key is None:
            raise HTTPException(status_code=404, detail="no such report")
        parts = tuple(key.split("/"))
    # `<kind>/<model>/<run>/...`: the kind's DAG guards the file. Checked before whether the file
    # exists, so that 403 and 404 do not tell someone who may not read it which runs have reports.
    if len(parts) < 2 or parts[0] not in KIND_DAGS:
        raise HTTPException(status_code=404, detail="no such report")
    access.require_kind(parts[0])
    media = SERVED_SUFFIXES.get(Path(parts[-1]).suffix.lower())
    if media is None:
        raise HTTPException(status_code=404, detail="no such report")
    if store.is_local:
        if not target.is_file():
            raise HTTPException(status_code=404, detail="no such report")
        return FileResponse(target, media_type=media)
    try:
        return Response(store.read_bytes("/".join(parts)), media_type=media)
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail="no such report") from None


@app.get("/api/reports")
def reports_json(access: SomeAccess, kind: str | None = None, model: str | None = None) -> list[dict[str, object]]:
    return [
        {**e.__dict__, "created_at": e.created_at.isoformat() if e.created_at else None, "href": _href(e.path)}
        for e in readable_reports(access, kind=kind, model_name=model, limit=500)
    ]


class LockgatePlugin(AirflowPlugin):
    name = "lockgate"
    fastapi_apps = [
        {"app": app, "url_prefix": PREFIX, "name": "Lockgate reports"},
        # MLflow's registry webhook: outside Airflow's login, trusted only when signed (see the module).
        {"app": webhook_app, "url_prefix": f"{PREFIX}-hooks", "name": "Lockgate webhooks"},
    ]
    external_views = [
        {
            "name": "Lockgate",
            "href": f"{PREFIX}/",
            "destination": "nav",
            "url_route": "lockgate",
            "nav_top_level": True,
        },
        {
            "name": "Lockgate report",
            "href": f"{PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "lockgate_run_report",
        },
    ]
