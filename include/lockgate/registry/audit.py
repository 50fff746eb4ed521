"""Lockgate's own record of what happened to a model: the audit trail, the decision history, and the move lock.

Tables in lockgate's state database (`resolve_state_db_url()`: PostgreSQL in a deployment,
SQLite embedded):

* `lockgate_audit`: every alias move and approval event with actor, from, to, evidence hash,
  policy hash and time. Rows carry a `dedupe_key`, so repeating a run adds nothing.
* `lockgate_decisions`: every decision (action, outcome, reasons, the full JSON), one row per
  distinct decision of a run.
* `lockgate_intents`: a move decision before it touches the registry: the decision, the approver,
  the planned alias moves in order, and how many of them are done. Committed before the first
  MLflow write and advanced after each one, so a run that dies anywhere leaves a record that the
  next run finishes (`lockgate.registry.moves.reconcile`).
* `lockgate_verified_approvals`: approvals whose approver an authentication system vouched for
  (Airflow's auth manager, for an answer in its Required actions inbox), written by the lockgate
  task that received the answer. Approval tags in MLflow say only what someone typed; a tag
  approval that matches a row here exactly is the verified one (`find_verified_approval`).

`model_lock()` serialises promotions of one model across processes (DAG runs, the CLI): a
session-level advisory lock on PostgreSQL, an exclusive `flock` on a file beside a SQLite
database. Both die with the process that holds them (`kill -9` included). The connection it
yields commits every statement at once: an audit row is durable as soon as it is written,
because the MLflow write it describes is too. The Airflow pool `lockgate_promotion` serialises
DAG runs on top of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lockgate.errors import ConfigError
from lockgate.logs.db import make_engine
from lockgate.policy.model import ApprovalRecord, Decision
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
    sa.Column("approval_auth", sa.Text),
    sa.Index("ix_lockgate_audit_model_at", "model_name", "at"),
)

# Columns added after a table was first shipped: `state_engine` adds them to an older database.
ADDED_COLUMNS = {"lockgate_audit": (("approval_auth", "TEXT"),)}

intents_table = sa.Table(
    "lockgate_intents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("run_key", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("approved_by", sa.Text),
    sa.Column("approval_auth", sa.Text),
    sa.Column("evidence_hash", sa.Text, nullable=False),
    sa.Column("policy_hash", sa.Text, nullable=False),
    sa.Column("dag_id", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("moves", sa.Text, nullable=False),
    sa.Column("done", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("reason", sa.Text),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Index("ix_lockgate_intents_model_status", "model_name", "status"),
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

verified_approvals_table = sa.Table(
    "lockgate_verified_approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("approved_by", sa.Text, nullable=False),
    sa.Column("user_name", sa.Text),
    sa.Column("evidence_hash", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("source_ref", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("source", "source_ref", name="uq_lockgate_verified_approvals_ref"),
    sa.Index("ix_lockgate_verified_approvals_version", "model_name", "version"),
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
ALIAS_KINDS = ("alias_move", "alias_removed")
INTENT_STATUSES = ("open", "done", "abandoned")


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
    approval_auth: str | None = None
    """`unauthenticated` when the approver's name was only asserted (a tag, `--by`)."""
    id: int | None = None


_UPGRADED: set[str] = set()


def state_engine(url: str | None = None) -> Engine:
    """An engine on lockgate's state database with the tables created (idempotent)."""
    resolved = url or resolve_state_db_url()
    engine = make_engine(resolved)
    metadata.create_all(engine, checkfirst=True)
    if resolved not in _UPGRADED:  # one inspection per database and process
        _add_missing_columns(engine)
        _UPGRADED.add(resolved)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    inspector = sa.inspect(engine)
    for table, columns in ADDED_COLUMNS.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        for name, sql_type in columns:
            if name in present:
                continue
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
            except sa.exc.DBAPIError:  # added by a concurrent process meanwhile
                log.debug("column %s.%s already added", table, name)


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
class VerifiedApproval:
    """An approval or rejection whose approver an authentication system vouched for."""

    model_name: str
    version: str
    value: str
    """`approved` or `rejected`."""
    approved_by: str
    """The identity the authentication system gave (compared with the policy's approvers)."""
    evidence_hash: str
    at: datetime
    source: str
    """Which system vouched: `airflow_hitl` (Airflow's Required actions inbox)."""
    source_ref: str
    """Which answer of that source (for Airflow: the task instance that asked), unique per source."""
    user_name: str | None = None
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


# Timestamps come back from SQLite as text parsed again, from PostgreSQL at microsecond precision.
VERIFIED_AT_TOLERANCE_S = 1.0


def record_verified_approval(conn: Connection, approval: VerifiedApproval) -> bool:
    """Store a verified approval once per (source, source_ref); True when inserted."""
    exists = conn.execute(
        sa.select(verified_approvals_table.c.id).where(
            verified_approvals_table.c.source == approval.source,
            verified_approvals_table.c.source_ref == approval.source_ref,
        )
    ).first()
    if exists:
        return False
    conn.execute(verified_approvals_table.insert().values(**approval.__dict__))
    return True


def find_verified_approval(
    conn: Connection,
    model_name: str,
    version: str,
    *,
    value: str,
    approved_by: str,
    evidence_hash: str | None,
    at: datetime | None,
) -> VerifiedApproval | None:
    """The verified approval that an approval read from tags is, or None.

    All of value, approver, evidence and time must match: tags someone edited afterwards (another
    name, another value) or an approval retyped later under the same name are not vouched for.
    """
    if evidence_hash is None or at is None:
        return None
    rows = conn.execute(
        sa.select(verified_approvals_table).where(
            verified_approvals_table.c.model_name == model_name,
            verified_approvals_table.c.version == version,
            verified_approvals_table.c.value == value,
            verified_approvals_table.c.approved_by == approved_by,
            verified_approvals_table.c.evidence_hash == evidence_hash,
        )
    ).mappings()
    wanted = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    for r in rows:
        row_at = _utc(r["at"])
        if row_at is not None and abs((row_at - wanted).total_seconds()) <= VERIFIED_AT_TOLERANCE_S:
            return VerifiedApproval(**{k: v for k, v in r.items() if k != "id"} | {"at": row_at})
    return None


def vouched(record: ApprovalRecord | None, conn: Connection, model_name: str, version: str) -> ApprovalRecord | None:
    """The approval read from tags, with `authenticated_as` set when it is a verified approval."""
    if record is None:
        return None
    by = (record.by or "").strip()
    value = (record.value or "").strip().lower()
    if not by or not value:
        return record
    found = find_verified_approval(
        conn, model_name, version, value=value, approved_by=by, evidence_hash=record.evidence_hash, at=record.at
    )
    return record.model_copy(update={"authenticated_as": found.approved_by}) if found else record


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


_LOCAL_LOCKS: dict[str, threading.Lock] = {}
_LOCAL_LOCKS_GUARD = threading.Lock()


@contextmanager
def _file_lock(path: str, model_name: str, timeout_s: float) -> Iterator[None]:
    import fcntl

    deadline = time.monotonic() + timeout_s
    with open(path, "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"promotion lock of {model_name!r} not acquired in {timeout_s:g} s (held by another run)"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def _process_lock(key: str, model_name: str, timeout_s: float) -> Iterator[None]:
    # An in-memory SQLite database lives in one process: a lock of that process is enough.
    with _LOCAL_LOCKS_GUARD:
        lock = _LOCAL_LOCKS.setdefault(key, threading.Lock())
    if not lock.acquire(timeout=timeout_s):
        raise TimeoutError(f"promotion lock of {model_name!r} not acquired in {timeout_s:g} s (held by another run)")
    try:
        yield
    finally:
        lock.release()


APPROVAL_LOCK_TIMEOUT_S = 120.0
"""How long an approval (`lockgate approve`, an inbox answer) waits for another answer or a running
promotion of the same model to release `model_lock`."""


@contextmanager
def model_lock(engine: Engine, model_name: str, timeout_s: float = 120) -> Iterator[Connection]:
    """Hold the promotion lock of one model; yields a connection that commits every statement at once.

    Every row written through it is durable the moment it is written: the rows describe MLflow
    writes, which are not part of any transaction here either. The lock is not a transaction, so
    committing does not release it, and it dies with the process that holds it.

    Raises:
        TimeoutError: another promotion held the lock for longer than `timeout_s` (transient: retried).
        ConfigError: the state database is neither PostgreSQL nor SQLite.
    """
    backend = engine.url.get_backend_name()
    timeout_ms = max(1, int(timeout_s * 1000))
    if backend == "sqlite":
        database = engine.url.database
        digest = hashlib.sha256(model_name.encode()).hexdigest()[:16]
        if database and database != ":memory:":
            guard = _file_lock(f"{database}.{digest}.lock", model_name, timeout_s)
        else:
            guard = _process_lock(f"{id(engine)}:{digest}", model_name, timeout_s)
        with guard, engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn
        return
    if backend != "postgresql":
        raise ConfigError(
            f"lockgate's state database must be PostgreSQL or SQLite, not {backend}", key="LOCKGATE_STATE_DB_URL"
        )
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    key = {"k": _lock_key(model_name)}
    try:
        try:
            conn.exec_driver_sql(f"SET lock_timeout = {timeout_ms}")
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), key)
        except sa.exc.OperationalError as exc:
            raise TimeoutError(f"promotion lock of {model_name!r} not acquired in {timeout_s:g} s: {exc}") from exc
        finally:
            conn.exec_driver_sql("RESET lock_timeout")
        try:
            yield conn
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), key)
            except sa.exc.SQLAlchemyError:
                # a session lock must never go back to the pool: drop the connection, and the lock with it
                conn.invalidate()
                raise
    finally:
        conn.close()


# --------------------------------------------------------------------------- intents


@dataclass(frozen=True)
class PlannedMove:
    """One alias write of an intent: `alias` from `from_version` to `to_version` (None: removed).

    `guards` are other aliases that must still point where the decision saw them for the move to
    be made (not for a move found already made).
    """

    alias: str
    from_version: str | None
    to_version: str | None
    why: str
    guards: Mapping[str, str | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "from": self.from_version,
            "to": self.to_version,
            "why": self.why,
            "guards": dict(self.guards),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlannedMove:
        return cls(
            alias=data["alias"],
            from_version=data.get("from"),
            to_version=data.get("to"),
            why=data.get("why") or "",
            guards=dict(data.get("guards") or {}),
        )


@dataclass(frozen=True)
class Intent:
    """A move decision as committed before its first registry write (`lockgate_intents`)."""

    id: int
    model_name: str
    run_key: str
    created_at: datetime
    action: str
    actor: str
    approved_by: str | None
    approval_auth: str | None
    evidence_hash: str
    policy_hash: str
    moves: tuple[PlannedMove, ...]
    done: int
    status: str
    decision: Decision
    dag_id: str | None = None
    run_id: str | None = None
    reason: str | None = None


def open_intent(
    conn: Connection,
    decision: Decision,
    moves: Iterable[PlannedMove],
    *,
    actor: str,
    approval_auth: str | None,
    at: datetime,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> Intent:
    """Record a move decision before its first registry write; `conn` must commit at once (`model_lock`)."""
    planned = tuple(moves)
    approved_by = decision.approval.by if decision.approval and decision.approval.status == "approved" else None
    values = {
        "model_name": decision.model_name,
        "run_key": decision.run_key or "",
        "created_at": at,
        "action": decision.action,
        "actor": actor,
        "approved_by": approved_by,
        "approval_auth": approval_auth if approved_by else None,
        "evidence_hash": decision.evidence_hash,
        "policy_hash": decision.policy_hash,
        "dag_id": dag_id,
        "run_id": run_id,
        "moves": json.dumps([m.as_json() for m in planned]),
        "done": 0,
        "status": "open",
        "decision": decision.model_dump_json(),
    }
    key = conn.execute(intents_table.insert().values(**values)).inserted_primary_key
    if key is None:
        raise RuntimeError("the state database returned no id for the new intent")
    new_id = int(key[0])
    log.info(
        "%s: intent %s recorded: %s, %d move(s), approved by %s",
        decision.model_name,
        new_id,
        decision.action,
        len(planned),
        approved_by or "-",
    )
    return _intent_from_row({**values, "id": new_id, "reason": None})


def _intent_from_row(row: Mapping[str, Any]) -> Intent:
    return Intent(
        id=int(row["id"]),
        model_name=row["model_name"],
        run_key=row["run_key"],
        created_at=_utc(row["created_at"]) or datetime.now(UTC),
        action=row["action"],
        actor=row["actor"],
        approved_by=row["approved_by"],
        approval_auth=row["approval_auth"],
        evidence_hash=row["evidence_hash"],
        policy_hash=row["policy_hash"],
        moves=tuple(PlannedMove.from_json(m) for m in json.loads(row["moves"])),
        done=int(row["done"] or 0),
        status=row["status"],
        decision=Decision.model_validate_json(row["decision"]),
        dag_id=row["dag_id"],
        run_id=row["run_id"],
        reason=row["reason"],
    )


def open_intents(conn: Connection, model_name: str) -> list[Intent]:
    """Intents of a model that a run began and did not finish, oldest first."""
    rows = (
        conn.execute(
            sa.select(intents_table)
            .where(intents_table.c.model_name == model_name, intents_table.c.status == "open")
            .order_by(intents_table.c.id)
        )
        .mappings()
        .all()
    )
    return [_intent_from_row(dict(r)) for r in rows]


def list_intents(engine: Engine, model_name: str, limit: int = 20) -> list[Intent]:
    """The newest intents of a model, newest first."""
    stmt = (
        sa.select(intents_table)
        .where(intents_table.c.model_name == model_name)
        .order_by(intents_table.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [_intent_from_row(dict(r)) for r in rows]


def mark_move_done(conn: Connection, intent: Intent, index: int, entry: AuditEntry | None) -> None:
    """Record move `index` of an intent as done, after its audit row.

    Dying between the two is harmless: the next run finds the move made, records it done, and the
    audit row's dedupe key keeps it single.
    """
    if entry is not None:
        record_audit(conn, entry)
    conn.execute(
        intents_table.update()
        .where(intents_table.c.id == intent.id, intents_table.c.done < index + 1)
        .values(done=index + 1)
    )


def close_intent(conn: Connection, intent: Intent, status: str, at: datetime, reason: str | None = None) -> None:
    """Mark an intent `done` or `abandoned` (with the reason)."""
    if status not in INTENT_STATUSES[1:]:
        raise ValueError(f"an intent closes as done or abandoned, not {status!r}")
    conn.execute(
        intents_table.update()
        .where(intents_table.c.id == intent.id)
        .values(status=status, finished_at=at, reason=reason)
    )


def replay_audit(entries: Iterable[AuditEntry], start: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """Where the aliases point after applying the audit trail's moves, in the order written, to `start`.

    Raises:
        ValueError: a move starts from where the trail says the alias did not point: a move is missing.
    """
    aliases: dict[str, str | None] = dict(start or {})
    for e in sorted(entries, key=lambda a: a.id or 0):
        if e.kind not in ALIAS_KINDS or e.alias is None:
            continue
        if aliases.get(e.alias) != e.from_version:
            raise ValueError(
                f"audit row {e.id}: {e.alias} moved from {e.from_version}, "
                f"but the trail has it at {aliases.get(e.alias)}"
            )
        aliases[e.alias] = e.to_version if e.kind == "alias_move" else None
    return aliases


def audit_to_dict(entry: AuditEntry) -> dict[str, Any]:
    d = dict(entry.__dict__)
    d["at"] = entry.at.isoformat() if entry.at else None
    return d
