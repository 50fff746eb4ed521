"""`lockgate logs migrate-sample-index` (`lockgate logs seed` is dev tooling: `lockgate.devtools.seed`)."""

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
