"""Production evidence over a 1,000,000-row window of a 10,000,000-row table: lockgate against the naive way.

Builds an inference-log table in PostgreSQL (the contract's schema, 30% canary traffic), adds the
optional sample index (`lockgate logs migrate-sample-index`; `--no-sample-index` leaves it out),
then, in the same run, alternates three measurements, each in a fresh child process so that
peak memory is measured cleanly:

* lockgate, scheduled run: the live job's reads and statistics (`lockgate.jobs.live.read_inputs`,
  `evaluate`, `build_metrics`) as the hourly run finds them: the per-hour rollups
  (`lockgate.live.rollups`) hold what the run an hour before aggregated, so this run aggregates
  the hour that settled since and the last `live.rollup_settle_hours` hours, checks the stored
  hours' row count from the index, draws a bounded sample per version for the stratified
  bootstrap and Wilson/Newcombe intervals, and reads the champion's 7-day baseline window too;
* lockgate, first run: the same with no rollups stored (a new model, a new deployment): every
  hour of both windows aggregated (and stored);
* naive: read the window into pandas with `read_sql`, then group by version for the same
  percentiles and rates (point estimates only: no intervals, no strata, no baseline).

Imports happen before the clock starts in every child (the naive one's pandas, the job's
modules and statsmodels). MiniLM relevance is left out of both (it embeds a fixed number of
answers whatever the window's size). Prints the median time and peak memory (RSS high-water
mark above the child's baseline after imports) of each, and their ratios. Target: >= 20x on
both, for the scheduled run (what runs every hour); the first run's ratio is printed beside it.

    .venv/bin/python bench/live.py [--rows 10000000] [--window-rows 1000000] [--repeats 3] [--no-sample-index]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

START = datetime(2026, 1, 1, tzinfo=UTC)
ADMIN_URL = os.environ.get("LOCKGATE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MODEL = "model-a"


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _policy_file() -> str:
    import yaml

    from lockgate.devtools.testing.registry import policy_for

    data = policy_for(MODEL).model_dump(mode="json")
    data["live"] = {**data["live"], "relevance_sample_size": 0}
    path = os.path.join(tempfile.mkdtemp(prefix="lockgate-bench-live-"), "policy.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return path


def child(mode: str, url: str, start: str, end: str) -> None:
    """One measurement in a fresh process: prints JSON {seconds, peak_mb, versions}."""
    import numpy as np  # noqa: F401  (imported before the baseline by every mode)
    import pandas as pd
    import statsmodels.stats.proportion  # noqa: F401  (the job imports it lazily, for Wilson intervals)

    import lockgate.live.rollups  # noqa: F401
    import lockgate.logs.aggregates  # noqa: F401
    from lockgate.drift.windows import ResolvedWindow
    from lockgate.jobs.live import build_metrics, evaluate, read_inputs
    from lockgate.logs.db import make_engine
    from lockgate.logs.sampling import Window
    from lockgate.policy.schema import load_policy

    policy = load_policy()
    engine = make_engine(url)
    with engine.connect() as conn:  # connect before the baseline so both pay the same
        conn.execute(sa.text("SELECT 1"))
    window = Window(datetime.fromisoformat(start), datetime.fromisoformat(end))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _rss_kb("VmRSS:")
    t0 = time.perf_counter()
    if mode in ("scheduled", "first"):
        inputs = read_inputs(
            MODEL, "1", "2", None, ResolvedWindow(window, "fixed"), policy, embed_relevance=False, now=window.end
        )
        canary, baseline, problems = evaluate(inputs, policy, MODEL)
        metrics = build_metrics(canary, baseline, policy.statistics.confidence)
        versions = len(metrics) and 2
        if problems:
            raise SystemExit(f"live evidence incomplete: {problems}")
    else:
        frame = pd.read_sql(
            sa.text("SELECT * FROM inference_logs WHERE model_name = :m AND ts >= :s AND ts < :e"),
            engine,
            params={"m": MODEL, "s": window.start, "e": window.end},
        )
        ok = frame[frame.status == "ok"]
        tpot = (ok.latency_ms - ok.ttft_ms) / (ok.completion_tokens - 1)
        tps = ok.completion_tokens * 1000 / ok.latency_ms
        by = ok.assign(tpot=tpot, tps=tps).groupby("model_version")
        q = by[["ttft_ms", "latency_ms", "tpot", "tps"]].quantile([0.5, 0.9, 0.99])
        rates = (
            frame.assign(
                error=frame.status == "error",
                timeout=frame.status == "timeout",
                refusal=frame.response.fillna("").str.contains("I cannot|I can't|unable to", regex=True),
                negative=frame.feedback < 0,
            )
            .groupby("model_version")[["error", "timeout", "refusal", "negative"]]
            .mean()
        )
        versions = len(rates)
        del q
    seconds = time.perf_counter() - t0
    peak = _rss_kb("VmHWM:")
    print(json.dumps({"seconds": seconds, "peak_mb": max(peak - base, 1) / 1024, "versions": versions}))


def build_table(url: str, rows: int) -> None:
    from lockgate.logs.db import make_engine
    from lockgate.logs.schema import create_schema

    engine = make_engine(url)
    create_schema(engine)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        # One request a second; 30% canary traffic (version 2); TTFT grows with the prompt.
        conn.execute(
            sa.text(
                """
                INSERT INTO inference_logs
                SELECT 'req-' || g,
                       :start + g * interval '1 second',
                       :model,
                       CASE WHEN g % 10 < 3 THEN '2' ELSE '1' END,
                       'Why was I charged twice for my subscription #' || g || '? ' ||
                         repeat('I already tried the steps in the help center. ', 1 + g % 4),
                       CASE WHEN g % 100 = 0 THEN NULL
                            WHEN g % 97 = 0 THEN 'I cannot help with that request.'
                            ELSE 'Thanks for reaching out. Duplicate charges are reversed automatically once the '
                                 || 'bank settles. ' || repeat('Let me know if that solves it. ', 1 + g % 3) END,
                       CASE WHEN g % 3 = 0 THEN repeat('Refunds are issued within 5 days. ', 3) END,
                       (60 + 0.4 * (40 + g % 120)) * (1 + (g % 7) / 20.0) + (20 + g % 40) * 18,
                       CASE WHEN g % 100 = 0 THEN NULL ELSE (40 + 0.4 * (40 + g % 120)) * (1 + (g % 7) / 20.0) END,
                       40 + g % 120, 20 + g % 40,
                       CASE WHEN g % 100 = 0 THEN 'error' ELSE 'ok' END,
                       CASE WHEN g % 5 = 0 THEN (CASE WHEN g % 11 = 0 THEN -1 ELSE 1 END) END,
                       jsonb_build_object('usage', jsonb_build_object('prompt_tokens_details',
                           jsonb_build_object('cached_tokens', (40 + g % 120) / 3)))
                FROM generate_series(1, :rows) AS g
                """
            ),
            {"start": START, "rows": rows, "model": MODEL},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE inference_logs"))  # what autovacuum does to a live table
        size = conn.execute(sa.text("SELECT pg_size_pretty(pg_total_relation_size('inference_logs'))")).scalar()
    print(f"built {rows:,} rows in {time.perf_counter() - t0:.1f} s ({size})", flush=True)


def run_child(mode: str, url: str, start: datetime, end: datetime, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, url, start.isoformat(), end.isoformat()],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, url, start, end = sys.argv[2:6]
        child(mode, url, start, end)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--window-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-sample-index", action="store_true", help="leave the optional sample index out")
    parser.add_argument(
        "--reuse-db", metavar="URL", help="a database this script built before (with the same --rows): kept afterwards"
    )
    args = parser.parse_args()

    from sqlalchemy.engine import make_url

    admin = make_url(ADMIN_URL)
    admin_engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    dbname = None
    if args.reuse_db:
        url = args.reuse_db
    else:
        dbname = f"lockgate_bench_{uuid.uuid4().hex[:8]}"
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
        url = admin.set(database=dbname).render_as_string(hide_password=False)
    policy_file = _policy_file()
    env = {**os.environ, "LOCKGATE_CONFIG": policy_file, "LOCKGATE_LOGS_DB_URL": url}
    try:
        if not args.reuse_db:
            build_table(url, args.rows)
        engine = sa.create_engine(url)
        if not args.no_sample_index:
            from lockgate.logs.schema import migrate_sample_index

            t0 = time.perf_counter()
            migrate_sample_index(engine, 0)
            print(f"sample index (lockgate logs migrate-sample-index) in {time.perf_counter() - t0:.1f} s", flush=True)
        else:
            with engine.begin() as conn:
                conn.execute(sa.text("ALTER TABLE inference_logs DROP COLUMN IF EXISTS lockgate_sample_hash"))
        # The window: the last `window_rows` seconds of the table (its baseline, the 7 days before, is read too).
        end = START + timedelta(seconds=args.rows + 1)
        start = end - timedelta(seconds=args.window_rows)
        settle = _settle_hours(policy_file)
        # What the run an hour earlier had stored: the hours that ended before its own settle time.
        previous_settled = int((end - timedelta(hours=1 + settle)).timestamp())

        def reset_rollups(previous_settled_before: int | None) -> None:
            from lockgate.live.rollups import metadata

            metadata.create_all(engine)
            with engine.begin() as conn:
                if previous_settled_before is None:
                    conn.execute(sa.text("DELETE FROM lockgate_live_rollups"))
                else:
                    conn.execute(
                        sa.text("DELETE FROM lockgate_live_rollups WHERE hour + 3600 > :t"),
                        {"t": previous_settled_before},
                    )

        modes = ("scheduled", "first", "naive")
        results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        reset_rollups(None)
        run_child("first", url, start, end, env)  # the rollups the scheduled runs start from (not timed)
        for i in range(args.repeats):
            for mode in modes[i % 3 :] + modes[: i % 3]:
                reset_rollups(None if mode == "first" else previous_settled)
                r = run_child(mode, url, start, end, env)
                results[mode].append(r)
                print(f"  run {i + 1} {mode:9s} {r['seconds']:7.3f} s  peak {r['peak_mb']:8.1f} MB", flush=True)
        t = {m: statistics.median(r["seconds"] for r in results[m]) for m in modes}
        mem = {m: statistics.median(r["peak_mb"] for r in results[m]) for m in modes}
        index = "without" if args.no_sample_index else "with"
        print(f"window: {args.window_rows:,} rows of {args.rows:,}; median of {args.repeats}; {index} the sample index")
        print(
            f"lockgate, scheduled run: {t['scheduled']:.3f} s, peak {mem['scheduled']:.1f} MB "
            "(counts, rates, percentiles, intervals, strata, baseline; earlier hours from the rollups)"
        )
        print(f"lockgate, first run    : {t['first']:.3f} s, peak {mem['first']:.1f} MB (all hours aggregated, stored)")
        print(f"naive                  : {t['naive']:.3f} s, peak {mem['naive']:.1f} MB (pandas: point estimates only)")
        for m in ("scheduled", "first"):
            print(
                f"{m:9s} run, ratio (naive/lockgate): "
                f"time {t['naive'] / t[m]:.1f}x, memory {mem['naive'] / mem[m]:.1f}x"
                + ("  (target >= 20x on both)" if m == "scheduled" else "")
            )
        ok = t["naive"] / t["scheduled"] >= 20 and mem["naive"] / mem["scheduled"] >= 20
        print("TARGET MET" if ok else "TARGET MISSED")
        return 0 if ok else 1
    finally:
        if dbname is not None:
            with admin_engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))


def _settle_hours(policy_file: str) -> float:
    import yaml

    with open(policy_file) as f:
        return float(yaml.safe_load(f)["live"]["rollup_settle_hours"])


if __name__ == "__main__":
    raise SystemExit(main())
