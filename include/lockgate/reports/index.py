"""The reports index: one row per report (model, version, kind, date, status), in lockgate's database.

Rows are keyed by (kind, model, run key) and upserted, so rerunning a DAG run
replaces its entry instead of adding a second one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lockgate.logs.db import make_engine
from lockgate.settings import resolve_state_db_url

metadata = sa.MetaData()
reports_table = sa.Table(
    "lockgate_reports",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("run_key", sa.Text, primary_key=True),
    sa.Column("model_version", sa.Text),
    sa.Column("champion_version", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("dag_id", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class ReportEntry:
    kind: str
    model_name: str
    run_key: str
    status: str
    title: str
    path: str
    model_version: str | None = None
    champion_version: str | None = None
    dag_id: str | None = None
    run_id: str | None = None
    created_at: datetime | None = None


def _engine(engine: Engine | None) -> Engine:
    e = engine or make_engine(resolve_state_db_url())
    metadata.create_all(e, checkfirst=True)
    return e


def record_report(entry: ReportEntry, engine: Engine | None = None) -> None:
    e = _engine(engine)
    values: dict[str, Any] = {**entry.__dict__, "created_at": entry.created_at or datetime.now(UTC)}
    key = {k: values[k] for k in ("kind", "model_name", "run_key")}
    with e.begin() as conn:
        existing = conn.execute(
            sa.select(reports_table.c.kind).where(*[reports_table.c[k] == v for k, v in key.items()])
        ).first()
        if existing:
            conn.execute(
                reports_table.update().where(*[reports_table.c[k] == v for k, v in key.items()]).values(**values)
            )
        else:
            conn.execute(reports_table.insert().values(**values))


def list_reports(
    engine: Engine | None = None, kind: str | None = None, model_name: str | None = None, limit: int = 200
) -> list[ReportEntry]:
    e = _engine(engine)
    stmt = sa.select(reports_table).order_by(reports_table.c.created_at.desc()).limit(limit)
    if kind:
        stmt = stmt.where(reports_table.c.kind == kind)
    if model_name:
        stmt = stmt.where(reports_table.c.model_name == model_name)
    with e.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    out = []
    for r in rows:
        d = dict(r)
        if d["created_at"] is not None and d["created_at"].tzinfo is None:
            d["created_at"] = d["created_at"].replace(tzinfo=UTC)
        out.append(ReportEntry(**d))
    return out


def find_report(dag_id: str, run_id: str, engine: Engine | None = None) -> ReportEntry | None:
    """The report a DAG run wrote (for the run's link in the Airflow UI)."""
    e = _engine(engine)
    stmt = (
        sa.select(reports_table)
        .where(reports_table.c.dag_id == dag_id, reports_table.c.run_id == run_id)
        .order_by(reports_table.c.created_at.desc())
        .limit(1)
    )
    with e.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return ReportEntry(**dict(row)) if row else None
