"""How many of the daily drift run's current-window texts the hourly live job has already embedded.

Both jobs embed through the same cache (`lockgate.embeddings.EmbeddingCache`, one SQLite file per
model under LOCKGATE_HOME) and both sample by the same seeded hash of request_id
(`lockgate.logs.sampling`): the drift job embeds the prompt and response of the first
`drift.embedding_sample_size` rows of its sample, the n smallest hashes of the day over every
version; the live job embeds the prompt and answer of the first `live.relevance_sample_size`
answered rows of each version's sample, the smallest hashes of that version in the 24 hours before
each hourly run. A row among the day's smallest hashes is among its version's smallest, so where the
live DAG runs on the same LOCKGATE_HOME, most of what the daily drift run would encode is already in
the cache when it starts, and the drift run's own encoding is the rest.

This script seeds one day of synthetic traffic (a champion and a canary, PII in some prompts, so that
redaction is part of the texts compared) into a temporary SQLite log table, draws both jobs' samples
with the shipped policy, and prints the share of the drift run's distinct texts that the live run of
23:15 (the last before the daily run at midnight) and the day's 24 live runs embedded. It draws the
samples the jobs draw and encodes nothing: the share is exact, the time it saves is not measured here
(bench/drift.py's `daily` mode still encodes the whole current window).

    .venv/bin/python bench/embedding_reuse.py [--rows 20000] [--canary-share 0.1] [--pii-rate 0.1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="requests in the day")
    parser.add_argument("--canary-share", type=float, default=0.1, help="the challenger's share of them")
    parser.add_argument("--pii-rate", type=float, default=0.1, help="share of prompts with personal data to redact")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
    from lockgate.drift.analysis import _embedding_inputs
    from lockgate.drift.windows import resolve_current
    from lockgate.jobs.live.inputs import relevance_texts
    from lockgate.logs.aggregates import attach_texts, physical_columns, resolve_cached_tokens, sample_versions
    from lockgate.logs.db import make_engine
    from lockgate.logs.redaction import Redactor
    from lockgate.logs.sampling import Window, logs_frame, sample_inference_logs
    from lockgate.policy.schema import load_policy
    from lockgate.settings import DEFAULT_POLICY_PATH

    policy = load_policy(DEFAULT_POLICY_PATH)
    spec = TrafficSpec(
        model_name="bench",
        reference_start=datetime(2026, 1, 1, tzinfo=UTC),
        reference_rows=500,
        current_rows=args.rows,
        current_versions=[
            VersionTraffic("1", share=1 - args.canary_share),
            VersionTraffic("2", share=args.canary_share),
        ],
        pii_rate=args.pii_rate,
        seed=args.seed,
    )
    seed = policy.statistics.seed
    redact = Redactor(policy.redaction)
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-reuse-") as tmp:
        engine = make_engine(f"sqlite:///{tmp}/logs.db")
        seed_logs(engine, spec, policy.logs)
        day = Window(spec.current_start, spec.current_end)

        # The drift job's current window: its sample, then the rows it embeds (lockgate.drift.analysis).
        sample = sample_inference_logs(
            engine, spec.model_name, day, policy.drift.sample_size, seed, None, policy.logs, redact
        )
        frame = logs_frame(sample.rows)
        n = policy.drift.embedding_sample_size
        drift_texts = set(_embedding_inputs(frame, "prompt", n)) | set(_embedding_inputs(frame, "response", n))

        # The live job's run ending at `end`: each version's sample, then the answers it embeds
        # (lockgate.jobs.live.inputs: its current window is the hourly interval widened to 24 hours).
        cached = resolve_cached_tokens(engine, policy.logs, physical_columns(engine, policy.logs))

        def live_texts(end: datetime) -> set[str]:
            window = resolve_current(policy.models[0].windows.current, (end - timedelta(hours=1), end), end).window
            samples = sample_versions(
                engine, spec.model_name, window, ["1", "2"], policy.live.sample_size, seed, policy.logs, cached
            )
            texts: set[str] = set()
            for rows in samples.values():
                answered = attach_texts(engine, rows, policy.live.relevance_sample_size, policy.logs)
                _, prompts, answers = relevance_texts(answered, policy)
                texts.update(prompts, answers)
            return texts

        runs = [spec.current_start + timedelta(hours=h, minutes=15) for h in range(24)]
        last = live_texts(runs[-1])
        day_runs = set(last).union(*(live_texts(end) for end in runs[:-1]))
        engine.dispose()

    total = len(drift_texts)
    print(
        f"one synthetic day: {sample.window_rows:,} requests, canary share {args.canary_share:g}, "
        f"PII in {args.pii_rate:.0%} of prompts (SQLite)"
    )
    print(
        f"drift's daily run embeds {total} distinct texts of its current window "
        f"(prompt and response of its first {n} sampled rows)"
    )
    for label, texts in (("the live run of 23:15", last), ("the day's 24 live runs", day_runs)):
        hit = len(drift_texts & texts)
        print(f"already embedded by {label}: {hit} ({hit / max(total, 1):.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
