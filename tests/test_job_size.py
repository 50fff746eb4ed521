"""Job modules stay small: every module under `include/lockgate/jobs/` at most 300 lines, every function 80."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parents[1] / "include" / "lockgate" / "jobs"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(JOBS.rglob("*.py"))


def test_the_job_modules_are_found() -> None:
    names = {p.relative_to(JOBS).as_posix() for p in _modules()}
    jobs = {f"{kind}/job.py" for kind in ("benchmark", "drift", "quality", "live", "promotion")}
    assert jobs | {"quality/judging.py", "publish.py"} <= names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(JOBS).as_posix())
def test_a_job_module_is_short_and_so_are_its_functions(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.name}: {len(text.splitlines())} lines"
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(JOBS)}: {long}"
