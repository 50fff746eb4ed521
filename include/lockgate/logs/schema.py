"""The inference-log table of docs/design.md, with the column names mapped by the policy.

`log_table()` describes the user's table under our contract names (SQLAlchemy
column keys), whatever the physical names are; `create_schema()` creates the
default table and its index when lockgate owns it. DDL is idempotent.

`migrate_sample_index()` is optional (PostgreSQL only): it adds the stored column
`lockgate_sample_hash = hashtextextended(request_id, seed)` and an index on
(model_name, lockgate_sample_hash, ts), so that a sample is read in hash order and
the scan stops after n rows of the window instead of ranking every row of it.
`sample_hash_seed()` tells the sampler whether a table has that column, and its seed.
"""

from __future__ import annotations

import logging
import re
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine

from lockgate.errors import ConfigError
from lockgate.policy.schema import LogsConfig

log = logging.getLogger(__name__)

SAMPLE_HASH_COLUMN = "lockgate_sample_hash"

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
    # Optional in the contract: a table without it is read through the metadata key instead, so no
    # query selects it blindly (lockgate.logs.aggregates asks the database whether it is there).
    columns.append(sa.Column(cfg.columns.cached_tokens, sa.Integer(), key="cached_tokens", nullable=True))
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


# --------------------------------------------------------------------------- optional sample index

# pg_get_expr() renders the seed as `(0)::bigint`, `('-5'::integer)::bigint` or `'12345678901'::bigint`.
_HASH_EXPR = re.compile(r"hashtextextended\((?P<column>\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_]*), (?P<seed>.+)\)")
_SEED_LITERAL = re.compile(r"\(*'?(?P<seed>-?\d+)'?(?:::integer)?\)*(?:::bigint)?")
_seed_cache: weakref.WeakKeyDictionary[Engine, dict[str, int | None]] = weakref.WeakKeyDictionary()


def _parse_hash_seed(expression: str, request_id_column: str) -> int | None:
    """The seed of `hashtextextended(<request_id column>, <seed>)`, or None for any other expression."""
    match = _HASH_EXPR.fullmatch(expression.strip())
    if match is None or match["column"].strip('"') != request_id_column:
        return None
    seed = _SEED_LITERAL.fullmatch(match["seed"].strip())
    return int(seed["seed"]) if seed else None


def sample_hash_seed(engine: Engine, config: LogsConfig | None = None) -> int | None:
    """The seed of the table's `lockgate_sample_hash` column; None if it has none (or is not on PostgreSQL).

    Read from the catalog once per engine and table, then cached: the column is added by a
    migration, not while jobs run (`forget_sample_hash` drops the cache after one).
    """
    cfg = config or LogsConfig()
    if engine.dialect.name != "postgresql":
        return None
    cached = _seed_cache.setdefault(engine, {})
    if cfg.table in cached:
        return cached[cfg.table]
    with engine.connect() as conn:
        expression = conn.execute(
            sa.text(
                "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
                "JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attrelid = to_regclass(:table) AND a.attname = :column "
                "AND a.attgenerated = 's' AND NOT a.attisdropped"
            ),
            {"table": cfg.table, "column": SAMPLE_HASH_COLUMN},
        ).scalar()
    seed = _parse_hash_seed(expression, cfg.columns.request_id) if expression else None
    if expression and seed is None:
        log.warning(
            "%s.%s is not hashtextextended(%s, <integer seed>) (%s): sampling ranks every row of the window",
            cfg.table,
            SAMPLE_HASH_COLUMN,
            cfg.columns.request_id,
            expression,
        )
    cached[cfg.table] = seed
    return seed


def forget_sample_hash(engine: Engine) -> None:
    """Drop what `sample_hash_seed` cached for this engine (after a migration)."""
    _seed_cache.pop(engine, None)


def sample_index_sql(engine: Engine, seed: int, config: LogsConfig | None = None) -> list[str]:
    """The migration's statements: the stored hash column, the index, VACUUM (ANALYZE).

    The column's rewrite of the table clears its visibility map; until a vacuum sets it again,
    PostgreSQL cannot count a window from the index alone and reads the whole table instead.
    """
    cfg = config or LogsConfig()
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"the sample seed must be an integer, got {seed!r}", key="statistics.seed")
    quote = engine.dialect.identifier_preparer.quote
    schema, _, name = cfg.table.rpartition(".")
    table = f"{quote(schema)}.{quote(name)}" if schema else quote(name)
    cols = cfg.columns
    index = quote(f"ix_{name}_model_sample_hash_ts"[:63])
    return [
        f"ALTER TABLE {table} ADD COLUMN {SAMPLE_HASH_COLUMN} bigint "
        f"GENERATED ALWAYS AS (hashtextextended({quote(cols.request_id)}, {seed})) STORED",
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} "
        f"ON {table} ({quote(cols.model_name)}, {SAMPLE_HASH_COLUMN}, {quote(cols.ts)})",
        f"VACUUM (ANALYZE) {table}",
    ]


def migrate_sample_index(engine: Engine, seed: int, config: LogsConfig | None = None) -> list[str]:
    """Add the stored sample-hash column and its index (PostgreSQL); return the statements run.

    Idempotent for the same seed. Adding the column rewrites the table under an exclusive lock
    (writers wait); the index is built CONCURRENTLY. A column with another seed is an error
    naming it: the sampler only uses the column when the policy's seed is the column's.
    """
    cfg = config or LogsConfig()
    if engine.dialect.name != "postgresql":
        raise ConfigError(
            f"the sample index needs PostgreSQL (hashtextextended), this log store is {engine.dialect.name}",
            key="LOCKGATE_LOGS_DB_URL",
        )
    alter, create_index, vacuum = sample_index_sql(engine, seed, cfg)
    forget_sample_hash(engine)
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": cfg.table}).scalar() is None:
            raise ConfigError(f"table {cfg.table!r} does not exist", key="logs.table")
        has_column = conn.execute(
            sa.text(
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:t) AND attname = :c AND NOT attisdropped"
            ),
            {"t": cfg.table, "c": SAMPLE_HASH_COLUMN},
        ).scalar()
    ran = []
    if has_column:
        existing = sample_hash_seed(engine, cfg)
        if existing != seed:
            raise ConfigError(
                f"{cfg.table}.{SAMPLE_HASH_COLUMN} exists with seed {existing}, not {seed}; drop it first "
                f"(ALTER TABLE {cfg.table} DROP COLUMN {SAMPLE_HASH_COLUMN}) or sample with seed {existing}",
                key="statistics.seed",
            )
    else:
        with engine.begin() as conn:
            conn.execute(sa.text(alter))
        ran.append(alter)
    # CREATE INDEX CONCURRENTLY and VACUUM cannot run inside a transaction block.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(create_index))
        conn.execute(sa.text(vacuum))
    ran += [create_index, vacuum]
    forget_sample_hash(engine)
    return ran


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
