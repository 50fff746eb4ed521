"""One task edge: a domain error fails the task without retry, a service outage is retried, in every DAG."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from lockgate.errors import ConfigError, EvidenceError, LockgateError, ServiceUnavailableError
from lockgate.task_edge import task_errors

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.mark.parametrize("error", [ConfigError("bad", key="model"), EvidenceError("unreadable"), LockgateError("x")])
def test_a_domain_error_fails_without_retry_and_says_its_code(error: LockgateError) -> None:
    with pytest.raises(AirflowFailException, match=rf"^\[{error.code}\] "), task_errors():
        raise error


@pytest.mark.parametrize("error", [ServiceUnavailableError("PostgreSQL", "postgresql://h/db", "refused"), OSError()])
def test_an_outage_or_anything_else_is_left_to_airflows_retries(error: Exception) -> None:
    with pytest.raises(type(error)), task_errors():
        raise error


def _task_functions(path: Path) -> list[ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if isinstance(target, ast.Name) and target.id == "task":
                    found.append(node)
    return found


@pytest.mark.parametrize("dag_file", sorted(DAGS.glob("lockgate_*.py")), ids=lambda p: p.stem)
def test_every_task_that_runs_a_job_goes_through_the_one_edge(dag_file: Path) -> None:
    for fn in _task_functions(dag_file):
        body = ast.unparse(fn)
        if fn.name in ("publish", "needs_replay"):
            continue  # hands its input on to the Asset event / reads the plan's mode: nothing of lockgate runs
        assert "task_errors()" in body or "promotion_task(" in body, f"{dag_file.name}: {fn.name}"
