"""pyproject.toml states ranges and declares every distribution lockgate imports; constraints.txt pins them."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "include" / "lockgate").rglob("*.py")), *sorted((ROOT / "plugins").glob("*.py"))]
# Distributions installed with a declared one that own a module name as well (a namespace shared
# with it): importing `airflow.providers.standard` needs the provider, `airflow.sdk` the task SDK.
PART_OF = {
    "apache-airflow-core": "apache-airflow",
    "apache-airflow-task-sdk": "apache-airflow",
    "mlflow-skinny": "mlflow",
    "mlflow-tracing": "mlflow",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = {}
    for req in project["dependencies"]:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        specs[_norm(name)] = req
    return specs


def _imported_top_level() -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "lockgate"}


def test_every_imported_distribution_is_declared() -> None:
    declared = _declared()
    owners = md.packages_distributions()
    missing = {}
    for module in sorted(_imported_top_level()):
        dists = {PART_OF.get(_norm(d), _norm(d)) for d in owners.get(module, [])}
        assert dists, f"{module}: imported but not installed"
        if not dists & set(declared):
            missing[module] = sorted(dists)
    assert missing == {}, f"imported, not declared in pyproject.toml: {missing}"


def test_the_big_frameworks_are_ranges_and_constraints_pin_them() -> None:
    declared = _declared()
    pins = {
        _norm(line.split("==")[0]): line.split("==")[1].strip()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    }
    for name in ("apache-airflow", "evidently", "torch", "mlflow", "transformers"):
        spec = declared[name]
        assert "==" not in spec and "<" in spec, f"{spec}: a range with an upper bound, not a pin"
        assert name in pins, f"constraints.txt does not pin {name}"
    for name in declared:
        assert name in pins, f"constraints.txt does not pin the declared {name}"
