"""The inference-log table of DESIGN.md, with the column names mapped by the policy.

`log_table()` describes the user's table under our contract names (SQLAlchemy
column keys), whatever the physical names are; `create_schema()` creates the
default table and its index when lockgate owns it. DDL is idempotent.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine

from lockgate.settings import LogsConfig

CONTRACT_COLUMNS: tuple[str, ...] = (
    "request_id",
    "ts",
    "model_name",
    "model_version",
    "prompt",
    "response",
    "context",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "status",
    "feedback",
    "metadata",
)

TEXT_COLUMNS = ("prompt", "response", "context")


def _types() -> dict[str, Any]:
    return {
        "request_id": sa.Text(),
        "ts": sa.DateTime(timezone=True),
        "model_name": sa.Text(),
        "model_version": sa.Text(),
        "prompt": sa.Text(),
        "response": sa.Text(),
        "context": sa.Text(),
        "latency_ms": sa.Float(),
        "ttft_ms": sa.Float(),
        "prompt_tokens": sa.Integer(),
        "completion_tokens": sa.Integer(),
        "status": sa.Text(),
        "feedback": sa.SmallInteger(),
        # Text on SQLite so that a malformed document can exist (and be quarantined).
        "metadata": sa.Text().with_variant(JSONB(), "postgresql"),
    }


def log_table(config: LogsConfig | None = None, metadata: sa.MetaData | None = None) -> sa.Table:
    cfg = config or LogsConfig()
    md = metadata or sa.MetaData()
    schema, _, name = cfg.table.rpartition(".")
    types = _types()
    mapping = cfg.columns.model_dump()
    columns = [
        sa.Column(
            mapping[key],
            types[key],
            key=key,
            primary_key=key == "request_id",
            nullable=key not in ("request_id",),
        )
        for key in CONTRACT_COLUMNS
    ]
    table = sa.Table(name, md, *columns, schema=schema or None)
    # request_id in the key makes the index covering: the sampling rank md5(seed || request_id)
    # is computed from an index-only scan of the window, never from the wide rows.
    sa.Index(f"ix_{name}_model_ts_id", table.c.model_name, table.c.ts, table.c.request_id)
    return table


def create_schema(engine: Engine, config: LogsConfig | None = None) -> sa.Table:
    """Create the log table and its (model_name, ts, request_id) index if they do not exist."""
    table = log_table(config)
    table.metadata.create_all(engine, checkfirst=True)
    return table
