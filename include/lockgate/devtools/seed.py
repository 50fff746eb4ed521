"""`lockgate logs seed`: synthetic traffic (`lockgate.devtools.synthetic`) written into the log store."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from lockgate.devtools.scenarios import get_scenario
from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.logs.db import check_connection, make_engine, safe_url
from lockgate.policy.schema import load_policy
from lockgate.settings import resolve_logs_db_url


def spec_from_args(args: argparse.Namespace) -> TrafficSpec:
    topic_drift = args.topic_drift
    length = args.prompt_length_factor
    latency = args.latency_factor
    degradation = args.quality_degradation
    ttft = tpot = None
    champion_degradation = 0.0
    previous = getattr(args, "previous_champion_version", None)
    if args.scenario:
        sc = get_scenario(args.scenario)
        topic_drift, length = sc.topic_drift, sc.prompt_length_factor
        latency, degradation = sc.challenger_latency_factor, sc.challenger_quality_degradation
        ttft, tpot = sc.challenger_ttft_factor, sc.challenger_tpot_factor
        champion_degradation = sc.champion_quality_degradation
    end = datetime.fromisoformat(args.current_end) if args.current_end else datetime.now(UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    # Round so that seeding twice within the same hour writes the same rows.
    end = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    champion = VersionTraffic(args.champion_version, quality_degradation=champion_degradation)
    current = [champion]
    if args.challenger_version:
        champion.share = 1 - args.canary_share
        current = [
            champion,
            VersionTraffic(
                args.challenger_version,
                share=args.canary_share,
                latency_factor=latency,
                ttft_factor=ttft,
                tpot_factor=tpot,
                quality_degradation=degradation,
            ),
        ]
    # With a previous champion, the reference week is its traffic beside the champion's canary.
    reference = [VersionTraffic(args.champion_version)]
    if previous:
        reference = [
            VersionTraffic(previous, share=1 - args.canary_share),
            VersionTraffic(args.champion_version, share=args.canary_share),
        ]
    return TrafficSpec(
        model_name=args.model,
        reference_start=end - timedelta(days=args.current_days + args.reference_days),
        reference_days=args.reference_days,
        current_days=args.current_days,
        reference_rows=args.reference_rows,
        current_rows=args.current_rows,
        reference_versions=reference,
        current_versions=current,
        rag_share=args.rag_share,
        topic_drift=topic_drift,
        prompt_length_factor=length,
        malformed_rate=args.malformed_rate,
        pii_rate=args.pii_rate,
        hostile_rate=args.hostile_rate,
        seed=args.seed,
    )


def cmd_seed(args: argparse.Namespace) -> int:
    policy = load_policy()
    url = args.db_url or resolve_logs_db_url()
    engine = make_engine(url)
    check_connection(engine)
    spec = spec_from_args(args)
    n = seed_logs(engine, spec, policy.logs)
    print(
        f"seeded {n} rows for {spec.model_name} into {safe_url(url)}: "
        f"reference [{spec.reference_start:%Y-%m-%d %H:%M}, {spec.reference_end:%Y-%m-%d %H:%M}), "
        f"current [{spec.current_start:%Y-%m-%d %H:%M}, {spec.current_end:%Y-%m-%d %H:%M}) UTC"
    )
    return 0
