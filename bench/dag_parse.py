"""Parse time of each DAG file against an empty `@dag` file, in the DAG processor's process setup.

Airflow 3's DAG processor imports Airflow once, pre-imports the `airflow.*` modules a DAG file
names (`[dag_processor] parsing_pre_import_modules`), then forks one child per parse. This script
does the same: the parent imports `airflow.sdk` and each file's `airflow.*` imports and freezes the
garbage collector (as the processor's manager does), then every repetition forks a child that
imports the file under a fresh module name and reports how long the import took (the DAG object is
built by that import). Median of `--repeats` forks per file, the files interleaved.

Three process setups, one after the other in the same run:

* `sdk`: the parent has imported `airflow.sdk` only;
* `processor`: the parent has also imported `airflow.dag_processing.processor`;
* `manager`: the parent has also imported the modules of the process that `airflow dag-processor`
  runs and that forks every parse (`airflow.dag_processing.manager`, its job runner and CLI
  command): the closest to a real DAG processor. Airflow's `task` decorators are not among them,
  so any TaskFlow DAG file pays for them in every parse (~16 ms here) and an `@dag`-only file does not.

Two baselines, written to a temporary directory:

* `empty`: `from airflow.sdk import dag` and one `@dag` with no task;
* `same imports`: per DAG file, an empty `@dag` with the file's own non-lockgate imports (Airflow's
  `task`, `Param`, timetables...), so the difference is what lockgate adds: its modules and the
  DAG's body.

Prints per-file ms, the ratios to both, `target <= 1.2x empty: PASS/FAIL` per setup, and the
same check against `same imports` (lockgate's own share). Exit status 0 only when the first passes.

    .venv/bin/python bench/dag_parse.py [--repeats 15] [--dags dags]
"""

from __future__ import annotations

import argparse
import ast
import gc
import importlib
import importlib.util
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.2
EMPTY_DAG = '''"""An empty DAG."""
from airflow.sdk import dag


@dag(schedule=None)
def empty_dag():
    pass


empty_dag()
'''


def same_imports_dag(dag_file: Path) -> str:
    """An empty `@dag` file with the DAG file's top-level imports, lockgate's left out."""
    tree = ast.parse(dag_file.read_text())
    kept = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("lockgate"):
            kept.append(ast.unparse(node))
        elif isinstance(node, ast.Import) and not any(a.name.startswith("lockgate") for a in node.names):
            kept.append(ast.unparse(node))
    if not any(line.startswith("from airflow.sdk import") and " dag" in line for line in kept):
        kept.append("from airflow.sdk import dag")
    body = "\n".join(kept)
    return f'"""Empty DAG with the imports of {dag_file.name}."""\n{body}\n\n\n{EMPTY_DAG.split(chr(10), 2)[2]}'


def pre_import(path: Path) -> None:
    """What the DAG processor does in its own process before forking a parse."""
    from airflow.utils.file import iter_airflow_imports

    for module in iter_airflow_imports(str(path)):
        importlib.import_module(module)


def parse_once(path: Path, tag: str) -> float:
    """Fork, import `path` as a new module in the child, return the child's import time in seconds."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report and leave without running the parent's cleanup
        os.close(read_fd)
        code = 0
        try:
            spec = importlib.util.spec_from_file_location(f"lockgate_parse_bench_{tag}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            t0 = time.perf_counter()
            spec.loader.exec_module(module)
            elapsed = time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 - reported by the parent
            sys.stderr.write(f"{path}: {exc!r}\n")
            elapsed, code = -1.0, 1
        os.write(write_fd, struct.pack("d", elapsed))
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    (elapsed,) = struct.unpack("d", data) if len(data) == 8 else (-1.0,)
    if status != 0 or elapsed < 0:
        raise RuntimeError(f"parsing {path} failed in the child (status {status})")
    return elapsed


def measure(dag_files: list[Path], baselines: dict[Path, Path], empty: Path, repeats: int) -> tuple[bool, bool]:
    """Median parse times, the files interleaved in every repetition so that load hits them alike."""
    paths = [empty, *dag_files, *(baselines[f] for f in dag_files)]
    times: dict[Path, list[float]] = {p: [] for p in paths}
    for i in range(repeats):
        for path in paths:
            times[path].append(parse_once(path, f"{path.stem}_{i}"))
    ms = {p: 1000 * statistics.median(t) for p, t in times.items()}
    print(f"  {'empty @dag file':34s} {ms[empty]:7.1f} ms")
    ok_empty = ok_same = True
    for dag_file in dag_files:
        ratio, share = ms[dag_file] / ms[empty], ms[dag_file] / ms[baselines[dag_file]]
        ok_empty &= ratio <= TARGET
        ok_same &= share <= TARGET
        print(
            f"  {dag_file.name:34s} {ms[dag_file]:7.1f} ms  {ratio:5.2f}x empty   "
            f"{share:5.2f}x same imports ({ms[baselines[dag_file]]:.1f} ms)"
        )
    return ok_empty, ok_same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dags", type=Path, default=Path(__file__).resolve().parents[1] / "dags")
    args = parser.parse_args()
    if not hasattr(os, "fork"):
        print("needs os.fork (the DAG processor forks its parses too)", file=sys.stderr)
        return 2
    dag_files = sorted(p for p in args.dags.glob("*.py") if not p.name.startswith("_"))
    if not dag_files:
        print(f"no DAG files in {args.dags}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    import airflow.sdk  # noqa: F401 - the DAG processor's process has it

    print(f"import airflow.sdk: {time.perf_counter() - t0:.2f} s (paid once per DAG processor, not per parse)")
    with tempfile.TemporaryDirectory(prefix="lockgate_parse_") as tmp:
        empty = Path(tmp) / "empty_dag.py"
        empty.write_text(EMPTY_DAG)
        baselines = {}
        for dag_file in dag_files:
            baselines[dag_file] = Path(tmp) / f"same_imports_{dag_file.name}"
            baselines[dag_file].write_text(same_imports_dag(dag_file))
        for path in [empty, *dag_files, *baselines.values()]:
            pre_import(path)
        gc.freeze()  # the DAG processor's manager does this before its loop (no copy-on-write, no GC of it)

        print(f"median of {args.repeats} forked parses each; setup `sdk` (airflow.sdk imported):")
        results = {"sdk": measure(dag_files, baselines, empty, args.repeats)}

        import airflow.dag_processing.processor  # noqa: F401 - what the DAG processor's process also has

        gc.freeze()

        print("setup `processor` (airflow.dag_processing.processor imported as well):")
        results["processor"] = measure(dag_files, baselines, empty, args.repeats)

        # The process `airflow dag-processor` runs, which forks every parse: its manager's modules.
        import airflow.cli.commands.dag_processor_command  # noqa: F401
        import airflow.dag_processing.manager  # noqa: F401
        import airflow.jobs.dag_processor_job_runner  # noqa: F401

        gc.freeze()
        decorators = "airflow.sdk.definitions.decorators" in sys.modules
        print(
            "setup `manager` (the DAG processor manager's modules as well; Airflow's `task` decorators "
            f"{'are' if decorators else 'are not'} among them):"
        )
        results["manager"] = measure(dag_files, baselines, empty, args.repeats)
    for name, (ok_empty, ok_same) in results.items():
        print(f"target <= {TARGET}x empty ({name}): {'PASS' if ok_empty else 'FAIL'}")
        print(f"  lockgate's own share <= {TARGET}x same imports ({name}): {'PASS' if ok_same else 'FAIL'}")
    return 0 if all(ok for ok, _ in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
