"""Evidence summaries in lockgate's state database: every run's, and which one is each model's latest.

This is the authoritative copy of the evidence, what the promotion reads (`read_latest`): one row
per run in `lockgate_evidence_summaries` (kind, model, run key; the `EvidenceSummary` as JSON) and,
on exactly one row per (kind, model), `is_latest`. The one publish step (`jobs.publish.publish_evidence`)
records each run here with `record_summary`, which is also the backfill guard: a run becomes the
latest unless the latest one describes a later window, so a backfill or the rerun of an old run
never replaces fresher evidence. The decision is taken in one transaction that locks the current
latest row (PostgreSQL; SQLite has one writer at a time), and a unique index on the latest row of
each (kind, model) turns two first runs at once into one winner and one retry.

The `latest.json` file beside the reports (`evidence.latest_summary_path`, in the reports store) is
a copy written after the row, for people and scripts; when the two disagree, the row is right. An
installation from before the database held the evidence imports those files once with
`lockgate evidence import-latest` (`import_latest_files`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from lockgate.errors import EvidenceError
from lockgate.evidence import EvidenceKind, EvidenceSummary
from lockgate.logs.db import make_engine
from lockgate.settings import resolve_state_db_url

if TYPE_CHECKING:
    from lockgate.reports.store import ReportStore

log = logging.getLogger(__name__)

metadata = sa.MetaData()
summaries_table = sa.Table(
    "lockgate_evidence_summaries",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("run_key", sa.Text, primary_key=True),
    sa.Column("window_end", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("is_latest", sa.Boolean, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),  # EvidenceSummary JSON
    sa.Index(
        "ux_lockgate_evidence_summaries_latest",
        "kind",
        "model_name",
        unique=True,
        postgresql_where=sa.text("is_latest"),
        sqlite_where=sa.text("is_latest"),
    ),
)


def _engine(engine: Engine | None) -> Engine:
    e = engine or make_engine(resolve_state_db_url())
    metadata.create_all(e, checkfirst=True)
    return e


def _parse(text: str, where: str) -> EvidenceSummary:
    try:
        return EvidenceSummary.model_validate_json(text)
    except ValidationError as exc:
        raise EvidenceError(f"malformed evidence summary {where}: {exc.errors()[0]['msg']}") from None


def supersedes(summary: EvidenceSummary, run_key: str, current: EvidenceSummary | None, current_key: str) -> bool:
    """Whether `summary` (of `run_key`) becomes the latest over `current` (pure).

    It does unless the current latest is another run that describes a later window; a rerun of the
    latest run replaces it.
    """
    if current is None or current_key == run_key:
        return True
    return not (
        current.window_end is not None and summary.window_end is not None and current.window_end > summary.window_end
    )


def _record(conn: Connection, summary: EvidenceSummary, run_key: str, force: bool) -> bool:
    t = summaries_table.c
    key = (t.kind == summary.kind, t.model_name == summary.model_name)
    row = conn.execute(sa.select(t.run_key, t.summary).where(*key, t.is_latest).with_for_update()).first()
    current = None
    if row is not None:
        try:
            current = _parse(row.summary, f"{summary.kind}/{summary.model_name}/{row.run_key}")
        except EvidenceError as exc:  # unreadable: the new run replaces it
            log.warning("%s", exc)
    latest = force or supersedes(summary, run_key, current, row.run_key if row is not None else "")
    if not latest:
        log.info(
            "%s %s: kept run %s as the latest, it describes a later window (%s)",
            summary.kind,
            summary.model_name,
            row.run_key if row is not None else None,
            current.window_end.isoformat() if current is not None and current.window_end else None,
        )
    elif row is not None:
        conn.execute(summaries_table.update().where(*key, t.is_latest).values(is_latest=False))
    conn.execute(summaries_table.delete().where(*key, t.run_key == run_key))
    conn.execute(
        summaries_table.insert().values(
            kind=summary.kind,
            model_name=summary.model_name,
            run_key=run_key,
            window_end=summary.window_end,
            created_at=summary.created_at,
            recorded_at=datetime.now(UTC),
            is_latest=latest,
            summary=summary.model_dump_json(),
        )
    )
    return latest


def record_summary(
    summary: EvidenceSummary, run_key: str, engine: Engine | None = None, *, force: bool = False
) -> bool:
    """Store a run's summary; True when it became the latest of its kind and model (the backfill guard).

    A rerun of `run_key` replaces its row. `force` makes it the latest whatever its window (hand-made
    evidence in tests and demos).
    """
    own = engine is None
    e = _engine(engine)
    try:
        try:
            with e.begin() as conn:
                return _record(conn, summary, run_key, force)
        except sa.exc.IntegrityError:
            # Another run of the same kind and model became the first latest meanwhile: decide again.
            with e.begin() as conn:
                return _record(conn, summary, run_key, force)
    finally:
        if own:
            e.dispose()


def _latest_rows(conn: Connection, model_name: str, kinds: Iterable[str]) -> dict[str, Any]:
    t = summaries_table.c
    if not sa.inspect(conn).has_table(summaries_table.name):
        return {}
    rows = conn.execute(
        sa.select(t.kind, t.run_key, t.summary).where(t.model_name == model_name, t.kind.in_(list(kinds)), t.is_latest)
    )
    return {r.kind: r for r in rows}


def read_latest(
    model_name: str, kinds: Iterable[EvidenceKind], conn: Connection | None = None
) -> tuple[dict[EvidenceKind, EvidenceSummary | None], dict[EvidenceKind, str]]:
    """The latest summary of each kind, as the promotion reads it; an unreadable one is None with the reason.

    `conn`: a connection to lockgate's state database (the promotion's, inside its lock); without
    one, the settings' state database.
    """
    kinds = list(kinds)
    if conn is None:
        engine = make_engine(resolve_state_db_url())
        try:
            with engine.connect() as own:
                return read_latest(model_name, kinds, own)
        finally:
            engine.dispose()
    rows = _latest_rows(conn, model_name, kinds)
    evidence: dict[EvidenceKind, EvidenceSummary | None] = {}
    errors: dict[EvidenceKind, str] = {}
    for kind in kinds:
        row = rows.get(kind)
        evidence[kind] = None
        if row is None:
            continue
        try:
            evidence[kind] = _parse(row.summary, f"{kind}/{model_name}/{row.run_key} (lockgate_evidence_summaries)")
        except EvidenceError as exc:
            log.warning("%s", exc)
            errors[kind] = str(exc)
    return evidence, errors


def latest_evidence(kind: EvidenceKind, model_name: str, conn: Connection | None = None) -> EvidenceSummary | None:
    """The latest summary of one kind for a model, None when there is none.

    Raises:
        EvidenceError: the stored summary does not parse.
    """
    evidence, errors = read_latest(model_name, [kind], conn)
    if kind in errors:
        raise EvidenceError(errors[kind])
    return evidence[kind]


def forget_model(model_name: str, engine: Engine | None = None) -> int:
    """Delete every stored summary of a model (the demo's clean slate); the number of rows deleted."""
    own = engine is None
    e = _engine(engine)
    try:
        with e.begin() as conn:
            result = conn.execute(summaries_table.delete().where(summaries_table.c.model_name == model_name))
        return int(result.rowcount or 0)
    finally:
        if own:
            e.dispose()


@dataclass
class LatestImport:
    """What `import_latest_files` did with each `latest.json` (store keys)."""

    became_latest: list[str] = field(default_factory=list)
    kept_as_history: list[str] = field(default_factory=list)
    """Recorded, but the state database's latest of that kind and model describes a later window."""
    already_recorded: list[str] = field(default_factory=list)
    malformed: dict[str, str] = field(default_factory=dict)
    """Quarantined: key -> why it was not imported (unreadable, or not the kind its folder names)."""


def _import_run_key(summary: EvidenceSummary) -> str:
    """The run a copied summary belongs to: its own run key, else its report's folder, else its content."""
    if summary.run_key:
        return summary.run_key
    if summary.report_path:
        return PurePosixPath(summary.report_path.replace("\\", "/")).parent.name
    return f"imported-{summary.content_hash[:12]}"


def import_latest_files(store: ReportStore, engine: Engine | None = None, *, dry_run: bool = False) -> LatestImport:
    """Record every `<kind>/<model>/latest.json` of the reports store in the state database.

    For an installation upgraded from before the state database held the evidence (the promotion
    reads only the database): without this, every model's gates would lack evidence until each job
    ran again. Idempotent: a run the database already holds is left as it is. The backfill guard
    applies, so a copy never replaces a latest that describes a later window. A file that does not
    parse, or whose kind is not its folder's, is reported and skipped.
    """
    result = LatestImport()
    keys = [k for k in store.list() if k.count("/") == 2 and k.endswith("/latest.json")]
    own = engine is None
    e = _engine(engine)
    t = summaries_table.c
    try:
        for key in keys:
            kind = key.split("/", 1)[0]
            try:
                summary = _parse(store.read_bytes(key).decode("utf-8", errors="replace"), key)
            except (EvidenceError, OSError) as exc:
                result.malformed[key] = str(exc)
                continue
            if summary.kind != kind:
                result.malformed[key] = f"a {summary.kind} summary in the {kind} folder"
                continue
            run_key = _import_run_key(summary)
            with e.connect() as conn, conn.begin() as transaction:
                held = conn.execute(
                    sa.select(t.run_key).where(
                        t.kind == summary.kind, t.model_name == summary.model_name, t.run_key == run_key
                    )
                ).first()
                if held is not None:
                    result.already_recorded.append(key)
                elif _record(conn, summary, run_key, force=False):
                    result.became_latest.append(key)
                else:
                    result.kept_as_history.append(key)
                if dry_run:  # the same decisions, none of them kept
                    transaction.rollback()
    finally:
        if own:
            e.dispose()
    return result
