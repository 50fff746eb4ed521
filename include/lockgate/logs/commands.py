"""`lockgate logs migrate-sample-index` and `lockgate logs forget-rollups` (`lockgate logs seed` is dev tooling:
`lockgate.devtools.seed`)."""

from __future__ import annotations

import argparse

from lockgate.logs.db import check_connection, make_engine, safe_url
from lockgate.policy.schema import load_policy
from lockgate.settings import resolve_logs_db_url


def cmd_migrate_sample_index(args: argparse.Namespace) -> int:
    """Add the optional stored sample hash and its index (see lockgate.logs.schema.migrate_sample_index)."""
    from lockgate.logs.schema import migrate_sample_index, sample_index_sql

    policy = load_policy()
    seed = policy.statistics.seed if args.seed is None else args.seed
    url = args.db_url or resolve_logs_db_url()
    engine = make_engine(url)
    if args.print_sql:
        for statement in sample_index_sql(engine, seed, policy.logs):
            print(f"{statement};")
        return 0
    check_connection(engine)
    for statement in migrate_sample_index(engine, seed, policy.logs):
        print(f"ran: {statement}")
    print(
        f"{policy.logs.table} in {safe_url(url)}: samples with seed {seed} now read the index in hash order; "
        "other seeds rank every row of the window as before"
    )
    return 0


def cmd_forget_rollups(args: argparse.Namespace) -> int:
    """Drop the live job's stored hours of a model (see lockgate.live.rollups.forget_rollups)."""
    from datetime import UTC, datetime

    from lockgate.errors import ConfigError
    from lockgate.live.rollups import forget_rollups
    from lockgate.settings import resolve_state_db_url

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            raise ConfigError(f"--since must be an ISO date or time, got {args.since!r}", key="--since") from None
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    engine = make_engine(resolve_state_db_url())
    check_connection(engine)
    n = forget_rollups(engine, args.model, since)
    print(
        f"{n} stored hours of {args.model} dropped"
        + (f" from {since.isoformat()} on" if since else "")
        + ": the next live run aggregates them again from the logs"
    )
    return 0
