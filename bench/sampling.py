"""Sampling 10,000 rows from a 1,000,000-row window: lockgate's two ways against the naive way.

Builds a 2,000,000-row inference-log table in PostgreSQL (the contract's schema,
realistic text sizes), runs `lockgate logs migrate-sample-index`'s migration on it
(seed 7; the time is printed), then, in the same run, rotates three approaches,
each in a fresh child process so that peak memory is measured cleanly:

* indexed: `sample_inference_logs` with seed 7, the stored hash column's: an index
  scan on (model_name, hash, ts) in hash order that stops after n rows of the window;
* ranked: `sample_inference_logs` with seed 8, which the column does not hold, so it
  ranks every row of the window in SQL (a top-n sort over the covering (model_name,
  ts, request_id) index), as on a table that was not migrated; only the n sampled
  rows reach Python either way;
* naive: read the window into pandas with `read_sql`, then `DataFrame.sample`.

Prints the median time and peak memory (RSS high-water mark above the child's
baseline after imports) of each, their ratios to the naive way, and the target
line: indexed >= 50x faster than naive.

    .venv/bin/python bench/sampling.py [--rows 2000000] [--window-rows 1000000] [--n 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

START = datetime(2026, 1, 1, tzinfo=UTC)
INDEX_SEED = 7
MODES = {"indexed": INDEX_SEED, "ranked": INDEX_SEED + 1, "naive": INDEX_SEED}
TARGET_TIME = 50
ADMIN_URL = os.environ.get("LOCKGATE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def child(mode: str, url: str, start: str, end: str, n: int, seed: int) -> None:
    """One measurement in a fresh process: prints JSON {seconds, peak_mb, rows, stored_hash}."""
    import pandas as pd

    from lockgate.logs.db import make_engine
    from lockgate.logs.sampling import Window, sample_inference_logs
    from lockgate.logs.schema import sample_hash_seed

    engine = make_engine(url)
    with engine.connect() as conn:  # connect before the baseline so both pay the same
        conn.execute(sa.text("SELECT 1"))
    window = Window(datetime.fromisoformat(start), datetime.fromisoformat(end))
    # Reset the high-water mark to the current RSS so the peak is this step's own.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _rss_kb("VmRSS:")
    t0 = time.perf_counter()
    if mode != "naive":
        sample = sample_inference_logs(engine, "model-a", window, n, seed=seed)
        rows = len(sample.rows)
    else:
        frame = pd.read_sql(
            sa.text("SELECT * FROM inference_logs WHERE model_name = :m AND ts >= :s AND ts < :e"),
            engine,
            params={"m": "model-a", "s": window.start, "e": window.end},
        )
        rows = len(frame.sample(n=n, random_state=seed))
    seconds = time.perf_counter() - t0
    peak = _rss_kb("VmHWM:")
    stored = mode != "naive" and sample_hash_seed(engine) == seed  # which path the sampler took
    print(json.dumps({"seconds": seconds, "peak_mb": max(peak - base, 1) / 1024, "rows": rows, "stored_hash": stored}))


def build_table(url: str, rows: int) -> None:
    from lockgate.logs.db import make_engine
    from lockgate.logs.schema import create_schema

    engine = make_engine(url)
    create_schema(engine)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        # One row a second; model-a and model-b alternate. Text sizes like a support assistant's.
        conn.execute(
            sa.text(
                """
                INSERT INTO inference_logs
                SELECT 'req-' || g,
                       :start + g * interval '1 second',
                       CASE WHEN g % 2 = 0 THEN 'model-a' ELSE 'model-b' END,
                       (1 + g % 2)::text,
                       'Why was I charged twice for my subscription #' || g || '? ' ||
                         repeat('I already tried the steps in the help center. ', 1 + g % 4),
                       'Thanks for reaching out. Duplicate charges are reversed automatically once the bank '
                         || 'settles; refunds go to the original payment method within 5 business days. '
                         || repeat('Let me know if that solves it. ', 1 + g % 3),
                       CASE WHEN g % 3 = 0 THEN repeat('Refunds are issued within 5 days. ', 3) END,
                       50 + (g % 997) * 1.7, 20 + (g % 89), 60 + g % 40, 40 + g % 120,
                       CASE WHEN g % 100 = 0 THEN 'error' ELSE 'ok' END,
                       NULL,
                       jsonb_build_object('region', CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END)
                FROM generate_series(1, :rows) AS g
                """
            ),
            {"start": START, "rows": rows},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE inference_logs"))  # what autovacuum does to a live table
        size = conn.execute(sa.text("SELECT pg_size_pretty(pg_total_relation_size('inference_logs'))")).scalar()
    print(f"built {rows:,} rows in {time.perf_counter() - t0:.1f} s ({size})")


def migrate(url: str, seed: int) -> None:
    from lockgate.logs.db import make_engine
    from lockgate.logs.schema import migrate_sample_index

    engine = make_engine(url)
    t0 = time.perf_counter()
    migrate_sample_index(engine, seed)
    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT pg_size_pretty(pg_total_relation_size('inference_logs'))")).scalar()
    print(f"migrate-sample-index (stored hash column, index) in {time.perf_counter() - t0:.1f} s ({size})")


def run_child(mode: str, url: str, start: datetime, end: datetime, n: int, seed: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, url, start.isoformat(), end.isoformat(), str(n), str(seed)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, url, start, end, n, seed = sys.argv[2:8]
        child(mode, url, start, end, int(n), int(seed))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--window-rows", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from sqlalchemy.engine import make_url

    admin = make_url(ADMIN_URL)
    dbname = f"lockgate_bench_{uuid.uuid4().hex[:8]}"
    admin_engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
    url = admin.set(database=dbname).render_as_string(hide_password=False)
    try:
        build_table(url, args.rows)
        # model-a has every other row; its window of window_rows rows spans 2 * window_rows seconds.
        start = START + timedelta(seconds=max(0, args.rows - 2 * args.window_rows) // 2)
        end = start + timedelta(seconds=2 * args.window_rows)
        migrate(url, INDEX_SEED)
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        order = list(MODES)
        for i in range(args.repeats):
            for mode in order[i % len(order) :] + order[: i % len(order)]:  # rotate who goes first
                r = run_child(mode, url, start, end, args.n, seed=MODES[mode])
                results[mode].append(r)
                path = "" if mode == "naive" else "  (stored hash)" if r["stored_hash"] else "  (ranked window)"
                took = f"{r['seconds']:7.3f} s  peak {r['peak_mb']:8.1f} MB"
                print(f"  run {i + 1} {mode:8s} {took}  rows {r['rows']}{path}")
        t = {m: statistics.median(r["seconds"] for r in results[m]) for m in MODES}
        mem = {m: statistics.median(r["peak_mb"] for r in results[m]) for m in MODES}
        print(f"window: {args.window_rows:,} rows of {args.rows:,}; sample n={args.n:,}; median of {args.repeats}")
        for m in MODES:
            ratio = "" if m == "naive" else f"  {t['naive'] / t[m]:6.1f}x time, {mem['naive'] / mem[m]:6.1f}x memory"
            print(f"{m:8s}: {t[m]:7.3f} s, peak {mem[m]:8.1f} MB{ratio}")
        ok = t["naive"] / t["indexed"] >= TARGET_TIME and all(r["stored_hash"] for r in results["indexed"])
        print(f"target indexed >= {TARGET_TIME}x time vs naive: {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    finally:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))


if __name__ == "__main__":
    raise SystemExit(main())
