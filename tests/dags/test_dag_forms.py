"""Every DAG triggers from the Airflow form with its defaults: each Param's default passes its own schema.

The form sends an empty field as null, and a default its schema rejects greys out the Trigger
button: so a Param without a value defaults to None and allows null, never to an empty string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {p.stem for p in DAG_FILES}
    return dict(bag.dags)


@pytest.mark.parametrize("dag_id", [p.stem for p in DAG_FILES])
def test_every_param_default_validates_against_its_schema(dags: dict[str, Any], dag_id: str) -> None:
    import jsonschema

    dag = dags[dag_id]
    assert dag.params, f"{dag_id} has no form"
    for name in dag.params:
        param = dag.params.get_param(name)
        jsonschema.validate(param.value, param.schema)  # raises with the reason
        assert param.resolve(suppress_exception=False) == param.value
        if param.value is None:
            assert "null" in param.schema.get("type", []), f"{dag_id}.{name}: a None default must allow null"
        assert param.value != "", f"{dag_id}.{name}: an empty default must be None (with null allowed)"
    assert dag.params.validate() == {name: dag.params.get_param(name).value for name in dag.params}


@pytest.mark.parametrize("dag_id", [p.stem for p in DAG_FILES])
def test_the_model_param_is_empty_by_default_meaning_every_watched_model(dags: dict[str, Any], dag_id: str) -> None:
    param = dags[dag_id].params.get_param("model")
    assert param.value is None and param.schema["type"] == ["null", "string"]
    assert param.description == "A registered model watched by the policy. Empty: every watched model."
    assert "watched model" in dags[dag_id].doc_md and "lockgate-demo" not in dags[dag_id].doc_md
