"""Engines for lockgate's databases, with one clear line when a server does not answer."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from lockgate.errors import ConfigError, ServiceUnavailableError


def _sqlite_md5(value: Any) -> str | None:
    if value is None:
        return None
    return hashlib.md5(str(value).encode(), usedforsecurity=False).hexdigest()


def _sqlite_rank(value: Any, seed: Any) -> int | None:
    """Seeded 63-bit hash, SQLite's stand-in for PostgreSQL's hashtextextended()."""
    if value is None:
        return None
    digest = hashlib.blake2b(str(value).encode(), digest_size=8, key=str(seed).encode()[:64]).digest()
    return int.from_bytes(digest, "big") >> 1


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is shown as given
        return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine; on SQLite it registers the functions the sampling query needs."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"not a database URL: {url!r} ({exc})", key="LOCKGATE_LOGS_DB_URL") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _register(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.create_function("md5", 1, _sqlite_md5, deterministic=True)
            dbapi_conn.create_function("lg_rank", 2, _sqlite_rank, deterministic=True)
            # WAL lets a reader (report) and a writer (seeder) work at once.
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA busy_timeout=30000")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("connect_args", {"connect_timeout": 10})
    return sa.create_engine(url, **kwargs)


def check_connection(engine: Engine, service: str = "PostgreSQL") -> None:
    """Raise `ServiceUnavailableError` naming the URL when the database does not answer."""
    url = safe_url(engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        hint = None
        if engine.url.get_backend_name() == "postgresql":
            hint = "start PostgreSQL or set LOCKGATE_LOGS_DB_URL / the Airflow connection lockgate_logs"
        raise ServiceUnavailableError(service, url, reason, hint) from None
