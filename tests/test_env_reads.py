"""Every `LOCKGATE_*` variable is read through its settings model, never straight from the environment.

The runtime's variables are fields of `lockgate.settings.Settings`, the dev tooling's of
`lockgate.devtools.settings.DevSettings`: each declared once, typed, documented in the README
(tests/unit/test_settings.py). This test parses every other module of the package, the DAG
files and the plugin, and fails on a read of a `LOCKGATE_*` name from a mapping (`os.environ`,
`os.getenv`, an `environ` handed down): `.get(...)`, `.pop(...)`, `getenv(...)`, `[...]`
or `... in ...`. Writing one (the environment of a child process, `stack.env`) is fine.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "include" / "lockgate"
SETTINGS_MODULES = {PACKAGE / "settings.py", PACKAGE / "devtools" / "settings.py"}
VARIABLE = re.compile(r"^LOCKGATE_[A-Z0-9_]+$")
READERS = {"get", "getenv", "pop"}


def scanned_files() -> list[Path]:
    files = [p for p in PACKAGE.rglob("*.py") if p not in SETTINGS_MODULES]
    files += sorted((ROOT / "dags").glob("*.py")) + sorted((ROOT / "plugins").glob("*.py"))
    return sorted(files)


def module_constants(tree: ast.Module) -> dict[str, str]:
    """The module-level `NAME = "LOCKGATE_..."` of a file."""
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name) and VARIABLE.match(node.value.value)
    }


def package_constants() -> dict[str, str]:
    """Every module-level constant naming a variable, in any module: a name imported from one counts too."""
    found: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        found.update(module_constants(ast.parse(path.read_text())))
    return found


def env_reads(tree: ast.Module, imported: dict[str, str] | None = None) -> list[tuple[int, str]]:
    """(line, variable) of each read of a `LOCKGATE_*` name: a literal, a constant of the module, or an
    imported one (`imported`: constant name -> its value, looked up when the module imports that name)."""
    constants = module_constants(tree)
    imported = imported or {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            constants.update({a.asname or a.name: imported[a.name] for a in node.names if a.name in imported})

    def variable(expr: ast.expr | None) -> str | None:
        value = expr.value if isinstance(expr, ast.Constant) else None
        if isinstance(expr, ast.Name):
            value = constants.get(expr.id)
        return value if isinstance(value, str) and VARIABLE.match(value) else None

    found = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in READERS:
                name = variable(node.args[0])
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            name = variable(node.slice)
        elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            name = variable(node.left)
        if name:
            found.append((node.lineno, name))
    return found


@pytest.mark.parametrize("path", scanned_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_lockgate_variables_are_read_through_settings(path: Path) -> None:
    reads = env_reads(ast.parse(path.read_text(), filename=str(path)), package_constants())
    assert reads == [], (
        f"{path.relative_to(ROOT)} reads {reads} from the environment: declare the variable on "
        "lockgate.settings.Settings (or lockgate.devtools.settings.DevSettings) and read the field"
    )


@pytest.mark.parametrize(
    "source",
    [
        'import os\nx = os.environ.get("LOCKGATE_HOME")',
        'import os\nx = os.getenv("LOCKGATE_HOME", "")',
        'import os\nx = os.environ["LOCKGATE_HOME"]',
        'import os\nx = "LOCKGATE_HOME" in os.environ',
        'NAME = "LOCKGATE_ADMIN_PASSWORD"\ndef f(env):\n    return env.get(NAME)',
    ],
)
def test_the_check_sees_each_kind_of_read(source: str) -> None:
    assert [name for _, name in env_reads(ast.parse(source))] in (["LOCKGATE_HOME"], ["LOCKGATE_ADMIN_PASSWORD"])


@pytest.mark.parametrize(
    "source",
    [
        'import os\nos.environ["LOCKGATE_HOME"] = "/tmp/x"',
        'env = {"LOCKGATE_HOME": "/tmp/x"}',
        'raise ValueError("set LOCKGATE_HOME")',
        'def f(key="LOCKGATE_LOGS_DB_URL"):\n    return key',
    ],
)
def test_writes_and_messages_are_not_reads(source: str) -> None:
    assert env_reads(ast.parse(source)) == []


def test_a_constant_imported_from_another_module_counts() -> None:
    source = "import os\nfrom lockgate.devtools.stack.env import DB_ENV\nx = os.environ.get(DB_ENV)"
    assert env_reads(ast.parse(source), {"DB_ENV": "LOCKGATE_AIRFLOW_DB_URL"}) == [(3, "LOCKGATE_AIRFLOW_DB_URL")]


def test_the_settings_modules_read_only_the_variables_they_declare() -> None:
    from lockgate.devtools.settings import DEV_ENV_VARS
    from lockgate.settings import ENV_VARS

    declared = {*ENV_VARS.values(), *DEV_ENV_VARS.values()}
    for path in sorted(SETTINGS_MODULES):
        undeclared = [(line, name) for line, name in env_reads(ast.parse(path.read_text())) if name not in declared]
        assert undeclared == [], f"{path.relative_to(ROOT)} reads variables no field declares: {undeclared}"
