"""The lock (constraints.txt) must hold what the deployment runs: a CeleryExecutor that imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import subprocess_env


def test_celery_executor_imports(pycache_prefix: Path) -> None:
    """The locked dependencies must let Airflow load its CeleryExecutor at all.

    celery 5.7 dropped `celery.backends.database.retry`, which apache-airflow-providers-celery
    3.26 imports: with that pair every worker and the scheduler fail at start. A fresh
    interpreter, so that this process's imports cannot mask the failure.
    """
    probe = "import airflow.providers.celery.executors.celery_executor_utils"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=subprocess_env(pycache_prefix),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        from importlib.metadata import version

        pytest.fail(
            f"the CeleryExecutor cannot be imported with celery {version('celery')} and "
            f"apache-airflow-providers-celery {version('apache-airflow-providers-celery')}: "
            f"{out.stderr.strip().splitlines()[-1]}. Pin a celery the provider supports "
            "(celery>=5.5,<5.7 with provider 3.26) in pyproject.toml and re-lock constraints.txt.",
            pytrace=False,
        )
