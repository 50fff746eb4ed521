"""Evidently through its public API only, so that an upgrade within pyproject.toml's range needs no port.

Every Python file of the package, the DAGs and the plugin is parsed; the test fails on

* an import of an Evidently module outside `PUBLIC` (`evidently.legacy`, `evidently.core`,
  `evidently.metrics._legacy`, ...), at module level or inside a function, and on a name imported
  from Evidently that is private (`_x`) or one of its legacy re-exports (`LEGACY_NAMES`);
* in a file that imports Evidently, a private attribute read or written (`snapshot._widgets`,
  `getattr(x, "_widgets")`): such a file holds Evidently's objects, and their private attributes
  change without notice.

`PUBLIC` is what Evidently's documentation (docs.evidentlyai.com) imports from; a module added here
must be one of those.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    [*(ROOT / "include" / "lockgate").rglob("*.py"), *(ROOT / "dags").glob("*.py"), *(ROOT / "plugins").glob("*.py")]
)
PUBLIC = {
    "evidently",  # Report, Dataset, DataDefinition
    "evidently.metrics",  # ValueDrift, EmbeddingsDrift, ...
    "evidently.metrics.embeddings",  # ModelDriftMethod, ... (EmbeddingsDrift's drift methods)
    "evidently.presets",  # TextEvals, DataDriftPreset, ...
    "evidently.descriptors",  # TextLength, WordCount, ...
    "evidently.tests",  # conditions of a metric or descriptor
}
LEGACY_NAMES = {"ColumnType"}  # `evidently.ColumnType`: "legacy support", the old API's type
# Evidently's packages that are not its API, imported as names (`from evidently import legacy`).
INTERNAL_PACKAGES = {"legacy", "core", "future", "utils", "pydantic_utils", "nbextension", "telemetry", "cli"}


def _is_evidently(module: str) -> bool:
    return module == "evidently" or module.startswith("evidently.")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Each use of Evidently beyond its public API in `source`, as `line: what`."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    uses_evidently = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_evidently(alias.name):
                    uses_evidently = True
                    if alias.name not in PUBLIC:
                        found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _is_evidently(node.module):
            uses_evidently = True
            if node.module not in PUBLIC:
                found.append(f"{node.lineno}: from {node.module} import ...")
            for alias in node.names:
                if _private(alias.name) or alias.name in LEGACY_NAMES or alias.name in INTERNAL_PACKAGES:
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
    if uses_evidently:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                found.append(f"{node.lineno}: private attribute .{node.attr}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and _private(node.args[1].value)
            ):
                found.append(f"{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_the_sources_are_found_and_some_use_evidently() -> None:
    users = [p for p in SOURCES if "evidently" in p.read_text()]
    assert len(SOURCES) > 50
    assert ROOT / "include" / "lockgate" / "drift" / "evidently_report.py" in users
    assert ROOT / "include" / "lockgate" / "judge" / "evidently_report.py" in users


def test_evidently_only_through_its_public_api() -> None:
    found = {}
    for path in SOURCES:
        bad = violations(path.read_text(), str(path))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    assert found == {}, f"Evidently beyond its public API: {found}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from evidently.legacy.utils import NumpyEncoder", "from evidently.legacy.utils import ..."),
        ("def f():\n    from evidently.core.datasets import DatasetColumn", "from evidently.core.datasets import ..."),
        ("import evidently.legacy.core", "import evidently.legacy.core"),
        ("from evidently import legacy", "from evidently import legacy"),
        ("from evidently import ColumnType", "from evidently import ColumnType"),
        ("from evidently.metrics import _legacy", "from evidently.metrics import _legacy"),
        ("from evidently import Report\nx = Report([]).run(a, b)._widgets", "private attribute ._widgets"),
        ("from evidently import Report\ny = getattr(s, '_widgets')", "getattr(..., '_widgets')"),
    ],
)
def test_the_check_catches(source: str, expected: str) -> None:
    assert any(expected in v for v in violations(source)), violations(source)


def test_the_check_allows_the_public_api_and_private_names_of_files_without_evidently() -> None:
    public = (
        "from evidently import DataDefinition, Dataset, Report\n"
        "from evidently.metrics import EmbeddingsDrift, ValueDrift\n"
        "from evidently.metrics.embeddings import ModelDriftMethod\n"
        "from evidently.presets import TextEvals\n"
        "def f(snapshot):\n    return snapshot.dict(), snapshot.get_html_str(as_iframe=False), self.__class__\n"
    )
    assert violations(public) == []
    assert violations("import os\nos._exit") == []
