"""docker/postgres/init-databases.sql run for real with psql against the test PostgreSQL server.

The postgres image runs the file exactly so (psql as the superuser, the container's environment
for \\getenv). A unique LOCKGATE_PG_PREFIX keeps the roles and databases apart from anything else
on the shared server; they are dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from .conftest import DOCKER

pytestmark = pytest.mark.postgres

SQL = DOCKER / "postgres" / "init-databases.sql"
ADMIN_URL = os.environ.get("LOCKGATE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASES = ("airflow", "mlflow", "mlflow_auth", "lockgate")
ROLES = ("airflow", "mlflow", "lockgate")


def _psql(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql (PostgreSQL client >= 15) is needed: apt-get install postgresql-client", pytrace=False)
    url = sa.engine.make_url(ADMIN_URL)
    return subprocess.run(
        [psql, "-X", "-v", "ON_ERROR_STOP=1", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
        + ["-U", url.username or "postgres", "-d", url.database or "postgres", "-f", str(SQL)],
        env={**os.environ, **env, **({"PGPASSWORD": url.password} if url.password else {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def admin() -> Iterator[sa.Engine]:
    engine = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed at {ADMIN_URL}: {exc}. Set LOCKGATE_TEST_PG_URL.", pytrace=False)
    yield engine
    engine.dispose()


@pytest.fixture
def prefix(admin: sa.Engine) -> Iterator[str]:
    prefix = f"lgt_{uuid.uuid4().hex[:8]}_"
    yield prefix
    with admin.connect() as conn:
        for db in DATABASES:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{prefix}{db}" WITH (FORCE)'))
        for role in ROLES:
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{prefix}{role}"'))


def test_creates_one_database_and_role_per_concern(admin: sa.Engine, prefix: str) -> None:
    passwords = {
        "AIRFLOW_DB_PASSWORD": "it's%a\"hard one",  # quoting must survive any character
        "MLFLOW_DB_PASSWORD": "m-pass",
        "LOCKGATE_DB_PASSWORD": "l-pass",
    }
    out = _psql({**passwords, "LOCKGATE_PG_PREFIX": prefix})
    assert out.returncode == 0, out.stderr
    with admin.connect() as conn:
        owners = dict(
            conn.execute(
                sa.text("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname LIKE :p"),
                {"p": prefix + "%"},
            ).all()
        )
        assert owners == {
            f"{prefix}airflow": f"{prefix}airflow",
            f"{prefix}mlflow": f"{prefix}mlflow",
            f"{prefix}mlflow_auth": f"{prefix}mlflow",
            f"{prefix}lockgate": f"{prefix}lockgate",
        }
        can_connect = sa.text("SELECT has_database_privilege(:o, :d, 'CONNECT')")
        for db, owner in owners.items():
            assert conn.execute(can_connect, {"o": owner, "d": db}).scalar()
            # PUBLIC lost CONNECT: lockgate's role cannot open Airflow's database.
            for other in (prefix + r for r in ROLES if prefix + r != owner):
                assert not conn.execute(can_connect, {"o": other, "d": db}).scalar(), f"{other} may connect to {db}"
        for role in ROLES:
            row = conn.execute(
                sa.text("SELECT rolcanlogin, rolsuper, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = :r"),
                {"r": prefix + role},
            ).one()
            assert row == (True, False, True), role


def test_refuses_to_create_a_role_without_a_password(admin: sa.Engine, prefix: str) -> None:
    out = _psql({"MLFLOW_DB_PASSWORD": "m", "LOCKGATE_DB_PASSWORD": "l", "LOCKGATE_PG_PREFIX": prefix})
    assert out.returncode != 0
    assert "AIRFLOW_DB_PASSWORD is not set" in out.stderr
    with admin.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM pg_roles WHERE rolname LIKE :p"), {"p": prefix + "%"})
        assert left.scalar() == 0
