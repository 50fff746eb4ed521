"""Dev tooling stays apart: no runtime module imports `lockgate.devtools`.

`lockgate.devtools` holds the local stack, the demo and its scenarios, synthetic traffic, the
tiny-model builder, the placeholder judge and the test fakes. The runtime (every other module of
the package, the DAG files, the plugin) must run without it, so this test parses each of their
files and fails on any `import` of it, at module level or inside a function.

A runtime module may still *name* a dev module as a string, resolved with importlib only when
that path is taken. Each such edge is listed in `ALLOWED_STRING_EDGES` with its reason; a new
one fails until it is listed here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "include" / "lockgate"
DEV = "lockgate.devtools"

# file (relative to the repository root) -> {dev module path named as a string: why it is fine}
ALLOWED_STRING_EDGES: dict[str, dict[str, str]] = {
    "include/lockgate/cli.py": {
        # The CLI is the entry point of the dev commands too; each names its handler as
        # "module:function", imported only when that command runs.
        "lockgate.devtools.stack.commands:cmd_up": "`lockgate up`",
        "lockgate.devtools.stack.commands:cmd_down": "`lockgate down`",
        "lockgate.devtools.stack.commands:cmd_status": "`lockgate status` without MODEL (the stack's health)",
        "lockgate.devtools.stack.settings_apply:cmd_settings_apply": (
            "`lockgate settings apply`: its default target is the local stack's Airflow"
        ),
        "lockgate.devtools.seed:cmd_seed": "`lockgate logs seed` (synthetic traffic)",
        "lockgate.devtools.tiny_model:cmd_build_tiny": "`lockgate models build-tiny`",
        "lockgate.devtools.demo:cmd_demo": "`lockgate demo`",
        "lockgate.devtools.scenarios:SCENARIOS": "checks `lockgate demo --scenario` when the demo is parsed",
    },
    "include/lockgate/judge/backends/base.py": {
        "lockgate.devtools.placeholder_judge:make_placeholder_judge": (
            "only a policy that names `quality.judge.backend: placeholder` (the demo's) reaches it; "
            "`backend: local` without model_path is an error, never a silent placeholder"
        ),
    },
}


def runtime_files() -> list[Path]:
    """Every Python file the runtime is made of: the package less devtools, the DAGs, the plugin."""
    files = [p for p in PACKAGE.rglob("*.py") if (PACKAGE / "devtools") not in p.parents]
    files += sorted((ROOT / "dags").glob("*.py")) + sorted((ROOT / "plugins").glob("*.py"))
    return sorted(files)


def _is_dev(module: str) -> bool:
    return module == DEV or module.startswith(DEV + ".")


def dev_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of each import of the dev package, wherever it sits in the file."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_dev(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if _is_dev(node.module):
                found.append((node.lineno, node.module))
            elif node.module == "lockgate":  # from lockgate import devtools
                found += [(node.lineno, f"lockgate.{a.name}") for a in node.names if _is_dev(f"lockgate.{a.name}")]
    return found


def dev_module_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of each string that is a dev module path ("lockgate.devtools.x[:attr]")."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            module = text.split(":", 1)[0]
            if _is_dev(module) and all(part.isidentifier() for part in text.replace(":", ".").split(".")):
                found.append((node.lineno, text))
    return found


def test_the_runtime_files_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in runtime_files()}
    assert {"include/lockgate/cli.py", "include/lockgate/jobs/quality/job.py", "plugins/lockgate_plugin.py"} <= names
    assert "dags/lockgate_promotion.py" in names
    assert not any("/devtools/" in n for n in names)
    assert (PACKAGE / "devtools" / "__init__.py").exists()


def test_no_runtime_module_imports_the_dev_tooling() -> None:
    offenders = []
    for path in runtime_files():
        tree = ast.parse(path.read_text(), str(path))
        offenders += [f"{path.relative_to(ROOT)}:{line}: imports {module}" for line, module in dev_imports(tree)]
    assert not offenders, "runtime code must not import lockgate.devtools:\n" + "\n".join(offenders)


def test_dev_modules_named_as_strings_are_the_listed_edges() -> None:
    unlisted = []
    seen: dict[str, set[str]] = {}
    for path in runtime_files():
        rel = path.relative_to(ROOT).as_posix()
        allowed = ALLOWED_STRING_EDGES.get(rel, {})
        for line, text in dev_module_strings(ast.parse(path.read_text(), str(path))):
            seen.setdefault(rel, set()).add(text)
            if text not in allowed:
                unlisted.append(f"{rel}:{line}: names {text!r}")
    assert not unlisted, "a runtime module names dev tooling; list the edge and why, or remove it:\n" + "\n".join(
        unlisted
    )
    # A listed edge that no longer exists is stale: the list stays the true picture.
    stale = {rel: set(edges) - seen.get(rel, set()) for rel, edges in ALLOWED_STRING_EDGES.items()}
    assert not any(stale.values()), f"edges listed but not in the code: {stale}"


def test_every_listed_edge_resolves() -> None:
    import importlib

    for edges in ALLOWED_STRING_EDGES.values():
        for path in edges:
            module, attr = path.split(":")
            assert hasattr(importlib.import_module(module), attr), path


def test_the_checks_catch_an_import_and_a_string() -> None:
    tree = ast.parse(
        "import lockgate.devtools.demo\n"
        "def f():\n"
        "    from lockgate.devtools.stack import commands\n"
        "    from lockgate import devtools\n"
        "    return 'lockgate.devtools.seed:cmd_seed', 'see `lockgate.devtools.seed`, the dev tooling'\n"
    )
    modules = [m for _, m in dev_imports(tree)]
    assert modules == ["lockgate.devtools.demo", "lockgate.devtools.stack", "lockgate.devtools"]
    assert [t for _, t in dev_module_strings(tree)] == ["lockgate.devtools.seed:cmd_seed"]


def test_runtime_entry_points_load_no_dev_module() -> None:
    """The same at run time: parsing user commands and importing the jobs loads nothing of devtools."""
    script = (
        "import sys\n"
        "from lockgate.cli import build_parser\n"
        "p = build_parser()\n"
        "for argv in (['status', 'm'], ['run', 'quality'], ['approve', 'm', '2'], ['models', 'register', "
        "'--name', 'm', '--path', '/x'], ['judge', 'calibrate'], ['logs', 'migrate-sample-index']):\n"
        "    p.parse_args(argv)\n"
        "import lockgate.jobs.benchmark, lockgate.jobs.drift, lockgate.jobs.quality, lockgate.jobs.live\n"
        "import lockgate.jobs.promotion, lockgate.judge.backends.base, lockgate.judge.commands\n"
        "import lockgate.registry.commands, lockgate.logs.commands, lockgate.models, lockgate.dag_tasks\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('lockgate.devtools'))\n"
        "assert not loaded, loaded\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
