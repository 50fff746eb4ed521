"""Lockgate's own record of what happened to a model: the audit trail, the decision history, and the move lock.

Tables in lockgate's state database (`resolve_state_db_url()`: PostgreSQL in a deployment,
SQLite embedded):

* `lockgate_audit`: every alias move and approval event with actor, from, to, evidence hash,
  policy hash and time. Rows carry a `dedupe_key`, so repeating a run adds nothing.
* `lockgate_decisions`: every decision (action, outcome, reasons, the full JSON), one row per
  distinct decision of a run.

`model_lock()` serialises promotions of one model across processes (DAG runs, the CLI):
`pg_advisory_xact_lock` on PostgreSQL, a `BEGIN IMMEDIATE` transaction on SQLite, a locked row
elsewhere. The Airflow pool `lockgate_promotion` serialises DAG runs on top of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lockgate.errors import ConfigError
from lockgate.logs.db import make_engine
from lockgate.policy.model import Decision
from lockgate.settings import resolve_state_db_url

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000  # what lockgate.logs.db.make_engine sets on every SQLite connection

metadata = sa.MetaData()

audit_table = sa.Table(
    "lockgate_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("version", sa.Text),
    sa.Column("alias", sa.Text),
    sa.Column("from_version", sa.Text),
    sa.Column("to_version", sa.Text),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("approved_by", sa.Text),
    sa.Column("evidence_hash", sa.Text),
    sa.Column("policy_hash", sa.Text),
    sa.Column("run_key", sa.Text),
    sa.Column("message", sa.Text),
    sa.Column("dedupe_key", sa.Text, unique=True),
    sa.Index("ix_lockgate_audit_model_at", "model_name", "at"),
)

decisions_table = sa.Table(
    "lockgate_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("run_key", sa.Text, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("champion", sa.Text),
    sa.Column("challenger", sa.Text),
    sa.Column("previous_champion", sa.Text),
    sa.Column("target", sa.Text),
    sa.Column("evidence_hash", sa.Text, nullable=False),
    sa.Column("policy_hash", sa.Text, nullable=False),
    sa.Column("report_path", sa.Text),
    sa.Column("dag_id", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.UniqueConstraint("model_name", "run_key", name="uq_lockgate_decisions_run"),
    sa.Index("ix_lockgate_decisions_model_at", "model_name", "decided_at"),
)

AUDIT_KINDS = (
    "alias_move",
    "alias_removed",
    "approval",
    "rejection",
    "approval_refused",
    "approval_reset",
    "move_aborted",
)


@dataclass(frozen=True)
class AuditEntry:
    """One audit row. `kind` is one of `AUDIT_KINDS`."""

    model_name: str
    kind: str
    actor: str
    version: str | None = None
    alias: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    approved_by: str | None = None
    evidence_hash: str | None = None
    policy_hash: str | None = None
    run_key: str | None = None
    message: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    dedupe_key: str | None = None
    id: int | None = None


def state_engine(url: str | None = None) -> Engine:
    """An engine on lockgate's state database with the tables created (idempotent)."""
    engine = make_engine(url or resolve_state_db_url())
    metadata.create_all(engine, checkfirst=True)
    return engine


def _utc(t: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes; everything lockgate stores is UTC.
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def record_audit(conn: Connection, entry: AuditEntry) -> bool:
    """Insert an audit row unless one with the same `dedupe_key` exists; True when inserted."""
    values = {k: v for k, v in entry.__dict__.items() if k != "id"}
    if entry.dedupe_key is not None:
        exists = conn.execute(sa.select(audit_table.c.id).where(audit_table.c.dedupe_key == entry.dedupe_key)).first()
        if exists:
            return False
    conn.execute(audit_table.insert().values(**values))
    log.info(
        "audit %s: %s %s%s by %s",
        entry.model_name,
        entry.kind,
        entry.alias or entry.version or "",
        f" {entry.from_version} -> {entry.to_version}" if entry.alias else "",
        entry.actor,
    )
    return True


STICKY_OUTCOMES = ("moved", "repaired")


def record_decision(conn: Connection, decision: Decision, dag_id: str | None = None, run_id: str | None = None) -> bool:
    """Keep a run's decision in the history, one row per (model, run key); True when written.

    A rerun of the same run replaces its row, except that a row recording a move is kept: the
    rerun's `no_op` is a consequence of that move, not a new decision.
    """
    run_key = decision.run_key or ""
    where = (decisions_table.c.model_name == decision.model_name, decisions_table.c.run_key == run_key)
    values = {
        "model_name": decision.model_name,
        "run_key": run_key,
        "decided_at": decision.decided_at,
        "action": decision.action,
        "outcome": decision.outcome,
        "dry_run": decision.dry_run,
        "champion": decision.champion,
        "challenger": decision.challenger,
        "previous_champion": decision.previous_champion,
        "target": decision.target,
        "evidence_hash": decision.evidence_hash,
        "policy_hash": decision.policy_hash,
        "report_path": decision.report_path,
        "dag_id": dag_id,
        "run_id": run_id,
        "reasons": json.dumps(decision.reasons),
        "decision": decision.model_dump_json(),
    }
    existing = conn.execute(sa.select(decisions_table.c.outcome).where(*where)).first()
    if existing is None:
        conn.execute(decisions_table.insert().values(**values))
        return True
    if existing.outcome in STICKY_OUTCOMES:
        return False
    conn.execute(decisions_table.update().where(*where).values(**values))
    return True


def list_audit(engine: Engine, model_name: str, limit: int = 50, kind: str | None = None) -> list[AuditEntry]:
    """The newest audit rows of a model, newest first."""
    stmt = (
        sa.select(audit_table)
        .where(audit_table.c.model_name == model_name)
        .order_by(audit_table.c.at.desc(), audit_table.c.id.desc())
        .limit(limit)
    )
    if kind:
        stmt = stmt.where(audit_table.c.kind == kind)
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [AuditEntry(**{**dict(r), "at": _utc(r["at"])}) for r in rows]


@dataclass(frozen=True)
class DecisionRow:
    model_name: str
    run_key: str
    decided_at: datetime
    action: str
    outcome: str | None
    dry_run: bool
    champion: str | None
    challenger: str | None
    target: str | None
    evidence_hash: str
    policy_hash: str
    report_path: str | None
    reasons: list[str]


def list_decisions(engine: Engine, model_name: str, limit: int = 20) -> list[DecisionRow]:
    """The newest decisions of a model, newest first."""
    stmt = (
        sa.select(decisions_table)
        .where(decisions_table.c.model_name == model_name)
        .order_by(decisions_table.c.decided_at.desc(), decisions_table.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [
        DecisionRow(
            model_name=r["model_name"],
            run_key=r["run_key"],
            decided_at=_utc(r["decided_at"]) or datetime.now(UTC),
            action=r["action"],
            outcome=r["outcome"],
            dry_run=bool(r["dry_run"]),
            champion=r["champion"],
            challenger=r["challenger"],
            target=r["target"],
            evidence_hash=r["evidence_hash"],
            policy_hash=r["policy_hash"],
            report_path=r["report_path"],
            reasons=json.loads(r["reasons"]),
        )
        for r in rows
    ]


def _lock_key(model_name: str) -> int:
    # A signed 64-bit key per model: two models may be promoted at the same time.
    return int.from_bytes(hashlib.sha256(f"lockgate:{model_name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def model_lock(engine: Engine, model_name: str, timeout_s: float = 120) -> Iterator[Connection]:
    """Hold the promotion lock of one model; yields the connection (in a transaction) to write audit rows on.

    The transaction is committed even when the body raises: its rows describe registry writes
    that already happened (MLflow is not part of the transaction) and must not be lost.

    Raises:
        TimeoutError: another promotion held the lock for longer than `timeout_s` (transient: retried).
        ConfigError: the state database is neither PostgreSQL nor SQLite.
    """
    backend = engine.url.get_backend_name()
    timeout_ms = max(1, int(timeout_s * 1000))
    if backend == "sqlite":
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            # Without the driver's implicit transactions, BEGIN IMMEDIATE takes SQLite's write lock now
            # (waiting busy_timeout for it): the database-wide lock is the model lock.
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {timeout_ms}")
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except sa.exc.OperationalError as exc:
                raise TimeoutError(f"promotion lock of {model_name!r} not acquired in {timeout_s:g} s: {exc}") from exc
            finally:
                # the connection goes back to the pool: restore make_engine's wait for other users
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            try:
                yield conn
            finally:
                conn.exec_driver_sql("COMMIT")
        finally:
            conn.close()
        return
    if backend != "postgresql":
        raise ConfigError(
            f"lockgate's state database must be PostgreSQL or SQLite, not {backend}", key="LOCKGATE_STATE_DB_URL"
        )
    conn = engine.connect()
    trans = conn.begin()
    try:
        try:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout_ms}")
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(model_name)})
        except sa.exc.OperationalError as exc:
            raise TimeoutError(f"promotion lock of {model_name!r} not acquired in {timeout_s:g} s: {exc}") from exc
        try:
            yield conn
        finally:
            try:
                trans.commit()
            except sa.exc.SQLAlchemyError:
                trans.rollback()
                raise
    finally:
        conn.close()


def audit_to_dict(entry: AuditEntry) -> dict[str, Any]:
    d = dict(entry.__dict__)
    d["at"] = entry.at.isoformat() if entry.at else None
    return d
