"""pyproject.toml states ranges and declares every distribution lockgate imports; constraints.txt pins them;
and the ranges alone install into a fresh environment in which every module imports."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.version import Version

from lockgate.devtools.bytecode import seed_bytecode

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


# Run by the fresh environment's interpreter, from outside the repository: every module of the
# installed package, the plugin, and the DAG files through Airflow's own parser.
_PROBE = """
import importlib, importlib.metadata as md, importlib.util, json, pkgutil, sys, time, traceback
from pathlib import Path

spent, t0 = {}, time.perf_counter()

root = Path(sys.argv[1])
failed, modules = {}, []
import lockgate

installed = Path(lockgate.__file__).resolve()
for info in pkgutil.walk_packages(lockgate.__path__, "lockgate."):
    try:
        importlib.import_module(info.name)
        modules.append(info.name)
    except BaseException as e:
        failed[info.name] = "".join(traceback.format_exception_only(e)).strip()
spec = importlib.util.spec_from_file_location("lockgate_plugin", root / "plugins" / "lockgate_plugin.py")
try:
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
except BaseException as e:
    failed["plugins/lockgate_plugin.py"] = "".join(traceback.format_exception_only(e)).strip()
spent["lockgate"] = time.perf_counter() - t0
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=str(root / "dags"))
failed.update({k: v.strip().splitlines()[-1] for k, v in bag.import_errors.items()})
spent["plugin, DAGs"] = time.perf_counter() - t0 - sum(spent.values())
# Every import statement of the sources, those inside functions too (lockgate imports its heavy
# libraries where it uses them, so importing its modules alone loads few of them).
for module, names in json.loads(sys.argv[2]):
    try:
        mod = importlib.import_module(module)
        for name in names:
            if not hasattr(mod, name):
                importlib.import_module(f"{module}.{name}")
    except BaseException as e:
        failed[f"import {module} ({', '.join(names)})"] = "".join(traceback.format_exception_only(e)).strip()
spent["imports"] = time.perf_counter() - t0 - sum(spent.values())
# Beyond imports, one small run of what leans most on its dependencies' internals: Evidently's drift
# and descriptor reports over pandas frames (Evidently 0.7.23 imports private pandas names).
try:
    import pandas as pd, tempfile
    from lockgate.drift.evidently_report import column_part
    from lockgate.judge.evidently_report import write_evidently_report

    ref = pd.DataFrame({"latency_ms": [float(i % 13) for i in range(60)], "status": ["ok", "error", "ok"] * 20})
    cur = pd.DataFrame({"latency_ms": [float(i % 17) for i in range(60)], "status": ["ok", "ok", "error"] * 20})
    part = column_part(ref, cur, ["latency_ms", "status"], {"latency_ms": 0.1, "status": 0.05})
    assert set(part.values) == {"latency_ms", "status"}, part.values
    rows = [{"prompt": "a question", "response": "An answer. Two.", "s": 0.5}] * 10
    assert write_evidently_report(rows, rows, ["s"], Path(tempfile.mkdtemp()) / "e.html") is not None
except BaseException as e:
    failed["Evidently reports"] = "".join(traceback.format_exception(e))[-2000:]
spent["reports"] = time.perf_counter() - t0 - sum(spent.values())
print(json.dumps({
    "spent": spent, "installed": str(installed), "modules": modules, "dags": sorted(bag.dag_ids), "failed": failed,
    "versions": {d.metadata["Name"].lower(): d.version for d in md.distributions()},
}))
"""


def _import_statements() -> list[tuple[str, list[str]]]:
    """(module, names imported from it) of every absolute import of a third-party module in SOURCES."""
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.setdefault(alias.name, set())
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.setdefault(node.module, set()).update(a.name for a in node.names)
    third_party = {m: n for m, n in found.items() if m.split(".")[0] not in sys.stdlib_module_names | {"lockgate"}}
    return sorted((m, sorted(n)) for m, n in third_party.items())


def _uv() -> str:
    uv = Path(sys.executable).parent / "uv"  # `make install` puts it beside the interpreter
    found = str(uv) if uv.exists() else shutil.which("uv")
    if not found:
        pytest.fail("uv not found beside the interpreter nor on PATH: run `make install`", pytrace=False)
    return found


def _cpu_torch() -> tuple[list[str], str | None]:
    """Where the CPU build of torch comes from, as the Makefile's TORCH_SOURCE decides (never CUDA's
    multi-GB packages: this environment is only imported).

    A local wheel folder (PIP_FIND_LINKS) is the only source of a CPU torch on a machine that has one
    (PyTorch's index is out of reach there), and uv would take a newer CUDA build from PyPI over it: so
    torch alone is held to that wheel's version. Elsewhere PyTorch's CPU index, where the range picks.
    """
    folder = os.environ.get("PIP_FIND_LINKS", "")
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = [w for w in Path(folder).glob("torch-*.whl") if f"-{tag}-" in w.name] if folder else []
    if wheels:
        newest = max(Version(w.name.split("-")[1]) for w in wheels)
        return ["--find-links", folder], str(newest)
    cpu_index = ["--extra-index-url", "https://download.pytorch.org/whl/cpu", "--index-strategy", "unsafe-best-match"]
    return cpu_index, None


@pytest.mark.slow
def test_the_ranges_alone_install_and_every_module_imports(tmp_path: Path) -> None:
    """`pip install .` without constraints.txt into a fresh environment: each dependency at the newest
    version its range allows (no pins, no `--no-deps`), then every module, the plugin and the DAGs load,
    every third-party import statement of the sources runs (those inside functions too), and Evidently's
    drift and descriptor reports run once on a few rows.

    A range that lets in a release lockgate cannot import fails here, with the versions it resolved.
    """
    # A copy of what the wheel is built from: an in-tree build would leave build/ behind, whose stale
    # modules a later build would package.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "include" / "lockgate", src / "include" / "lockgate",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    uv = _uv()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    timings = {}

    try:
        t0 = time.perf_counter()
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env, check=True, timeout=120)
        torch_source, torch_wheel = _cpu_torch()
        constraint = []
        if torch_wheel:
            (tmp_path / "torch.txt").write_text(f"torch=={torch_wheel}\n")
            constraint = ["-c", str(tmp_path / "torch.txt")]
        install = subprocess.run(
            [uv, "pip", "install", "--python", str(python), *torch_source, *constraint, str(src)],
            env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        timings["install"] = time.perf_counter() - t0
        assert install.returncode == 0, f"the ranges do not resolve or install:\n{install.stderr[-4000:]}"

        (tmp_path / "probe.py").write_text(_PROBE)
        t0 = time.perf_counter()
        # uv links the new environment's files from the cache it filled for this one: where a range
        # resolved to the same release, this environment's compiled bytecode fits them (Python checks
        # each .pyc against its source and recompiles the others), and the probe need not recompile
        # Airflow, MLflow, torch... (16 s of its 26 s here).
        site_packages = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        assert site_packages.is_dir(), sorted(p.name for p in (venv / "lib").iterdir())
        seed_bytecode(tmp_path / "pycache", site_packages)
        probe_env = {**env, "PYTHONNOUSERSITE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")}
        probe = subprocess.run(
            [str(python), str(tmp_path / "probe.py"), str(ROOT), json.dumps(_import_statements())],
            cwd=tmp_path, env=probe_env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        timings["imports"] = time.perf_counter() - t0
        assert probe.returncode == 0, f"the probe failed:\n{probe.stderr[-4000:]}"
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # ~2 GB, mostly links into uv's cache
        shutil.rmtree(tmp_path / "pycache", ignore_errors=True)
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    versions = found["versions"]
    resolved = ", ".join(f"{d} {versions.get(d)}" for d in ("apache-airflow", "evidently", "mlflow", "torch",
                                                            "transformers", "pandas", "numpy"))  # fmt: skip
    probe_s = ", ".join(f"{k} {v:.1f}" for k, v in found["spent"].items())
    print(f"ranges alone: install {timings['install']:.1f} s, probe {timings['imports']:.1f} s ({probe_s}); {resolved}")

    assert Path(found["installed"]).is_relative_to(venv), f"lockgate imported from {found['installed']}"
    failures = "\n".join(f"{name}: {why}" for name, why in found["failed"].items())
    assert not failures, f"with the ranges resolved to {resolved}:\n{failures}"
    expected = {
        ".".join(p.relative_to(ROOT / "include").with_suffix("").parts).removesuffix(".__init__")
        for p in SOURCES
        if p.is_relative_to(ROOT / "include")
    }
    assert set(found["modules"]) | {"lockgate"} == expected
    assert found["dags"] == sorted(p.stem for p in (ROOT / "dags").glob("lockgate_*.py"))
    assert not any(d.startswith("nvidia-") and d != "nvidia-ml-py" for d in versions), "a CUDA build of torch"
