"""docker/Dockerfile read as BuildKit would: pinned bases, the lock, the torch variants, the layout."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

import pytest

from .conftest import DOCKER, ROOT

DOCKERFILE = DOCKER / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def runs(self) -> list[str]:
        return [arg for op, arg in self.instructions if op == "RUN"]

    def text(self, op: str) -> str:
        return "\n".join(arg for o, arg in self.instructions if o == op)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        op, _, arg = pending.partition(" ")
        out.append((op.upper(), arg.strip()))
        pending = ""
    return out


def _global_args(instructions: list[tuple[str, str]]) -> dict[str, str]:
    args = {}
    for op, arg in instructions:
        if op == "FROM":
            break
        if op == "ARG" and "=" in arg:
            key, value = arg.split("=", 1)
            args[key] = value
    return args


def _stages() -> dict[str, Stage]:
    instructions = _instructions()
    args = _global_args(instructions)
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for op, arg in instructions:
        if op == "FROM":
            image, _, name = re.sub(r"--platform=\S+\s+", "", arg).partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.strip())
            current = Stage(name.strip(), image)
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((op, arg))
    return stages


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_stages_and_default_target() -> None:
    stages = _stages()
    assert list(stages) == ["mlflow", "airflow-base", "deps-cpu", "deps-gpu", "airflow"]
    # The last stage is what a plain `docker build` produces: the Airflow image.
    assert list(stages)[-1] == "airflow"


def test_base_images_are_pinned_and_match_the_lock() -> None:
    stages, lock = _stages(), _lock()
    airflow_base = stages["airflow-base"].base
    m = re.fullmatch(r"apache/airflow:slim-(?P<airflow>\d+\.\d+\.\d+)-python(?P<py>3\.\d+)", airflow_base)
    assert m, f"not an exact official tag: {airflow_base}"
    assert m.group("airflow") == lock["apache-airflow"], "image and constraints.txt disagree on Airflow"
    mlflow_base = stages["mlflow"].base
    m2 = re.fullmatch(r"python:(?P<py>3\.\d+)\.\d+-slim-bookworm", mlflow_base)
    assert m2, f"not an exact Python tag: {mlflow_base}"
    assert m.group("py") == m2.group("py") == "3.11"
    assert stages["airflow"].base == "deps-cpu", "default TORCH_VARIANT must be cpu"


def test_packages_come_from_the_lock() -> None:
    stages = _stages()
    installs = [r for s in stages.values() for r in s.runs() if "uv pip install" in r]
    assert len(installs) == 4
    for run in installs:
        if "--no-deps -e /opt/airflow" in run:
            continue  # the project itself, after its locked dependencies
        assert re.search(r"-c (/tmp/)?constraints\.txt", run), f"unconstrained install: {run[:120]}"
    makefile = (ROOT / "Makefile").read_text()
    uv = re.search(r"^UV_VERSION := (\S+)", makefile, re.M)
    assert uv and f"ARG UV_VERSION={uv.group(1)}" in DOCKERFILE.read_text(), "uv differs from the Makefile's"
    assert "torch" in _lock()


def test_torch_variants() -> None:
    stages = _stages()
    cpu, gpu = " ".join(stages["deps-cpu"].runs()), " ".join(stages["deps-gpu"].runs())
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in cpu
    assert "--index-strategy unsafe-best-match" in cpu
    assert "download.pytorch.org" not in gpu  # PyPI's torch wheel is the CUDA build
    assert "NVIDIA_VISIBLE_DEVICES=all" in stages["deps-gpu"].text("ENV")
    for run in (cpu, gpu):
        assert "-r pyproject.toml" in run and "apache-airflow-providers-celery" in run
        assert "${AIRFLOW_EXTRA_PACKAGES}" in run  # opt-in extras, under the same constraints
    assert 'ARG AIRFLOW_EXTRA_PACKAGES=""' in DOCKERFILE.read_text()  # nothing unlocked by default


def test_mlflow_image_has_the_auth_extra_pinned() -> None:
    stage = _stages()["mlflow"]
    run = " ".join(stage.runs())
    assert "flask-wtf==${FLASK_WTF_VERSION}" in run and "psycopg2-binary" in run
    args = dict(a.split("=", 1) for op, a in stage.instructions if op == "ARG" and "=" in a)
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["FLASK_WTF_VERSION"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["WTFORMS_VERSION"])
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in stage.text("ENV")
    assert stage.text("USER") == "mlflow"
    assert stage.text("ENTRYPOINT") == '["python", "/opt/mlflow/entrypoint.py"]'
    assert (DOCKER / "mlflow" / "entrypoint.py").is_file()


def test_airflow_image_layout_and_lockgate_env() -> None:
    stage = _stages()["airflow"]
    assert stage.text("COPY") == "--chown=airflow:0 . /opt/airflow/"
    run = " ".join(stage.runs())
    assert "uv pip install --no-deps -e /opt/airflow" in run
    assert "/opt/airflow/config/" in run and "airflow_local_settings.py" in run
    env = stage.text("ENV")
    for expected in (
        "LOCKGATE_HOME=/opt/lockgate",
        "LOCKGATE_REPORTS_DIR=/opt/lockgate/reports",
        "LOCKGATE_CONFIG=/opt/airflow/include/lockgate.yaml",
    ):
        assert expected in env
    # SQLite's locking cannot be trusted on the shared (NFS) LOCKGATE_HOME: the embedding cache stays local.
    cache = re.search(r"LOCKGATE_EMBEDDINGS_CACHE=(\S+)", env)
    assert cache and not cache.group(1).startswith("/opt/lockgate")
    # The official image runs as `airflow`; nothing in ours switches back to root at the end.
    base_users = [a for op, a in _stages()["airflow-base"].instructions if op == "USER"]
    assert base_users[-1] == "airflow"
    assert not stage.text("USER")


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for the patterns used here (last match wins, ! re-includes)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    ("path", "in_context"),
    [
        ("pyproject.toml", True),
        ("constraints.txt", True),
        ("README.md", True),
        ("airflow_settings.yaml", True),
        ("include/lockgate/settings.py", True),
        ("include/lockgate.yaml", True),
        ("dags/lockgate_promotion.py", True),
        ("plugins/lockgate_reports.py", True),
        ("docker/airflow/init_stack.py", True),
        ("docker/mlflow/entrypoint.py", True),
        ("docker/mlflow/mlflow_auth.py", True),
        ("docker/kubernetes/airflow_local_settings.py", True),
        ("docker/kubernetes/gpu-pod-override.yaml", True),
        ("docker/.env", False),
        (".venv/bin/python", False),
        (".git/config", False),
        (".lockgate/mlflow.db", False),
        ("tests/conftest.py", False),
        ("include/lockgate/__pycache__/settings.cpython-311.pyc", False),
    ],
)
def test_build_context_allow_list(path: str, in_context: bool) -> None:
    patterns = [
        line.strip()
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert _ignored(path, patterns) is (not in_context)


def test_files_the_images_use_exist() -> None:
    for path in (
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "airflow_settings.yaml",
        "include/lockgate.yaml",
        "docker/airflow/init_stack.py",
        "docker/mlflow/entrypoint.py",
        "docker/mlflow/mlflow_auth.py",
        "docker/kubernetes/airflow_local_settings.py",
        "docker/kubernetes/gpu-pod-override.yaml",
    ):
        assert (ROOT / path).is_file(), path
