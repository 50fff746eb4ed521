"""Per-hour aggregates of the inference-log table, computed in one pass of PostgreSQL (the live job's rollups).

`hourly_aggregates` reads the rows of a time range once and returns, per hour of `ts` (UTC),
everything the live evidence needs from every row: rows and quarantined rows by reason, per
version and exact `prompt_tokens` value the request, error, timeout, empty-response, feedback
and cached-token counts, and per version a log-spaced histogram of each latency variable
(`lockgate.live.sketch`). One GROUP BY GROUPING SETS, so the heap is read once.

`hour_row_counts` counts each hour's rows from the (model_name, ts, request_id) index alone:
the job compares them with the stored rollups to find hours that changed (rows inserted or
deleted after the rollup was taken).

PostgreSQL 14 or later (`date_bin`). Other databases have no rollups: the job aggregates each
window directly (`lockgate.logs.aggregates.window_counts`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lockgate.live.sketch import LOG_GAMMA, ZERO_BIN
from lockgate.logs.aggregates import (
    CachedTokens,
    _blank,
    cached_tokens_expr,
    quarantine_reason_expr,
    stratum_count_columns,
    timing_conditions,
)
from lockgate.logs.sampling import Window
from lockgate.logs.schema import checked_log_table
from lockgate.policy.schema import LogsConfig

HOUR_SECONDS = 3600

CELL_FIELDS: tuple[str, ...] = (
    "requests",
    "errors",
    "timeouts",
    "empty",
    "rated",
    "negative",
    "cached_tokens",
    "cached_prompt_tokens",
)
"""The counts kept per (hour, version, prompt_tokens) of valid rows, as in `StratumCounts`."""


@dataclass
class HourAggregate:
    """One hour of one model's rows (plain data, JSON-able through `to_json`)."""

    hour: int  # the hour's start, seconds since the epoch (UTC)
    rows: int = 0  # every row of the model in the hour, as `hour_row_counts` counts it
    rows_by_version: dict[str, int] = field(default_factory=dict)  # quarantined rows included
    quarantined: dict[str, int] = field(default_factory=dict)
    # valid rows per (version, prompt_tokens): {version: {"prompt_tokens": [...], "requests": [...], ...}}
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # lists, or arrays once read back
    # {version: {variable: {"bins": [...], "counts": [...]}}}
    histograms: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON with each array as base64 of its little-endian bytes: a stored hour parses in microseconds."""
        return {
            "hour": self.hour,
            "rows": self.rows,
            "rows_by_version": self.rows_by_version,
            "quarantined": self.quarantined,
            "cells": {v: {k: _encode(x, "<f8") for k, x in cell.items()} for v, cell in self.cells.items()},
            "histograms": {
                v: {name: {k: _encode(x, "<i8") for k, x in h.items()} for name, h in per.items()}
                for v, per in self.histograms.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HourAggregate:
        return cls(
            hour=int(data["hour"]),
            rows=int(data["rows"]),
            rows_by_version={str(k): int(v) for k, v in data["rows_by_version"].items()},
            quarantined={str(k): int(v) for k, v in data["quarantined"].items()},
            cells={v: {k: _decode(x, "<f8") for k, x in cell.items()} for v, cell in data["cells"].items()},
            histograms={
                v: {name: {k: _decode(x, "<i8") for k, x in h.items()} for name, h in per.items()}
                for v, per in data["histograms"].items()
            },
        )


def _encode(values: Any, dtype: str) -> str:
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode("ascii")


def _decode(text: str, dtype: str) -> Any:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def _hour_expr(ts: Any) -> Any:
    """The start of the row's UTC hour, as seconds since the epoch."""
    bucket = sa.func.date_bin(sa.literal_column("interval '1 hour'"), ts, sa.literal_column("'2000-01-01 00:00:00+00'"))
    return sa.cast(sa.extract("epoch", bucket), sa.BigInteger)


def bin_sql_expression(value: Any) -> Any:
    """`lockgate.live.sketch.bin_of` in SQL."""
    positive = sa.cast(sa.func.ceil(sa.func.ln(value) / LOG_GAMMA), sa.BigInteger)
    return sa.case((value <= 0, sa.literal(ZERO_BIN, sa.BigInteger)), else_=positive)


def hour_row_counts(conn: Connection, table: sa.Table, model_name: str, window: Window) -> dict[int, int]:
    """Rows of the model per UTC hour of the window, from the index alone."""
    c = table.c
    hour = _hour_expr(c.ts).label("hour")
    stmt = (
        sa.select(hour, sa.func.count())
        .where(c.model_name == model_name, c.ts >= window.start, c.ts < window.end)
        .group_by(hour)
    )
    return {int(h): int(n) for h, n in conn.execute(stmt).all()}


def window_row_count(conn: Connection, table: sa.Table, model_name: str, window: Window) -> int:
    """Rows of the model in the window, from the index alone."""
    c = table.c
    stmt = sa.select(sa.func.count()).where(c.model_name == model_name, c.ts >= window.start, c.ts < window.end)
    return int(conn.execute(stmt).scalar_one())


def hourly_aggregates(
    conn: Connection,
    engine: Engine,
    model_name: str,
    spans: Sequence[tuple[datetime, datetime]],
    config: LogsConfig,
    cached_spec: CachedTokens | None,
) -> dict[int, HourAggregate]:
    """Every hour with rows in the spans ([start, end) each), aggregated in one pass of their rows."""
    if not spans:
        return {}
    table = checked_log_table(engine, config)
    c = table.c
    cached = cached_tokens_expr(engine, table, cached_spec)
    reason = quarantine_reason_expr(table, config, engine.dialect.name)
    timing = timing_conditions(c)
    per_row = [
        _hour_expr(c.ts).label("hour"),
        c.model_version.label("version"),
        reason.label("reason"),
        sa.func.coalesce(c.prompt_tokens, 0).label("pt"),
        c.status,
        c.feedback,
        c.prompt_tokens,
        sa.and_(c.status == "ok", _blank(c.response)).label("empty"),
        *[
            sa.case((cond, bin_sql_expression(expr)), else_=None).label(f"b_{name}")
            for name, (expr, cond) in timing.items()
        ],
    ]
    if cached is not None:
        per_row.append(cached.label("cached"))
    in_spans = sa.or_(*[sa.and_(c.ts >= a, c.ts < b) for a, b in spans])
    # OFFSET 0 keeps PostgreSQL from inlining the subquery, which would evaluate the quarantine CASE
    # once per grouping expression that names it instead of once per row.
    rows = sa.select(*per_row).where(c.model_name == model_name, in_spans).offset(0).subquery()
    r = rows.c
    valid = r.reason.is_(None)
    # Unlabelled: GROUP BY and GROUPING() repeat the select list's expressions, not its names.
    pt_key = sa.case((valid, r.pt), else_=None)
    bins = {name: sa.case((valid, r[f"b_{name}"]), else_=None) for name in timing}

    cols = [
        r.hour,
        r.version,
        r.reason,
        pt_key.label("ptk"),
        *[b.label(f"h_{name}") for name, b in bins.items()],
        sa.func.grouping(*bins.values()).label("set"),
        *stratum_count_columns(r, cached is not None),
    ]
    sets = [sa.tuple_(r.hour, r.version, r.reason, pt_key)] + [sa.tuple_(r.hour, r.version, b) for b in bins.values()]
    stmt = sa.select(*cols).group_by(sa.func.grouping_sets(*sets))
    names = list(bins)
    counts_set = (1 << len(names)) - 1  # every bin column aggregated away: the counts' set
    out: dict[int, HourAggregate] = {}
    for row in conn.execute(stmt).mappings():
        hour = int(row["hour"])
        agg = out.setdefault(hour, HourAggregate(hour))
        version = None if row["version"] is None else str(row["version"])
        n = int(row["requests"])
        if int(row["set"]) == counts_set:
            agg.rows += n
            if version is not None:
                agg.rows_by_version[version] = agg.rows_by_version.get(version, 0) + n
            if row["reason"] is not None:
                agg.quarantined[row["reason"]] = agg.quarantined.get(row["reason"], 0) + n
                continue
            if version is None:  # pragma: no cover - quarantined above
                continue
            cell = agg.cells.setdefault(version, {"prompt_tokens": [], **{f: [] for f in CELL_FIELDS}})
            cell["prompt_tokens"].append(float(row["ptk"]))
            for f in CELL_FIELDS:
                cell[f].append(float(row.get(f) or 0))
            continue
        # a histogram set: the one bin column not aggregated away
        for i, name in enumerate(names):
            if not int(row["set"]) & (1 << (len(names) - 1 - i)):
                b = row[f"h_{name}"]
                if b is not None and version is not None:
                    h = agg.histograms.setdefault(version, {}).setdefault(name, {"bins": [], "counts": []})
                    h["bins"].append(int(b))
                    h["counts"].append(n)
                break
    return out
