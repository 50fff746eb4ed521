"""Per-version aggregates of a window of inference logs, computed in SQL (the live evidence).

Counts and rates run over every row of the window inside the database (one GROUP BY per
query), and PostgreSQL computes exact percentiles with `percentile_cont`; Python only
receives a handful of numbers per version and prompt-length stratum, plus a bounded,
deterministic sample of numeric columns for the intervals (`sample_versions`). The refusal
pattern, a regular expression over the answer text, runs on the sampled rows only.

Rows that break the contract are counted by reason (`quarantine_counts`) and left out of
every aggregate, in the order `lockgate.logs.quarantine.quarantine_reason` checks them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lockgate.errors import ConfigError
from lockgate.logs.refusal import REFUSAL_PATTERN, postgres_refusal_pattern
from lockgate.logs.sampling import Window, sample_rank, stored_sample_hash
from lockgate.logs.schema import checked_log_table
from lockgate.policy.schema import LogsConfig

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class StratumCounts:
    """Exact counts of one version's valid requests in one prompt-length stratum."""

    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    empty: int = 0
    rated: int = 0
    negative: int = 0
    cached_tokens: float = 0.0
    cached_prompt_tokens: float = 0.0  # prompt tokens of the requests whose cached count is known


@dataclass
class VersionCounts:
    version: str
    strata: dict[int, StratumCounts] = field(default_factory=dict)

    def total(self, name: str) -> float:
        return float(sum(getattr(c, name) for c in self.strata.values()))


def physical_columns(engine: Engine, config: LogsConfig) -> set[str]:
    """The table's column names as the database has them."""
    schema, _, name = config.table.rpartition(".")
    try:
        return {str(c["name"]) for c in sa.inspect(engine).get_columns(name, schema=schema or None)}
    except sa.exc.NoSuchTableError:
        raise ConfigError(f"the log table {config.table!r} does not exist", key="logs.table") from None


@dataclass(frozen=True)
class CachedTokens:
    """Where a row's cached prompt tokens are: the optional column, or a metadata key."""

    column: str | None = None
    metadata_key: str | None = None

    @property
    def source(self) -> str | None:
        sources = [f"column {self.column}"] if self.column else []
        sources += [f"metadata key {self.metadata_key}"] if self.metadata_key else []
        return ", else ".join(sources) or None


def resolve_cached_tokens(engine: Engine, config: LogsConfig, columns: set[str]) -> CachedTokens:
    """The column where the table has it, the metadata key where the policy names one (the column wins
    on rows that fill both)."""
    column = config.columns.cached_tokens if config.columns.cached_tokens in columns else None
    key = config.cached_tokens_metadata_key if engine.dialect.name in ("postgresql", "sqlite") else None
    return CachedTokens(column=column, metadata_key=key)


def cached_tokens_expr(engine: Engine, table: sa.Table, spec: CachedTokens | None) -> Any | None:
    """Cached prompt tokens per row of `table`, or None when the table has no such information."""
    if spec is None:
        return None
    column = sa.cast(table.c.cached_tokens, sa.Float) if spec.column else None
    from_metadata = _metadata_number(engine, table, spec.metadata_key) if spec.metadata_key else None
    if column is not None and from_metadata is not None:
        return sa.func.coalesce(column, from_metadata)
    return column if column is not None else from_metadata


def _metadata_number(engine: Engine, table: sa.Table, key: str) -> Any | None:
    """A number at a dotted path of the metadata document (NULL where it is absent or not a number)."""
    parts = key.split(".")
    meta = table.c.metadata
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY, JSONB

        path = sa.literal(parts, ARRAY(sa.Text))
        # A non-numeric value is not a count: treated as unknown rather than failing the query.
        numeric = sa.func.jsonb_typeof(meta.op("#>", return_type=JSONB)(path)) == "number"
        return sa.case((numeric, sa.cast(meta.op("#>>", return_type=sa.Text)(path), sa.Float)), else_=None)
    if engine.dialect.name == "sqlite":
        value = sa.func.json_extract(meta, "$." + ".".join(parts))
        return sa.case((sa.func.json_valid(meta) == 1, sa.cast(value, sa.Float)), else_=None)
    return None


def _blank(column: Any) -> Any:
    """Empty or whitespace only. An anchored pattern stops at the first other character, where trim()
    would copy the whole text of every row."""
    return column.regexp_match(r"^\s*$")


def quarantine_reason_expr(table: sa.Table, config: LogsConfig, dialect: str) -> Any:
    """The first contract rule a row breaks, as SQL (NULL for a valid row)."""
    c = table.c
    limit = config.max_text_chars
    if dialect == "postgresql":
        # octet_length first: O(1) on a stored text, and a text has at least as many bytes as characters.
        long_text = [
            sa.and_(sa.func.octet_length(c[k]) > limit, sa.func.length(c[k]) > limit)
            for k in ("prompt", "response", "context")
        ]
    else:
        long_text = [sa.func.length(c[k]) > limit for k in ("prompt", "response", "context")]
    text_too_long = sa.or_(*long_text)
    return sa.case(
        (c.request_id.is_(None), "missing_request_id"),
        (c.ts.is_(None), "missing_ts"),
        (sa.or_(c.model_version.is_(None), c.model_version == ""), "missing_model_version"),
        (sa.or_(c.prompt.is_(None), _blank(c.prompt)), "missing_prompt"),
        (sa.or_(c.status.is_(None), c.status.not_in(list(config.statuses))), "unknown_status"),
        (sa.and_(c.status == "ok", c.response.is_(None)), "missing_response"),
        (
            sa.or_(c.latency_ms.is_(None), c.latency_ms < 0, c.latency_ms > config.max_latency_ms),
            "invalid_latency",
        ),
        (sa.and_(c.ttft_ms.is_not(None), sa.or_(c.ttft_ms < 0, c.ttft_ms > c.latency_ms)), "invalid_ttft"),
        (sa.or_(c.prompt_tokens < 0, c.completion_tokens < 0), "invalid_tokens"),
        (sa.and_(c.feedback.is_not(None), c.feedback.not_in([-1, 0, 1])), "invalid_feedback"),
        (text_too_long, "oversize_text"),
        else_=None,
    )


@contextmanager
def _session(engine: Engine) -> Iterator[Connection]:
    """A read transaction; on PostgreSQL with room to sort and hash a window's aggregates in memory
    (the server's default work_mem, 4 MB, spills a million-row percentile to disk)."""
    with engine.connect() as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SET LOCAL work_mem = '128MB'"))
        yield conn


def _window_conds(table: sa.Table, model_name: str, window: Window) -> list[Any]:
    return [table.c.model_name == model_name, table.c.ts >= window.start, table.c.ts < window.end]


def stratum_expr(column: Any, cutoffs: Sequence[float]) -> Any:
    """Index of the prompt-length stratum: 0 up to cutoffs[0], 1 up to cutoffs[1], ..."""
    if not cutoffs:
        return sa.literal(0)
    whens = [(sa.func.coalesce(column, 0) <= cut, i) for i, cut in enumerate(cutoffs)]
    return sa.case(*whens, else_=len(cutoffs))


def _refusal_match(engine: Engine, response: Any) -> Any:
    if engine.dialect.name == "postgresql":
        return response.op("~*")(postgres_refusal_pattern())
    return response.regexp_match(REFUSAL_PATTERN, flags="i")


@dataclass
class WindowCounts:
    """One pass over a window: rows by version, quarantined rows by reason, and each stratification's counts."""

    rows_by_version: dict[str, int]
    quarantined: dict[str, int]
    by_cutoffs: list[dict[str, VersionCounts]]


def stratum_count_columns(r: Any, with_cached: bool) -> list[Any]:
    """The aggregates of `StratumCounts`, over a subquery `r` with the per-row columns status, feedback,
    prompt_tokens, empty (and cached, `with_cached`), each labelled as its field."""

    def count_if(cond: Any) -> Any:
        return sa.func.sum(sa.case((cond, 1), else_=0))

    cols = [
        sa.func.count().label("requests"),
        count_if(r.status == "error").label("errors"),
        count_if(r.status == "timeout").label("timeouts"),
        count_if(r.empty).label("empty"),
        count_if(r.feedback.is_not(None)).label("rated"),
        count_if(r.feedback < 0).label("negative"),
    ]
    if with_cached:
        known = sa.and_(r.cached.is_not(None), r.prompt_tokens > 0)
        cols.append(sa.func.sum(sa.case((known, r.cached), else_=0)).label("cached_tokens"))
        cols.append(sa.func.sum(sa.case((known, r.prompt_tokens), else_=0)).label("cached_prompt_tokens"))
    return cols


def window_counts(
    engine: Engine,
    model_name: str,
    window: Window,
    cutoff_sets: Sequence[Sequence[float]],
    config: LogsConfig,
    cached_spec: CachedTokens | None,
) -> WindowCounts:
    """Exact counts of every row of the window in one GROUP BY: per version and contract breach, and per
    prompt-length stratum of each cut-point set (valid rows only)."""
    table = checked_log_table(engine, config)
    c = table.c
    cached = cached_tokens_expr(engine, table, cached_spec)

    # The per-row expressions in a subquery, then one GROUP BY over its small set of keys.
    per_row = [
        c.model_version.label("version"),
        quarantine_reason_expr(table, config, engine.dialect.name).label("reason"),
        *[stratum_expr(c.prompt_tokens, cuts).label(f"s{i}") for i, cuts in enumerate(cutoff_sets)],
        c.status,
        c.feedback,
        c.prompt_tokens,
        sa.and_(c.status == "ok", _blank(c.response)).label("empty"),
    ]
    if cached is not None:
        per_row.append(cached.label("cached"))
    rows = sa.select(*per_row).where(*_window_conds(table, model_name, window)).subquery()
    r = rows.c
    keys = [r.version, r.reason, *[r[f"s{i}"] for i in range(len(cutoff_sets))]]
    stmt = sa.select(*keys, *stratum_count_columns(r, cached is not None)).group_by(*keys)
    out = WindowCounts({}, {}, [{} for _ in cutoff_sets])
    with _session(engine) as conn:
        for row in conn.execute(stmt).mappings():
            version = str(row["version"]) if row["version"] is not None else None
            if version is not None:
                out.rows_by_version[version] = out.rows_by_version.get(version, 0) + int(row["requests"])
            if row["reason"] is not None:
                out.quarantined[row["reason"]] = out.quarantined.get(row["reason"], 0) + int(row["requests"])
                continue
            if version is None:  # pragma: no cover - a row without a version is quarantined above
                continue
            for i in range(len(cutoff_sets)):
                vc = out.by_cutoffs[i].setdefault(version, VersionCounts(version))
                cell = vc.strata.setdefault(int(row[f"s{i}"]), StratumCounts())
                for f in ("requests", "errors", "timeouts", "empty", "rated", "negative"):
                    setattr(cell, f, getattr(cell, f) + int(row[f] or 0))
                cell.cached_tokens += float(row.get("cached_tokens") or 0.0)
                cell.cached_prompt_tokens += float(row.get("cached_prompt_tokens") or 0.0)
    return out


def _tpot(c: Any) -> Any:
    return (c.latency_ms - c.ttft_ms) / sa.cast(c.completion_tokens - 1, sa.Float)


def _tokens_per_s(c: Any) -> Any:
    return sa.cast(c.completion_tokens, sa.Float) * 1000.0 / c.latency_ms


def timing_conditions(c: Any) -> dict[str, tuple[Any, Any]]:
    """Each latency variable and the rows it is defined on (answered requests with the needed columns)."""
    ok = c.status == "ok"
    return {
        "ttft_ms": (c.ttft_ms, sa.and_(ok, c.ttft_ms.is_not(None))),
        "latency_ms": (c.latency_ms, ok),
        "tpot_ms": (_tpot(c), sa.and_(ok, c.ttft_ms.is_not(None), c.completion_tokens > 1)),
        "output_tokens_per_s": (_tokens_per_s(c), sa.and_(ok, c.latency_ms > 0, c.completion_tokens > 0)),
    }


def window_quantiles(
    engine: Engine, model_name: str, window: Window, versions: Sequence[str], config: LogsConfig
) -> dict[str, dict[str, float]]:
    """Exact p50/p90/p99 of every latency variable per version over the whole window (PostgreSQL only).

    Other databases return {} and the report shows the sample's quantiles alone.
    """
    if engine.dialect.name != "postgresql":
        return {}
    from sqlalchemy.dialects.postgresql import ARRAY

    table = checked_log_table(engine, config)
    qs = sa.cast(sa.literal(list(QUANTILES), ARRAY(sa.Float)), ARRAY(sa.Float))
    cols = [table.c.model_version.label("version")]
    for name, (expr, cond) in timing_conditions(table.c).items():
        # Ordered-set aggregates skip NULLs: the CASE keeps only the rows the variable is defined on.
        cols.append(sa.func.percentile_cont(qs).within_group(sa.case((cond, expr), else_=None)).label(name))
    stmt = (
        sa.select(*cols)
        .where(
            *_window_conds(table, model_name, window),
            table.c.model_version.in_(list(versions)),
            quarantine_reason_expr(table, config, engine.dialect.name).is_(None),
        )
        .group_by(table.c.model_version)
    )
    out: dict[str, dict[str, float]] = {}
    with _session(engine) as conn:
        for row in conn.execute(stmt).mappings():
            values: dict[str, float] = {}
            for name in timing_conditions(table.c):
                for q, v in zip(QUANTILES, row[name] or [], strict=False):
                    if v is not None:
                        values[f"{name}_p{round(q * 100)}"] = float(v)
            out[str(row["version"])] = values
    return out


def sample_versions(
    engine: Engine,
    model_name: str,
    window: Window,
    versions: Sequence[str],
    n: int,
    seed: int,
    config: LogsConfig,
    cached_spec: CachedTokens | None,
) -> dict[str, list[dict[str, Any]]]:
    """A deterministic sample of each version's valid requests: the n rows of each version with the smallest
    seeded hash (`lockgate.logs.sampling`), numeric columns only.

    The ranking runs over the covering (model_name, ts, request_id) index alone: the window's k smallest
    hashes, whatever their version, then only those k rows are read. The rows of one version among the
    window's k smallest hashes are that version's smallest, so once every version has n valid rows among
    them the sample is exactly the per-version one; k grows fourfold until it does (a small canary share
    costs one more index pass, never a read of the window).
    """
    if not versions:
        return {}
    table = checked_log_table(engine, config)
    c = table.c
    cached = cached_tokens_expr(engine, table, cached_spec)
    # With the optional stored hash (`lockgate logs migrate-sample-index`), the ranking walks the
    # (model_name, hash, ts) index in hash order and stops after k rows of the window: O(sample).
    stored = stored_sample_hash(engine, table, seed, config) if engine.dialect.name == "postgresql" else None
    rank = stored if stored is not None else sample_rank(table, seed, engine.dialect.name)
    k = n * len(versions) * 2
    while True:
        candidates = (
            sa.select(c.request_id.label("rid"), rank.label("rank"))
            .where(*_window_conds(table, model_name, window), *([stored.is_not(None)] if stored is not None else []))
            .order_by(rank)
            .limit(k)
            .subquery()
        )
        answered = sa.and_(c.status == "ok", sa.not_(_blank(c.response)))
        cols = [
            c.request_id,
            c.model_version.label("version"),
            c.status,
            c.latency_ms,
            c.ttft_ms,
            c.prompt_tokens,
            c.completion_tokens,
            c.feedback,
            candidates.c.rank,
            quarantine_reason_expr(table, config, engine.dialect.name).label("reason"),
            answered.label("answered"),
            # the refusal pattern runs on these k rows only, never on the whole window
            sa.and_(answered, _refusal_match(engine, c.response)).label("refused"),
        ]
        if cached is not None:
            cols.append(cached.label("cached_tokens"))
        stmt = (
            sa.select(*cols)
            .join(candidates, candidates.c.rid == c.request_id)
            .where(c.model_version.in_(list(versions)))
            .order_by(candidates.c.rank)
        )
        out: dict[str, list[dict[str, Any]]] = {v: [] for v in versions}
        with _session(engine) as conn:
            ranked = conn.execute(sa.select(sa.func.count()).select_from(candidates)).scalar_one()
            for row in conn.execute(stmt).mappings():
                if row["reason"] is None and len(out[str(row["version"])]) < n:
                    out[str(row["version"])].append(dict(row))
        if ranked < k or all(len(rows) >= n for rows in out.values()):
            return out
        k *= 4


def attach_texts(engine: Engine, rows: list[dict[str, Any]], limit: int, config: LogsConfig) -> list[dict[str, Any]]:
    """Read prompt and response of the first `limit` answered rows (by primary key); returns those rows."""
    table = checked_log_table(engine, config)
    c = table.c
    chosen = [r for r in rows if r.get("status") == "ok"][:limit]
    by_id = {r["request_id"]: r for r in chosen}
    ids = list(by_id)
    with engine.connect() as conn:
        for i in range(0, len(ids), 500):
            stmt = sa.select(c.request_id, c.prompt, c.response).where(c.request_id.in_(ids[i : i + 500]))
            for rid, prompt, response in conn.execute(stmt).all():
                by_id[rid]["prompt"], by_id[rid]["response"] = prompt or "", response or ""
    return chosen
