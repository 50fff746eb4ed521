"""One door to MLflow: only `lockgate.registry` imports MLflow or names a `lockgate.*` tag.

When several modules each resolve "which version is the champion", download a version or log their
own MLflow run, they drift apart (different tag names, different not-found codes). So the registry
package owns version resolution, downloads, run logging, the GenAI judges and datasets, and every
`lockgate.*` tag name (`lockgate.registry.tags`); the rest of the runtime calls its plain functions.

These tests parse every runtime file (the package, devtools included, the DAG files, the plugin)
outside `include/lockgate/registry/` and fail on:

* an import of MLflow: `import mlflow...`, `from mlflow... import`, at module level or inside a
  function, and a dynamic one (`importlib.import_module("mlflow...")`, `__import__`, a lookup in
  `sys.modules`);
* a string that *is* a `lockgate.*` tag name (a key or a search filter), rather than a sentence
  that mentions one.

What the second rule allows, and why:

* a module path (`"lockgate.jobs.drift"`) and the policy file's name (`"lockgate.yaml"`);
* docstrings and prose: a message or a field description that names a tag for a person to read
  ("lockgate.approval is 'maybe', not one of ...") documents the vocabulary, it does not use it;
  `lockgate.policy`, pure and below the registry, explains approvals in such words;
* the HTML templates (`reports/templates/`) hold no tag name: a page that shows one gets it from
  the code that renders it. They are scanned all the same, so a tag name typed into a template fails;
* tests and docs, which are not scanned: they check and describe the vocabulary from outside.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "include" / "lockgate"
REGISTRY = PACKAGE / "registry"
TEMPLATES = PACKAGE / "reports" / "templates"

NAME = re.compile(r"^lockgate(\.[A-Za-z_][A-Za-z0-9_]*)+$")
FILTER_TAG = re.compile(r"tags\.`lockgate\.")
DYNAMIC_IMPORTERS = {"import_module", "__import__"}


def outside_files() -> list[Path]:
    """Every runtime Python file outside the registry package."""
    files = [p for p in PACKAGE.rglob("*.py") if REGISTRY not in p.parents]
    files += sorted((ROOT / "dags").glob("*.py")) + sorted((ROOT / "plugins").rglob("*.py"))
    return sorted(files)


def _is_mlflow(module: str | None) -> bool:
    return module is not None and (module == "mlflow" or module.startswith("mlflow."))


def _string_arg(node: ast.Call | ast.Subscript) -> str | None:
    arg = node.slice if isinstance(node, ast.Subscript) else (node.args[0] if node.args else None)
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def _is_sys_modules(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "modules" and getattr(node.value, "id", None) == "sys"


def mlflow_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of each import of MLflow, static or dynamic, wherever it sits in the file."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if _is_mlflow(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_mlflow(node.module):
            found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            by_sys_modules = isinstance(func, ast.Attribute) and func.attr == "get" and _is_sys_modules(func.value)
            if (name in DYNAMIC_IMPORTERS or by_sys_modules) and _is_mlflow(_string_arg(node)):
                found.append((node.lineno, f"{name}({_string_arg(node)!r})"))
        elif isinstance(node, ast.Subscript) and _is_sys_modules(node.value) and _is_mlflow(_string_arg(node)):
            found.append((node.lineno, f"sys.modules[{_string_arg(node)!r}]"))
    return sorted(found, key=lambda item: item[0])


def registry_tag_names() -> set[str]:
    """Every `lockgate.*` name the registry package defines as a module-level string constant."""
    names = set()
    for path in REGISTRY.rglob("*.py"):
        for node in ast.parse(path.read_text(), str(path)).body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and NAME.match(value.value):
                names.add(value.value)
    return names


def _is_module_path(name: str) -> bool:
    """`lockgate.x.y[.attr]` where `lockgate.x` (and so on) is a module or package of ours."""
    here = PACKAGE
    for i, part in enumerate(name.split(".")[1:]):
        if (here / part).is_dir():
            here = here / part
            continue
        return (here / f"{part}.py").exists() or i > 0  # past the first part: an attribute of a package
    return True


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def tag_literals(tree: ast.AST, tag_names: set[str]) -> list[tuple[int, str]]:
    """(line, text) of each string that is a `lockgate.*` tag name or a search filter on one.

    A tag the registry defines counts even where a module has the same name (`lockgate.evidence`,
    `lockgate.policy`); any other `lockgate.*` name that is not a module path counts too, so a new
    tag typed outside the registry fails before it is defined there.
    """
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in docstrings:
            continue
        text = node.value.strip()
        if FILTER_TAG.search(text):
            found.append((node.lineno, text))
        elif NAME.match(text) and text != "lockgate.yaml" and (text in tag_names or not _is_module_path(text)):
            found.append((node.lineno, text))
    return sorted(found, key=lambda item: item[0])


def test_the_files_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in outside_files()}
    assert {
        "include/lockgate/jobs/quality/job.py",
        "include/lockgate/devtools/demo.py",
        "plugins/lockgate_plugin.py",
    } <= names
    assert "dags/lockgate_promotion.py" in names
    assert not any(n.startswith("include/lockgate/registry/") for n in names)
    assert {"lockgate.status", "lockgate.approval", "lockgate.kind", "lockgate.evidence"} <= registry_tag_names()


def test_only_the_registry_imports_mlflow() -> None:
    offenders = []
    for path in outside_files():
        tree = ast.parse(path.read_text(), str(path))
        offenders += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in mlflow_imports(tree)]
    assert not offenders, (
        "only lockgate.registry may import MLflow; add (or use) a registry function instead:\n" + "\n".join(offenders)
    )


def test_only_the_registry_names_lockgate_tags() -> None:
    names = registry_tag_names()
    offenders = []
    for path in outside_files():
        tree = ast.parse(path.read_text(), str(path))
        offenders += [f"{path.relative_to(ROOT)}:{line}: {text!r}" for line, text in tag_literals(tree, names)]
    assert not offenders, (
        "a lockgate.* tag name outside lockgate.registry; define it in lockgate.registry.tags and use the "
        "constant:\n" + "\n".join(offenders)
    )


def test_templates_hold_no_tag_name() -> None:
    names = registry_tag_names()
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for name in sorted(names)
        if re.search(re.escape(name) + r"\b", path.read_text())
    ]
    assert not offenders, "a template names a lockgate.* tag: pass it from the code that renders it\n" + "\n".join(
        offenders
    )


def test_the_checks_catch_what_they_should() -> None:
    tree = ast.parse(
        "import mlflow\n"
        "import mlflow.genai.judges as j\n"
        "def f():\n"
        "    from mlflow.entities import Metric\n"
        "    import importlib, sys\n"
        "    importlib.import_module('mlflow.exceptions')\n"
        "    __import__('mlflow')\n"
        "    sys.modules.get('mlflow.exceptions')\n"
        "    sys.modules['mlflow']\n"
        "    from lockgate.registry import runs\n"
        "    return 'mlflow', 'mlflow.db', importlib.import_module('lockgate.jobs')\n"
    )
    assert [what for _, what in mlflow_imports(tree)] == [
        "import mlflow",
        "import mlflow.genai.judges",
        "from mlflow.entities import ...",
        "import_module('mlflow.exceptions')",
        "__import__('mlflow')",
        "get('mlflow.exceptions')",
        "sys.modules['mlflow']",
    ]
    tree = ast.parse(
        '"""Sets `lockgate.status`: a docstring may name a tag."""\n'
        "TAGS = {'lockgate.status': 'promoted', 'lockgate.new_tag': 'x'}\n"
        "FILTER = \"tags.`lockgate.kind` = 'drift'\"\n"
        "EVIDENCE = 'lockgate.evidence'\n"
        "MODULES = ('lockgate.jobs.drift', 'lockgate.reports.html.safe_segment', 'lockgate.yaml')\n"
        "WHY = 'lockgate.approval is maybe, not one of approved, rejected'\n"
    )
    found = [text for _, text in tag_literals(tree, {"lockgate.status", "lockgate.evidence"})]
    assert found == ["lockgate.status", "lockgate.new_tag", "tags.`lockgate.kind` = 'drift'", "lockgate.evidence"]
