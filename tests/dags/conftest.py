"""Airflow metadata database for DAG tests (dag.test() needs a migrated database)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Migrate the session's SQLite metadata database once (AIRFLOW_HOME is set in tests/conftest.py)."""
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}", pytrace=False)
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture
def asset_events(airflow_db: str) -> Callable[[str, str], list[dict]]:
    """`asset_events(uri, run_id)`: the extras of the Asset events a DAG run emitted for `uri`."""

    def read(uri: str, run_id: str) -> list[dict]:
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(AssetEvent.extra)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetModel.uri == uri, AssetEvent.source_run_id == run_id)
            ).all()
        return [r[0] for r in rows]

    return read
