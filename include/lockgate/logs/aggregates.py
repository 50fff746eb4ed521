"""Per-version aggregates of a window of inference logs, computed in SQL (the live evidence).

Counts and rates run over every row of the window inside the database (one GROUP BY per
query), and PostgreSQL computes exact percentiles with `percentile_cont`; Python only
receives a handful of numbers per version and prompt-length stratum, plus a bounded,
deterministic sample of numeric columns for the intervals (`sample_requests`).

Rows that break the contract are counted by reason (`quarantine_counts`) and left out of
every aggregate, in the order `lockgate.logs.quarantine.quarantine_reason` checks them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lockgate.errors import ConfigError
from lockgate.logs.refusal import REFUSAL_PATTERN, postgres_refusal_pattern
from lockgate.logs.sampling import Window, sample_rank
from lockgate.logs.schema import log_table
from lockgate.settings import LogsConfig

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class StratumCounts:
    """Exact counts of one version's valid requests in one prompt-length stratum."""

    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    empty: int = 0
    refusals: int = 0
    answered: int = 0  # status ok with a non-empty response: the denominator of the refusal rate
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


def cached_tokens_expr(engine: Engine, table: sa.Table, config: LogsConfig, columns: set[str]) -> Any | None:
    """Cached prompt tokens per row: the optional column, else the metadata key, else None."""
    if config.columns.cached_tokens in columns:
        return sa.cast(sa.literal_column(_quoted(engine, table, config.columns.cached_tokens)), sa.Float)
    key = config.cached_tokens_metadata_key
    if not key:
        return None
    parts = key.split(".")
    meta = table.c.metadata
    if engine.dialect.name == "postgresql":
        path = "{" + ",".join(parts) + "}"
        text = meta.op("#>>")(sa.literal(path))
        # A non-numeric value is not a count: treated as unknown rather than failing the query.
        return sa.case((text.op("~")(r"^\s*[0-9]+(\.[0-9]+)?\s*$"), sa.cast(text, sa.Float)), else_=None)
    if engine.dialect.name == "sqlite":
        value = sa.func.json_extract(meta, "$." + ".".join(parts))
        return sa.case((sa.func.json_valid(meta) == 1, sa.cast(value, sa.Float)), else_=None)
    return None


def _quoted(engine: Engine, table: sa.Table, column: str) -> str:
    prep = engine.dialect.identifier_preparer
    return f"{prep.format_table(table)}.{prep.quote(column)}"


def quarantine_reason_expr(table: sa.Table, config: LogsConfig) -> Any:
    """The first contract rule a row breaks, as SQL (NULL for a valid row)."""
    c = table.c
    text_too_long = sa.or_(*[sa.func.length(c[k]) > config.max_text_chars for k in ("prompt", "response", "context")])
    return sa.case(
        (c.request_id.is_(None), "missing_request_id"),
        (c.ts.is_(None), "missing_ts"),
        (sa.or_(c.model_version.is_(None), c.model_version == ""), "missing_model_version"),
        (sa.or_(c.prompt.is_(None), sa.func.trim(c.prompt) == ""), "missing_prompt"),
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


def _window_conds(table: sa.Table, model_name: str, window: Window) -> list[Any]:
    return [table.c.model_name == model_name, table.c.ts >= window.start, table.c.ts < window.end]


def quarantine_counts(engine: Engine, model_name: str, window: Window, config: LogsConfig) -> dict[str, int]:
    """Rows of the window that break the contract, by reason (over the whole window, in SQL)."""
    table = log_table(config)
    reason = quarantine_reason_expr(table, config).label("reason")
    inner = sa.select(reason).where(*_window_conds(table, model_name, window)).subquery()
    stmt = sa.select(inner.c.reason, sa.func.count()).where(inner.c.reason.is_not(None)).group_by(inner.c.reason)
    with engine.connect() as conn:
        return {str(r): int(n) for r, n in conn.execute(stmt).all()}


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


def version_counts(
    engine: Engine,
    model_name: str,
    window: Window,
    versions: Sequence[str],
    cutoffs: Sequence[float],
    config: LogsConfig,
    cached: Any | None,
) -> dict[str, VersionCounts]:
    """Exact counts per version and prompt-length stratum, over the window's valid rows."""
    table = log_table(config)
    c = table.c

    def count_if(cond: Any) -> Any:
        return sa.func.sum(sa.case((cond, 1), else_=0))

    answered = sa.and_(c.status == "ok", c.response.is_not(None), sa.func.trim(c.response) != "")
    stratum = stratum_expr(c.prompt_tokens, cutoffs).label("stratum")
    cols = [
        c.model_version.label("version"),
        stratum,
        sa.func.count().label("requests"),
        count_if(c.status == "error").label("errors"),
        count_if(c.status == "timeout").label("timeouts"),
        count_if(sa.and_(c.status == "ok", sa.func.trim(c.response) == "")).label("empty"),
        count_if(sa.and_(answered, _refusal_match(engine, c.response))).label("refusals"),
        count_if(answered).label("answered"),
        count_if(c.feedback.is_not(None)).label("rated"),
        count_if(c.feedback < 0).label("negative"),
    ]
    if cached is not None:
        known = sa.and_(cached.is_not(None), c.prompt_tokens > 0)
        cols.append(sa.func.sum(sa.case((known, cached), else_=0)).label("cached_tokens"))
        cols.append(sa.func.sum(sa.case((known, c.prompt_tokens), else_=0)).label("cached_prompt_tokens"))
    stmt = (
        sa.select(*cols)
        .where(
            *_window_conds(table, model_name, window),
            c.model_version.in_(list(versions)),
            quarantine_reason_expr(table, config).is_(None),
        )
        .group_by(c.model_version, stratum)
    )
    out = {v: VersionCounts(v) for v in versions}
    with engine.connect() as conn:
        for row in conn.execute(stmt).mappings():
            counts = StratumCounts(
                **{k: int(row[k] or 0) for k in ("requests", "errors", "timeouts", "empty", "refusals")},
                answered=int(row["answered"] or 0),
                rated=int(row["rated"] or 0),
                negative=int(row["negative"] or 0),
                cached_tokens=float(row.get("cached_tokens") or 0.0),
                cached_prompt_tokens=float(row.get("cached_prompt_tokens") or 0.0),
            )
            out[str(row["version"])].strata[int(row["stratum"])] = counts
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

    table = log_table(config)
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
            quarantine_reason_expr(table, config).is_(None),
        )
        .group_by(table.c.model_version)
    )
    out: dict[str, dict[str, float]] = {}
    with engine.connect() as conn:
        for row in conn.execute(stmt).mappings():
            values: dict[str, float] = {}
            for name in timing_conditions(table.c):
                for q, v in zip(QUANTILES, row[name] or [], strict=False):
                    if v is not None:
                        values[f"{name}_p{round(q * 100)}"] = float(v)
            out[str(row["version"])] = values
    return out


def sample_requests(
    engine: Engine,
    model_name: str,
    window: Window,
    version: str,
    n: int,
    seed: int,
    config: LogsConfig,
    cached: Any | None,
    with_text: int = 0,
) -> list[dict[str, Any]]:
    """A deterministic sample of one version's valid requests (the seeded hash ranking of
    `lockgate.logs.sampling`), numeric columns only; the first `with_text` answered rows also
    carry their prompt and response (for MiniLM relevance)."""
    table = log_table(config)
    c = table.c
    rank = sample_rank(table, seed, engine.dialect.name).label("rank")
    cols = [
        c.request_id,
        c.status,
        c.latency_ms,
        c.ttft_ms,
        c.prompt_tokens,
        c.completion_tokens,
        c.feedback,
        rank,
    ]
    if cached is not None:
        cols.append(cached.label("cached_tokens"))
    stmt = (
        sa.select(*cols)
        .where(
            *_window_conds(table, model_name, window),
            c.model_version == version,
            quarantine_reason_expr(table, config).is_(None),
        )
        .order_by(rank)
        .limit(n)
    )
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
    if with_text > 0 and rows:
        answered = [r["request_id"] for r in rows if r["status"] == "ok"][:with_text]
        texts: dict[str, tuple[str, str]] = {}
        with engine.connect() as conn:
            for i in range(0, len(answered), 500):
                chunk = answered[i : i + 500]
                stmt_text = sa.select(c.request_id, c.prompt, c.response).where(c.request_id.in_(chunk))
                for rid, prompt, response in conn.execute(stmt_text).all():
                    texts[str(rid)] = (prompt or "", response or "")
        for r in rows:
            if r["request_id"] in texts:
                r["prompt"], r["response"] = texts[r["request_id"]]
    return rows
