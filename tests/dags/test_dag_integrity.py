"""Every DAG file parses, names itself after its file, and keeps heavy imports out of parse time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {"lockgate_benchmark", "lockgate_drift", "lockgate_quality", "lockgate_promotion"}
HEAVY = ("torch", "transformers", "evidently", "mlflow", "pandas", "sentence_transformers", "scipy")
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


def test_the_four_dags_exist() -> None:
    assert {p.stem for p in DAG_FILES} == EXPECTED


def test_dagbag_has_no_import_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXPECTED
    for dag_id in EXPECTED:
        dag = bag.dags.get(dag_id)
        assert dag is not None
        assert "lockgate" in dag.tags
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert dag.catchup is False
        for name, param in dag.params.items():
            schema = dag.params.get_param(name).schema
            assert schema.get("title") or schema.get("description"), f"{dag_id}.{name} has no title"
            del param


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.stem)
def test_parse_time_imports_stay_light(dag_file: Path) -> None:
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dagfile', {str(dag_file)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=os.environ.copy(), check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"{dag_file.name} imports {loaded} at parse time"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.stem)
def test_dag_id_is_the_file_stem(dag_file: Path) -> None:
    assert "dag_id=Path(__file__).stem" in dag_file.read_text()
