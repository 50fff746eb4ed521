"""Airflow metadata database for DAG tests (dag.test() needs a migrated database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# Modules a DAG file must not import at parse time (they belong inside tasks).
HEAVY_MODULES = ("mlflow", "torch", "pandas", "numpy", "transformers", "evidently", "scipy", "sklearn",
                 "sentence_transformers")  # fmt: skip

# Modules that lockgate code run at parse time must not import either. airflow.sdk loads pydantic,
# yaml and sqlalchemy itself, so being in sys.modules proves nothing: the parser records the import
# statements that the DAG file and lockgate modules execute while the file is parsed.
PARSE_FORBIDDEN = ("pydantic", "yaml", "sqlalchemy", "lockgate.settings", "lockgate.policy", *HEAVY_MODULES)

_PARSE_DAG = """
import builtins, json, sys
from airflow.dag_processing.dagbag import DagBag
dag_file, dag_id, heavy_modules, forbidden = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
statements = []
real_import = builtins.__import__

def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__") or ""
    # DagBag names a DAG file's module unusual_prefix_<hash>_<stem>.
    if importer.split(".")[0] == "lockgate" or importer.startswith("unusual_prefix_"):
        names = [name] + [f"{name}.{f}" for f in (fromlist or ()) if f != "*"]
        who = "<dag file>" if importer.startswith("unusual_prefix_") else importer
        statements.append({"importer": who, "level": level, "names": names})
    return real_import(name, globals, locals, fromlist, level)

builtins.__import__ = recording_import
try:
    bag = DagBag(dag_folder=dag_file)
finally:
    builtins.__import__ = real_import
dag = bag.dags[dag_id]
params = {k: {**dag.params.get_param(k).schema, "description": dag.params.get_param(k).description} for k in dag.params}
tasks = {t.task_id: {"pool": t.pool, "queue": t.queue, "outlets": [o.uri for o in t.outlets]} for t in dag.tasks}
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(heavy_modules)),
    "import_statements": statements,
    "forbidden_imports": [[s["importer"], n] for s in statements for n in s["names"]
                          if any(n == m or n.startswith(m + ".") for m in forbidden)],
    "lockgate_modules": sorted(m for m in sys.modules if m.split(".")[0] == "lockgate"),
    "params": params, "tasks": tasks, "outlets": [o.uri for o in dag.tasks[-1].outlets],
    "timetable": type(dag.timetable).__name__, "tags": sorted(dag.tags), "doc": bool(dag.doc_md),
    "catchup": dag.catchup,
}))
"""


def _load_dag(dag_file: Path, dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dag_file))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


@pytest.fixture(scope="session")
def load_dag() -> Callable[[Path, str], Any]:
    """The DAG `dag_id` from a DAG file, parsed in this process (for `dag.test()`); import errors fail the test."""
    return _load_dag


def parsed_dag_info(dag_file: Path, dag_id: str) -> dict:
    """Parse a DAG file in a fresh interpreter, as the dag processor does: its form, tasks and imports.

    `heavy`: HEAVY_MODULES present after the parse; `import_statements`: each import statement that
    the DAG file ("<dag file>") or a lockgate module executed during the parse (`importer`, `level`,
    `names`: the module and `module.name` for each name of a from-import); `forbidden_imports`:
    the (importer, module) pairs of those that name a PARSE_FORBIDDEN module; `lockgate_modules`:
    the lockgate modules loaded.
    """
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _PARSE_DAG,
            str(dag_file),
            dag_id,
            json.dumps(HEAVY_MODULES),
            json.dumps(PARSE_FORBIDDEN),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    info: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return info


@pytest.fixture
def dag_info() -> Callable[[Path, str], dict]:
    return parsed_dag_info
