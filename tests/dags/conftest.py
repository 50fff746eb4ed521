"""Airflow metadata database for DAG tests (dag.test() needs a migrated database)."""

from __future__ import annotations

import os
import subprocess
import sys
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
