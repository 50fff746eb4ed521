"""`lockgate evidence import-latest`: the one-off import of `latest.json` copies after an upgrade."""

from __future__ import annotations

import argparse
import sys


def cmd_import_latest(args: argparse.Namespace) -> int:
    """Record the reports store's `latest.json` files in the state database (see `import_latest_files`).

    Exit status 1 when a file could not be imported (each is named, with why).
    """
    from lockgate.logs.db import check_connection, make_engine, safe_url
    from lockgate.reports.store import reports_store
    from lockgate.reports.summaries import import_latest_files
    from lockgate.settings import resolve_state_db_url

    url = resolve_state_db_url()
    engine = make_engine(url)
    try:
        check_connection(engine)
        store = reports_store()
        result = import_latest_files(store, engine, dry_run=args.dry_run)
    finally:
        engine.dispose()
    verb = "would be" if args.dry_run else "is"
    for key in result.became_latest:
        print(f"{key}: {verb} now the latest of its kind and model")
    for key in result.kept_as_history:
        print(f"{key}: {verb} recorded as history (the database's latest describes a later window)")
    for key in result.already_recorded:
        print(f"{key}: already in the database, left as it is")
    for key, why in result.malformed.items():
        print(f"{key}: not imported: {why}", file=sys.stderr)
    where = store.url or str(store.reports_dir)
    print(
        f"{'dry run: ' if args.dry_run else ''}{where} -> {safe_url(url)}: {len(result.became_latest)} latest, "
        f"{len(result.kept_as_history)} history, {len(result.already_recorded)} already there, "
        f"{len(result.malformed)} not imported"
    )
    return 1 if result.malformed else 0
