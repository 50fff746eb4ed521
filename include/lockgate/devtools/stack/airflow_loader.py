"""Write connections, pools and variables into an Airflow metadata database (create or update).

Run as `python -m lockgate.devtools.stack.airflow_loader SPEC.json OUT.json` by `settings apply`,
in a subprocess whose environment is the target Airflow's: Airflow reads its
configuration (database URL, Fernet key) once at import, so the CLI process never
imports it. The result (or a classified error) is written to OUT.json rather than
stdout, which Airflow's own logging may share.

Idempotent: a value equal to the stored one is `unchanged`, so a second run changes
nothing. Only the fields the Astro file can express are compared and written (a
connection's description set in the UI is kept). It uses Airflow's ORM models
(airflow.models.*), not the task SDK's classes of the same names: it writes the
metadata database directly.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _apply_connection(session: Any, spec: dict[str, Any]) -> str:
    from airflow.models.connection import Connection
    from sqlalchemy import select

    if spec.get("uri"):
        desired = Connection(conn_id=spec["conn_id"], uri=spec["uri"])
    else:
        desired = Connection(
            conn_id=spec["conn_id"],
            conn_type=spec["conn_type"],
            host=spec["host"],
            schema=spec["schema"],
            login=spec["login"],
            password=spec["password"],
            port=spec["port"],
            extra=json.dumps(spec["extra"], sort_keys=True) if spec["extra"] else None,
        )
    fields = ("conn_type", "host", "schema", "login", "password", "port")
    existing = session.scalar(select(Connection).where(Connection.conn_id == spec["conn_id"]))
    if existing is None:
        session.add(desired)
        return "created"
    same = all(getattr(existing, f) == getattr(desired, f) for f in fields)
    same = same and (existing.extra_dejson if existing.extra else {}) == (desired.extra_dejson if desired.extra else {})
    if same:
        return "unchanged"
    for f in fields:
        setattr(existing, f, getattr(desired, f))
    existing.extra = desired.extra
    return "updated"


def _remove_connection(session: Any, conn_id: str) -> str:
    from airflow.models.connection import Connection
    from sqlalchemy import delete

    result = session.execute(delete(Connection).where(Connection.conn_id == conn_id))
    return "removed" if result.rowcount else "absent"


def _apply_pool(session: Any, spec: dict[str, Any]) -> str:
    from airflow.models.pool import Pool
    from sqlalchemy import select

    existing = session.scalar(select(Pool).where(Pool.pool == spec["name"]))
    if existing is None:
        pool = Pool(pool=spec["name"], slots=spec["slots"], description=spec["description"], include_deferred=False)
        session.add(pool)
        return "created"
    if existing.slots == spec["slots"] and (existing.description or None) == spec["description"]:
        return "unchanged"
    existing.slots = spec["slots"]
    existing.description = spec["description"]
    return "updated"


def _apply_variable(session: Any, spec: dict[str, Any]) -> str:
    from airflow.models.variable import Variable
    from sqlalchemy import select

    existing = session.scalar(select(Variable).where(Variable.key == spec["key"]))
    if existing is None:
        session.add(Variable(key=spec["key"], val=spec["value"]))  # type: ignore[no-untyped-call]
        return "created"
    if existing.val == spec["value"]:
        return "unchanged"
    existing.val = spec["value"]
    return "updated"


def apply(spec: dict[str, Any]) -> list[dict[str, str]]:
    """Apply the whole spec in one transaction (all or nothing)."""
    from airflow.utils.session import create_session

    results: list[dict[str, str]] = []
    with create_session() as session:
        for conn_id in spec.get("remove_connections", []):
            results.append({"kind": "connection", "name": conn_id, "action": _remove_connection(session, conn_id)})
        for c in spec["connections"]:
            results.append({"kind": "connection", "name": c["conn_id"], "action": _apply_connection(session, c)})
        for p in spec["pools"]:
            results.append({"kind": "pool", "name": p["name"], "action": _apply_pool(session, p)})
        for v in spec["variables"]:
            results.append({"kind": "variable", "name": v["key"], "action": _apply_variable(session, v)})
    return results


def _classify(exc: Exception) -> dict[str, str]:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    message = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
    lowered = message.lower()
    if isinstance(exc, (OperationalError, ProgrammingError)) and (
        "no such table" in lowered or "does not exist" in lowered and "relation" in lowered
    ):
        return {"error": "not_initialised", "message": message}
    if isinstance(exc, OperationalError):
        return {"error": "unreachable", "message": message}
    return {"error": "failed", "message": f"{type(exc).__name__}: {message}"}


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    try:
        out: dict[str, Any] = {"results": apply(spec)}
    except Exception as exc:  # noqa: BLE001 - classified and reported by the parent as one line
        out = _classify(exc)
    out_path.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
