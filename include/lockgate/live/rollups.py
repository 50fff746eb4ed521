"""The live job's per-hour rollups: each hour of the log table is aggregated once, then merged.

The live evidence counts every row of two windows (the current one and the champion's
baseline). Read in full on every run, those rows are most of the job's time; yet an hourly run
shares all but one hour of its window with the run before. So the job keeps, in lockgate's
state database (`lockgate_live_rollups`), one `HourAggregate` per model and UTC hour
(`lockgate.logs.rollups`), and a run aggregates only what it has not seen:

* hours that end less than `live.rollup_settle_hours` before now, and the window's partial
  first and last hours, are aggregated on every run and never stored;
* an older hour is stored the first time a run aggregates it, and reused while its row count,
  read from the (model_name, ts, request_id) index in the same snapshot, is unchanged. Rows
  inserted or deleted later change the count, and the hour is aggregated again; a row updated
  in place after the settle time (a late `feedback`) is not seen. Say so where it matters: set
  `live.rollup_settle_hours` beyond the latest update your logs receive, or `live.rollups: false`.

Counts stay exact (strata are cut on exact `prompt_tokens` values); latency percentiles come
from merged log-spaced histograms, within `lockgate.live.sketch.RELATIVE_ACCURACY` of the exact
value. The intervals are unaffected: they come from the bounded per-version sample.

Rollups are keyed by a fingerprint of the log source (database, table, column mapping, the
quarantine rules, where cached tokens are read): a change of any of them starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lockgate.live import sketch
from lockgate.logs.aggregates import QUANTILES, CachedTokens, StratumCounts, VersionCounts, WindowCounts
from lockgate.logs.rollups import (
    CELL_FIELDS,
    HOUR_SECONDS,
    HourAggregate,
    hour_row_counts,
    hourly_aggregates,
    window_row_count,
)
from lockgate.logs.sampling import Window
from lockgate.logs.schema import checked_log_table
from lockgate.policy.schema import LogsConfig

log = logging.getLogger(__name__)

ROLLUP_FORMAT = 1
"""Bumped when `HourAggregate` changes meaning: older rows are then ignored."""

metadata = sa.MetaData()

rollups_table = sa.Table(
    "lockgate_live_rollups",
    metadata,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("hour", sa.BigInteger, primary_key=True),  # seconds since the epoch, UTC
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
)


def source_key(logs_engine: Engine, config: LogsConfig, cached_spec: CachedTokens | None) -> str:
    """A fingerprint of everything an hour's aggregate depends on besides its rows."""
    spec = {
        "format": ROLLUP_FORMAT,
        "accuracy": sketch.RELATIVE_ACCURACY,
        "database": logs_engine.url.render_as_string(hide_password=True),
        "table": config.table,
        "columns": config.columns.model_dump(),
        "statuses": sorted(config.statuses),
        "max_text_chars": config.max_text_chars,
        "max_latency_ms": config.max_latency_ms,
        "cached": None if cached_spec is None else [cached_spec.column, cached_spec.metadata_key],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass
class RollupUse:
    """How a window was aggregated (for the log and the report)."""

    hours_reused: int = 0
    hours_stored: int = 0
    hours_fresh: int = 0  # recent or partial hours aggregated and not stored
    hours_changed: int = 0  # stored hours whose row count changed, aggregated again

    def describe(self) -> str:
        return (
            f"{self.hours_reused} hours from the rollups, {self.hours_stored} aggregated and stored "
            f"({self.hours_changed} of them changed since), {self.hours_fresh} recent or partial hours aggregated"
        )


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _spans(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous [start, end) spans of whole hours (epoch seconds)."""
    out: list[tuple[int, int]] = []
    for h in sorted(hours):
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + HOUR_SECONDS)
        else:
            out.append((h, h + HOUR_SECONDS))
    return out


def aggregate_window(
    logs_engine: Engine,
    state_engine: Engine,
    model_name: str,
    window: Window,
    config: LogsConfig,
    cached_spec: CachedTokens | None,
    *,
    now: datetime,
    settle_hours: float,
) -> tuple[list[HourAggregate], RollupUse]:
    """The window's hours (partial first and last hours included), each aggregated once."""
    table = checked_log_table(logs_engine, config)
    source = source_key(logs_engine, config, cached_spec)
    start, end = _epoch(window.start), _epoch(window.end)
    first_full = -(-start // HOUR_SECONDS) * HOUR_SECONDS
    last_full_end = end // HOUR_SECONDS * HOUR_SECONDS
    full = list(range(first_full, last_full_end, HOUR_SECONDS))
    settled_before = _epoch(now - timedelta(hours=settle_hours))
    settled = [h for h in full if h + HOUR_SECONDS <= settled_before]
    recent = [h for h in full if h + HOUR_SECONDS > settled_before]

    metadata.create_all(state_engine, checkfirst=True)
    stored: dict[int, tuple[int, str]] = {}
    if settled:
        t = rollups_table
        with state_engine.connect() as conn:
            for hour, count, payload in conn.execute(
                sa.select(t.c.hour, t.c.row_count, t.c.payload).where(
                    t.c.source == source,
                    t.c.model_name == model_name,
                    t.c.hour >= settled[0],
                    t.c.hour <= settled[-1],
                )
            ):
                stored[int(hour)] = (int(count), payload)

    use = RollupUse()
    out: list[HourAggregate] = []
    with logs_engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():  # the counts and the aggregates see one snapshot
            conn.execute(sa.text("SET LOCAL work_mem = '128MB'"))
            # The plans are cheap to make and run for a second or less: compiling them costs more.
            conn.execute(sa.text("SET LOCAL jit = off"))
            to_store = [h for h in settled if h not in stored]
            fresh_spans = _spans(recent)
            if start < first_full or not full:
                fresh_spans.append((start, min(first_full, end) if full else end))
            if full and last_full_end < end:
                fresh_spans.append((last_full_end, end))
            spans = _spans_union(_spans(to_store), fresh_spans)
            computed = hourly_aggregates(conn, logs_engine, model_name, _datetimes(spans), config, cached_spec)
            reused = [h for h in settled if h in stored]
            # One count of the window from the index says whether any stored hour changed; only then
            # is it counted per hour to find which.
            expected = sum(stored[h][0] for h in reused) + sum(a.rows for a in computed.values())
            if reused and window_row_count(conn, table, model_name, window) != expected:
                counts = hour_row_counts(conn, table, model_name, window)
                changed = [h for h in reused if stored[h][0] != counts.get(h, 0)]
                computed.update(
                    hourly_aggregates(conn, logs_engine, model_name, _datetimes(_spans(changed)), config, cached_spec)
                )
                to_store += changed
                use.hours_changed = len(changed)
                reused = [h for h in reused if h not in set(changed)]
    for h in reused:
        count, payload = stored[h]
        if count:
            out.append(HourAggregate.from_json(json.loads(payload)))
    use.hours_reused = len(reused)
    stored_now = [computed.get(h, HourAggregate(h)) for h in to_store]
    use.hours_stored = len(stored_now)
    store_set = set(to_store)
    fresh = [agg for h, agg in computed.items() if h not in store_set]
    use.hours_fresh = len(recent) + (start < first_full or not full) + bool(full and last_full_end < end)
    out += [a for a in stored_now if a.rows] + fresh
    if stored_now:
        _save(state_engine, source, model_name, stored_now)
    log.info("live rollups for %s %s: %s", model_name, window, use.describe())
    return out, use


def _datetimes(spans: Sequence[tuple[int, int]]) -> list[tuple[datetime, datetime]]:
    return [(_at(a), _at(b)) for a, b in spans]


def _spans_union(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans with touching ones joined (one range condition each in the query)."""
    out: list[tuple[int, int]] = []
    for s, e in sorted([*a, *b]):
        if out and out[-1][1] >= s:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _save(state_engine: Engine, source: str, model_name: str, aggs: Sequence[HourAggregate]) -> None:
    t = rollups_table
    now = datetime.now(UTC)
    hours = [a.hour for a in aggs]
    with state_engine.begin() as conn:
        for i in range(0, len(hours), 500):
            conn.execute(
                t.delete().where(t.c.source == source, t.c.model_name == model_name, t.c.hour.in_(hours[i : i + 500]))
            )
        conn.execute(
            t.insert(),
            [
                {
                    "source": source,
                    "model_name": model_name,
                    "hour": a.hour,
                    "row_count": a.rows,
                    "payload": json.dumps(a.to_json(), separators=(",", ":")),
                    "computed_at": now,
                }
                for a in aggs
            ],
        )


def forget_rollups(state_engine: Engine, model_name: str, since: datetime | None = None) -> int:
    """Delete a model's stored hours (from `since` on, else all); the number deleted.

    For logs rewritten in place, which the row-count check cannot see: a re-import that deletes
    and re-inserts an hour's rows with the same count, or a backfill of late `feedback`.
    """
    metadata.create_all(state_engine, checkfirst=True)
    t = rollups_table
    conds = [t.c.model_name == model_name]
    if since is not None:
        conds.append(t.c.hour + HOUR_SECONDS > _epoch(since))
    with state_engine.begin() as conn:
        result = conn.execute(t.delete().where(*conds))
    return int(result.rowcount or 0)


# --------------------------------------------------------------------------- merging (pure)


def window_counts(aggs: Sequence[HourAggregate], cutoff_sets: Sequence[Sequence[float]]) -> WindowCounts:
    """The window's counts from its hours, as `lockgate.logs.aggregates.window_counts` gives them."""
    out = WindowCounts({}, {}, [{} for _ in cutoff_sets])
    columns: dict[str, dict[str, list[list[float]]]] = {}
    for a in aggs:
        for v, n in a.rows_by_version.items():
            out.rows_by_version[v] = out.rows_by_version.get(v, 0) + n
        for reason, n in a.quarantined.items():
            out.quarantined[reason] = out.quarantined.get(reason, 0) + n
        for v, cell in a.cells.items():
            per = columns.setdefault(v, {})
            for name, values in cell.items():
                per.setdefault(name, []).append(values)
    for v, per in columns.items():
        arrays = {name: np.concatenate([np.asarray(x, dtype=np.float64) for x in parts]) for name, parts in per.items()}
        for i, cuts in enumerate(cutoff_sets):
            strata = np.searchsorted(np.asarray(cuts, dtype=np.float64), arrays["prompt_tokens"], side="left")
            size = len(cuts) + 1
            sums = {f: np.bincount(strata, weights=arrays[f], minlength=size) for f in CELL_FIELDS}
            vc = out.by_cutoffs[i].setdefault(v, VersionCounts(v))
            for s in range(size):
                if sums["requests"][s] <= 0:
                    continue
                counted = StratumCounts()
                for f in CELL_FIELDS:
                    value = float(sums[f][s])
                    setattr(counted, f, value if f.startswith("cached") else int(round(value)))
                vc.strata[s] = counted
    return out


def window_quantiles(aggs: Sequence[HourAggregate], versions: Sequence[str]) -> dict[str, dict[str, float]]:
    """p50/p90/p99 of each latency variable per version, from the merged histograms (within the
    sketch's relative accuracy), keyed as `lockgate.logs.aggregates.window_quantiles` keys them."""
    out: dict[str, dict[str, float]] = {}
    for v in versions:
        parts: dict[str, tuple[list[list[int]], list[list[int]]]] = {}
        for a in aggs:
            for name, h in a.histograms.get(v, {}).items():
                bins, counts = parts.setdefault(name, ([], []))
                bins.append(h["bins"])
                counts.append(h["counts"])
        values: dict[str, float] = {}
        for name, (bins, counts) in parts.items():
            flat_bins = np.concatenate([np.asarray(x, dtype=np.int64) for x in bins])
            flat_counts = np.concatenate([np.asarray(x, dtype=np.int64) for x in counts])
            for q, value in zip(QUANTILES, sketch.quantiles_of_bins(flat_bins, flat_counts, QUANTILES), strict=True):
                if value is not None:
                    values[f"{name}_p{round(q * 100)}"] = value
        if values:
            out[v] = values
    return out
