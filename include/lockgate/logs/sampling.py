"""Deterministic, bounded-memory sampling of inference logs from a time window.

The sample is "the n rows of the window with the smallest seeded hash of request_id":
the same window and seed give the same rows, whatever the physical order of the
table. The ranking happens in SQL (a top-n sort inside the database, over an
index-only scan of the covering (model_name, ts, request_id) index), so Python
only ever holds the n sampled rows, fetched in batches.

The hash is PostgreSQL's built-in `hashtextextended(text, seed)` (3x cheaper than
md5 per row); SQLite gets `lg_rank(text, seed)` from `make_engine`; any other
backend uses `md5(seed || ':' || request_id)`. Samples are deterministic per
backend, not identical across backends. Ties (equal hashes) go by request_id.

On PostgreSQL, a table migrated with `lockgate logs migrate-sample-index` stores
that hash, for one seed, in `lockgate_sample_hash`, indexed on (model_name, hash,
ts): when the sample's seed is the column's, the rows are read in hash order and
the scan stops after n rows of the window. The same rows as ranking every row,
since it is the same hash; any other seed, or a table without the column, is
ranked as above.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lockgate.errors import ConfigError
from lockgate.logs.quarantine import QuarantineResult, split_valid_rows
from lockgate.logs.redaction import Redactor
from lockgate.logs.schema import (
    CONTRACT_COLUMNS,
    SAMPLE_HASH_COLUMN,
    TEXT_COLUMNS,
    check_log_table,
    checked_log_table,
    log_table,
    sample_hash_seed,
)
from lockgate.policy.schema import LogsConfig

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FETCH_BATCH = 2000


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ConfigError("window bounds must be timezone-aware", key="window")
        if self.end <= self.start:
            raise ConfigError(f"window end {self.end} is not after start {self.start}", key="window")

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass
class LogSample:
    """Usable sampled rows plus everything a report must say about how they were drawn."""

    model_name: str
    window: Window
    seed: int
    requested: int
    versions: tuple[str, ...] | None
    window_rows: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantined: Counter[str] = field(default_factory=Counter)
    redactions: dict[str, int] = field(default_factory=dict)

    @property
    def sampled(self) -> int:
        return len(self.rows) + sum(self.quarantined.values())

    def to_frame(self) -> pd.DataFrame:
        return logs_frame(self.rows)

    def describe(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "seed": self.seed,
            "requested": self.requested,
            "window_rows": self.window_rows,
            "sampled": self.sampled,
            "kept": len(self.rows),
            "quarantined": dict(self.quarantined),
            "redactions": dict(self.redactions),
            "versions": list(self.versions) if self.versions else None,
        }


def logs_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Log rows as the jobs compare them: the contract's columns, UTC timestamps, numbers as floats."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(CONTRACT_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    for col in ("latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        # SQLite drops the offset; lockgate always writes UTC.
        return value.replace(tzinfo=UTC)
    return value  # type: ignore[no-any-return]


def _window_filter(table: sa.Table, model_name: str, window: Window, versions: Sequence[str] | None) -> list[Any]:
    conds: list[Any] = [table.c.model_name == model_name, table.c.ts >= window.start, table.c.ts < window.end]
    if versions:
        conds.append(table.c.model_version.in_(list(versions)))
    return conds


def count_window(
    engine: Engine,
    model_name: str,
    window: Window,
    versions: Sequence[str] | None = None,
    config: LogsConfig | None = None,
) -> int:
    table = checked_log_table(engine, config)
    stmt = sa.select(sa.func.count()).select_from(table).where(*_window_filter(table, model_name, window, versions))
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def sample_rank(table: sa.Table, seed: int, dialect: str) -> Any:
    """The seeded per-row hash whose n smallest values are the sample."""
    if dialect == "postgresql":
        return sa.func.hashtextextended(table.c.request_id, sa.literal(seed, sa.BigInteger))
    if dialect == "sqlite":
        return sa.func.lg_rank(table.c.request_id, seed)
    return sa.func.md5(sa.literal(f"{seed}:") + table.c.request_id)


def stored_sample_hash(engine: Engine, table: sa.Table, seed: int, config: LogsConfig | None = None) -> Any:
    """The table's stored `lockgate_sample_hash` column when it was computed with `seed`, else None."""
    column_seed = sample_hash_seed(engine, config)
    if column_seed is None:
        return None
    if column_seed != seed:
        log.info(
            "%s.%s holds seed %d, this sample uses seed %d: ranking every row of the window",
            table.fullname,
            SAMPLE_HASH_COLUMN,
            column_seed,
            seed,
        )
        return None
    return sa.column(SAMPLE_HASH_COLUMN, sa.BigInteger)


def sample_statement(
    engine: Engine,
    model_name: str,
    window: Window,
    n: int,
    seed: int = 0,
    versions: Sequence[str] | None = None,
    config: LogsConfig | None = None,
) -> sa.Select[Any]:
    """The query of `iter_sample_rows`: the contract columns of the n sampled rows, in rank order."""
    if n <= 0:
        raise ConfigError(f"sample size must be positive, got {n}", key="sample_size")
    table = log_table(config)
    conds = _window_filter(table, model_name, window, versions)
    columns = [table.c[c].label(c) for c in CONTRACT_COLUMNS]
    stored = stored_sample_hash(engine, table, seed, config)
    if stored is not None:
        # Index scan on (model_name, hash, ts) in hash order: ts is checked in the index, the heap is
        # read for the n rows kept, and the scan stops there. NULL request_ids have a NULL hash.
        return sa.select(*columns).where(*conds, stored.is_not(None)).order_by(stored, table.c.request_id).limit(n)
    rank = sample_rank(table, seed, engine.dialect.name)
    ids = (
        sa.select(table.c.request_id, rank.label("rank"))
        .where(*conds)
        .order_by(rank, table.c.request_id)
        .limit(n)
        .subquery("sampled")
    )
    # Nulls in request_id cannot be ranked or joined: they are counted apart (see sample_inference_logs).
    return sa.select(*columns).join(ids, ids.c.request_id == table.c.request_id).order_by(ids.c.rank, ids.c.request_id)


def iter_sample_rows(
    engine: Engine,
    model_name: str,
    window: Window,
    n: int,
    seed: int = 0,
    versions: Sequence[str] | None = None,
    config: LogsConfig | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream the n sampled raw rows (ordered by their rank), `FETCH_BATCH` at a time."""
    stmt = sample_statement(engine, model_name, window, n, seed, versions, config)  # checks n first
    check_log_table(engine, config)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=FETCH_BATCH).execute(stmt)
        keys = tuple(result.keys())  # once: RowMapping looks its keys up again for every row
        for values in result:
            row = dict(zip(keys, values, strict=True))
            row["ts"] = _as_utc(row["ts"])
            yield row


def sample_inference_logs(
    engine: Engine,
    model_name: str,
    window: Window,
    n: int,
    seed: int = 0,
    versions: Sequence[str] | None = None,
    config: LogsConfig | None = None,
    redactor: Redactor | None = None,
) -> LogSample:
    """Sample n rows of a model's window, quarantine contract breaches, redact text.

    Args:
        engine: the log database (`lockgate.logs.db.make_engine`).
        model_name: registered model name whose rows are sampled.
        window: half-open time window [start, end).
        n: rows to draw (fewer when the window holds fewer).
        seed: same seed and window, same rows.
        versions: restrict to these model versions.
        config: table name and column mapping.
        redactor: applied to prompt, response and context of every kept row.
    """
    cfg = config or LogsConfig()
    table = log_table(cfg)
    # One pass over the (model_name, ts, request_id) index counts the window and its NULL request_ids.
    counts = sa.select(sa.func.count(), sa.func.count() - sa.func.count(table.c.request_id)).where(
        *_window_filter(table, model_name, window, versions)
    )

    def count() -> tuple[int, int]:
        with engine.connect() as conn:
            total, null_ids = conn.execute(counts).one()
        return int(total), int(null_ids)

    def draw() -> QuarantineResult:
        return split_valid_rows(iter_sample_rows(engine, model_name, window, n, seed, versions, cfg), cfg)

    split: QuarantineResult | None
    if engine.dialect.name == "postgresql":
        # Counting reads every index entry of the window, drawing about n rows: two server backends
        # do both at once (with the stored hash, the count is the longer part).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockgate-count") as pool:
            counting = pool.submit(count)
            split = draw()
            total, null_ids = counting.result()
    else:  # an in-memory SQLite database is per thread
        total, null_ids = count()
        split = draw() if total else None
    sample = LogSample(
        model_name=model_name,
        window=window,
        seed=seed,
        requested=n,
        versions=tuple(versions) if versions else None,
        window_rows=total,
    )
    if total == 0 or split is None:
        return sample
    sample.quarantined = split.reasons
    if null_ids:
        sample.quarantined["missing_request_id"] += int(null_ids)
    if redactor is not None:
        for row in split.kept:
            for col in TEXT_COLUMNS:
                row[col] = redactor(row[col])
        sample.redactions = dict(redactor.counts)
    sample.rows = split.kept
    log.info(
        "sampled %d of %d rows for %s in %s (seed %d): %d kept, %d quarantined %s",
        sample.sampled,
        total,
        model_name,
        window,
        seed,
        len(sample.rows),
        sum(sample.quarantined.values()),
        dict(sample.quarantined),
    )
    return sample


def token_length_distribution(
    engine: Engine,
    model_name: str,
    window: Window,
    n: int = 1000,
    seed: int = 0,
    config: LogsConfig | None = None,
) -> list[int]:
    """Prompt token counts of a deterministic sample (for production-shaped benchmarks)."""
    cfg = config or LogsConfig()
    table = checked_log_table(engine, cfg)
    conds = [*_window_filter(table, model_name, window, None), table.c.prompt_tokens > 0]
    rank = stored_sample_hash(engine, table, seed, cfg)
    if rank is None:
        rank = sample_rank(table, seed, engine.dialect.name)
    stmt = sa.select(table.c.prompt_tokens).where(*conds).order_by(rank, table.c.request_id).limit(n)
    with engine.connect() as conn:
        return [int(v) for v in conn.execute(stmt).scalars() if v is not None]


def model_versions_in_window(
    engine: Engine, model_name: str, window: Window, config: LogsConfig | None = None
) -> dict[str, int]:
    """Rows per model version in the window (tells champion from canary traffic)."""
    table = checked_log_table(engine, config)
    stmt = (
        sa.select(table.c.model_version, sa.func.count())
        .where(*_window_filter(table, model_name, window, None))
        .group_by(table.c.model_version)
    )
    with engine.connect() as conn:
        return {str(v): int(c) for v, c in conn.execute(stmt).all() if v is not None}
