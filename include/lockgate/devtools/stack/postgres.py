"""PostgreSQL as the stack sees it: is a server reachable, and does the logs database exist.

An unreachable server is one `ServiceUnavailableError` line naming the URL (password
masked), never a driver traceback.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

from lockgate.devtools.stack.env import mask_url
from lockgate.devtools.stack.processes import StackError
from lockgate.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3


@dataclass(frozen=True)
class PgTarget:
    """Where a database lives; `dbname` is the one to ensure, `admin_db` the one to connect to."""

    host: str
    port: int
    user: str
    password: str | None
    dbname: str
    admin_db: str = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def _libpq_url(url: str) -> str:
    # libpq understands postgresql:// and postgres://, not SQLAlchemy's +driver suffix.
    return re.sub(r"^postgres(ql)?\+[A-Za-z0-9_]+://", "postgresql://", url)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_reachable(url: str, timeout: int = CONNECT_TIMEOUT_S) -> None:
    """Connect once to a PostgreSQL URL; raise one clear line naming it if that fails."""
    import psycopg2

    try:
        conn = psycopg2.connect(_libpq_url(url), connect_timeout=timeout)
    except psycopg2.Error as exc:
        raise ServiceUnavailableError("PostgreSQL", mask_url(url), _reason(exc)) from None
    conn.close()


def ensure_database(target: PgTarget, timeout: int = CONNECT_TIMEOUT_S) -> Literal["created", "exists"]:
    """Create `target.dbname` if missing (CREATE DATABASE cannot run in a transaction: autocommit)."""
    import psycopg2
    from psycopg2 import sql

    admin_url = f"postgresql://{target.user}@{target.host}:{target.port}/{target.admin_db}"
    try:
        conn = psycopg2.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password or None,
            dbname=target.admin_db,
            connect_timeout=timeout,
        )
    except psycopg2.Error as exc:
        raise ServiceUnavailableError("PostgreSQL", admin_url, _reason(exc)) from None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.dbname,))
            if cur.fetchone():
                return "exists"
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname)))
            logger.debug("created database %s on %s:%s", target.dbname, target.host, target.port)
            return "created"
    except psycopg2.errors.DuplicateDatabase:
        # Another `up` created it between our check and our CREATE.
        return "exists"
    except psycopg2.Error as exc:
        raise StackError(f"cannot create database {target.dbname!r} at {admin_url}: {_reason(exc)}") from None
    finally:
        conn.close()
