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

from lockgate.errors import ConfigError
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


# (database URL, table, mapping) already checked in this process: the inspection runs once.
_CHECKED: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()


def check_log_table(engine: Engine, config: LogsConfig | None = None) -> None:
    """Before any query: the table exists and has every column the mapping names.

    Raises `ConfigError` naming `logs.table` or `logs.columns.<contract name>`, so a
    mapping that names a missing column is one line, not a failed query.
    """
    from lockgate.logs.db import safe_url

    cfg = config or LogsConfig()
    mapping = cfg.columns.model_dump()
    url = engine.url.render_as_string(hide_password=False)
    key = (url, cfg.table, tuple(sorted(mapping.items())))
    if key in _CHECKED:
        return
    schema, _, name = cfg.table.rpartition(".")
    inspector = sa.inspect(engine)
    if not inspector.has_table(name, schema=schema or None):
        raise ConfigError(f"table {cfg.table!r} does not exist in {safe_url(url)}", key="logs.table")
    present = {c["name"] for c in inspector.get_columns(name, schema=schema or None)}
    for contract in CONTRACT_COLUMNS:
        if mapping[contract] not in present:
            raise ConfigError(
                f"column {mapping[contract]!r} (the contract's {contract}) is not in table {cfg.table!r}; "
                f"its columns: {sorted(present)}",
                key=f"logs.columns.{contract}",
            )
    _CHECKED.add(key)


def checked_log_table(engine: Engine, config: LogsConfig | None = None) -> sa.Table:
    """`log_table(config)`, once `check_log_table` has found every mapped column in the database."""
    check_log_table(engine, config)
    return log_table(config)
