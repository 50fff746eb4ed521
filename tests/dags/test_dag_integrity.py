"""Every DAG file parses, names itself after its file, and keeps heavy imports out of parse time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {"lockgate_benchmark", "lockgate_drift", "lockgate_quality", "lockgate_live", "lockgate_promotion"}
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


def test_the_five_dags_exist() -> None:
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
def test_parse_time_imports_stay_light(dag_file: Path, dag_info: Callable[[Path, str], dict]) -> None:
    info = dag_info(dag_file, dag_file.stem)
    assert info["errors"] == {}
    assert info["heavy"] == [], f"{dag_file.name} imports {info['heavy']} at parse time"
    assert info["forbidden_imports"] == [], f"{dag_file.name}: (importer, module) at parse time"
    # The package, the Asset module and the shared tasks import airflow.sdk and nothing else, but
    # for the registry watch's trigger class, which imports Airflow's trigger base and the stdlib.
    light_modules = ("lockgate", "lockgate.assets", "lockgate.dag_tasks", "lockgate.registry")
    light = {s["names"][0] for s in info["import_statements"] if s["importer"] in light_modules}
    assert light <= {"__future__", "airflow.sdk", "lockgate.registry.alias_watch"}, light
    watch = {s["names"][0] for s in info["import_statements"] if s["importer"] == "lockgate.registry.alias_watch"}
    assert watch <= {"__future__", "asyncio", "collections.abc", "typing", "airflow.triggers.base"}, watch
    assert "lockgate.assets" in info["lockgate_modules"]
    assert "lockgate.settings" not in info["lockgate_modules"]
    assert "lockgate.policy.schema" not in info["lockgate_modules"]


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.stem)
def test_dag_id_is_the_file_stem(dag_file: Path) -> None:
    assert "dag_id=Path(__file__).stem" in dag_file.read_text()
