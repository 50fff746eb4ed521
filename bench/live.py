"""Production evidence over a 1,000,000-row window of a 10,000,000-row table: lockgate against the naive way.

Builds an inference-log table in PostgreSQL (the contract's schema, 30% canary traffic),
then, in the same run, alternates the two approaches, each in a fresh child process so
that peak memory is measured cleanly:

* lockgate: the live job's reads and statistics (`lockgate.jobs.live.read_inputs`,
  `evaluate`, `build_metrics`): quarantine, counts, rates and exact percentiles in SQL over
  the whole window, a bounded sample per version for stratified bootstrap intervals, and
  the champion's 7-day baseline window as well;
* naive: read the window into pandas with `read_sql`, then group by version for the same
  percentiles and rates (point estimates only: no intervals, no strata, no baseline).

MiniLM relevance is left out of both (it embeds a fixed number of answers whatever the
window's size). Prints the median time and peak memory (RSS high-water mark above the
child's baseline after imports) of each, and their ratios. Target: >= 20x on both.

    .venv/bin/python bench/live.py [--rows 10000000] [--window-rows 1000000] [--repeats 3]
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
    import numpy as np  # noqa: F401  (imported before the baseline by both modes)
    import pandas as pd

    from lockgate.drift.windows import ResolvedWindow
    from lockgate.jobs.live import build_metrics, evaluate, read_inputs
    from lockgate.logs.db import make_engine
    from lockgate.logs.sampling import Window
    from lockgate.settings import load_policy

    policy = load_policy()
    engine = make_engine(url)
    with engine.connect() as conn:  # connect before the baseline so both pay the same
        conn.execute(sa.text("SELECT 1"))
    window = Window(datetime.fromisoformat(start), datetime.fromisoformat(end))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _rss_kb("VmRSS:")
    t0 = time.perf_counter()
    if mode == "lockgate":
        inputs = read_inputs(MODEL, "1", "2", None, ResolvedWindow(window, "fixed"), policy, embed_relevance=False)
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
    args = parser.parse_args()

    from sqlalchemy.engine import make_url

    admin = make_url(ADMIN_URL)
    dbname = f"lockgate_bench_{uuid.uuid4().hex[:8]}"
    admin_engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
    url = admin.set(database=dbname).render_as_string(hide_password=False)
    env = {**os.environ, "LOCKGATE_CONFIG": _policy_file(), "LOCKGATE_LOGS_DB_URL": url}
    try:
        build_table(url, args.rows)
        # The window: the last `window_rows` seconds of the table (its baseline, the 7 days before, is read too).
        end = START + timedelta(seconds=args.rows + 1)
        start = end - timedelta(seconds=args.window_rows)
        results: dict[str, list[dict[str, float]]] = {"lockgate": [], "naive": []}
        for i in range(args.repeats):
            for mode in ("lockgate", "naive") if i % 2 == 0 else ("naive", "lockgate"):
                r = run_child(mode, url, start, end, env)
                results[mode].append(r)
                print(f"  run {i + 1} {mode:8s} {r['seconds']:7.3f} s  peak {r['peak_mb']:8.1f} MB", flush=True)
        lg_t = statistics.median(r["seconds"] for r in results["lockgate"])
        nv_t = statistics.median(r["seconds"] for r in results["naive"])
        lg_m = statistics.median(r["peak_mb"] for r in results["lockgate"])
        nv_m = statistics.median(r["peak_mb"] for r in results["naive"])
        print(f"window: {args.window_rows:,} rows of {args.rows:,}; median of {args.repeats}")
        print(f"lockgate: {lg_t:.3f} s, peak {lg_m:.1f} MB (counts, rates, percentiles, intervals, strata, baseline)")
        print(f"naive   : {nv_t:.3f} s, peak {nv_m:.1f} MB (pandas: percentiles and rates, point estimates only)")
        print(f"time ratio (naive/lockgate):   {nv_t / lg_t:.1f}x  (target >= 20x)")
        print(f"memory ratio (naive/lockgate): {nv_m / lg_m:.1f}x  (target >= 20x)")
        ok = nv_t / lg_t >= 20 and nv_m / lg_m >= 20
        print("TARGET MET" if ok else "TARGET MISSED")
        return 0 if ok else 1
    finally:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))


if __name__ == "__main__":
    raise SystemExit(main())
