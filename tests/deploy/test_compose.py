"""docker/compose*.yaml as `docker compose` would read them, checked without a Docker engine."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import (
    COMPOSE_FILES,
    DOCKER,
    ROOT,
    SECRET_NAME,
    InterpolationError,
    airflow_env_keys,
    interpolate,
    interpolate_tree,
    load_compose,
    service_env,
    tree_refs,
    unknown_airflow_keys,
)

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "compose-spec.json").read_text())
# An exact version (optionally v-prefixed as Prometheus tags its images, optionally with a variant
# suffix such as -bookworm or -gpu), or a digest.
PINNED = re.compile(r"^[^:@\s]+(:(?P<tag>v?\d+(\.\d+)+(-[A-Za-z0-9.]+)*))?(@sha256:[0-9a-f]{64})?$")
ALLOWED_RESTART = re.compile(r"^(always|unless-stopped|on-failure(:\d+)?)$")
AIRFLOW_IMAGE = re.compile(r"/airflow:")


def _compose(name: str, env: dict[str, str]) -> dict[str, Any]:
    return interpolate_tree(load_compose(name), env)


def _airflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if AIRFLOW_IMAGE.search(s.get("image", ""))}


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_validates_against_the_compose_schema(name: str, sample_env: dict[str, str]) -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    for label, doc in (("raw", load_compose(name)), ("interpolated", _compose(name, sample_env))):
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, f"{name} ({label}): " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
        )


def test_schema_is_the_compose_specification() -> None:
    # Guard against validating with an empty or unrelated schema that would accept anything.
    assert SCHEMA["title"] == "Compose Specification"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate({"services": {"x": {"restart": ["not", "a", "string"]}}})


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_image_is_pinned(name: str, sample_env: dict[str, str]) -> None:
    for service, spec in _compose(name, sample_env)["services"].items():
        if "image" not in spec:
            # compose.central.yaml only adds ports to services defined in compose.yaml.
            assert name != "compose.yaml" and "build" not in spec, f"{name}:{service} has no image: tag"
            continue
        image = spec["image"]
        m = PINNED.match(image)
        assert m and (m.group("tag") or "@sha256:" in image), f"{name}:{service}: image {image!r} is not pinned"
        assert "latest" not in image


def test_base_images_in_the_compose_file_are_exact_versions(sample_env: dict[str, str]) -> None:
    services = _compose("compose.yaml", sample_env)["services"]
    assert services["postgres"]["image"].startswith("postgres:16.")
    assert services["redis"]["image"].startswith("redis:7.2.")  # the BSD-licensed Redis line
    version = sample_env["LOCKGATE_VERSION"]
    assert services["airflow-scheduler"]["image"].endswith(f"/airflow:{version}")
    assert services["airflow-worker-gpu"]["image"].endswith(f"/airflow:{version}-gpu")
    assert services["mlflow"]["image"].endswith(f"/mlflow:{version}")


def test_every_service_has_a_health_check_or_is_a_one_shot_job(sample_env: dict[str, str]) -> None:
    services = _compose("compose.yaml", sample_env)["services"]
    awaited_completion = {
        dep
        for spec in services.values()
        for dep, cond in (spec.get("depends_on") or {}).items()
        if cond.get("condition") == "service_completed_successfully"
    }
    one_shots = set()
    for name, spec in services.items():
        check = spec.get("healthcheck")
        if check:
            assert not check.get("disable") and check["test"][0] in ("CMD", "CMD-SHELL"), name
            for key in ("interval", "timeout", "retries"):
                assert key in check, f"{name}: healthcheck without {key}"
        else:
            assert name in awaited_completion, f"{name}: no health check and nobody awaits its completion"
            one_shots.add(name)
    assert one_shots == {"airflow-init", "mlflow-init"}


@pytest.mark.parametrize("name", ["compose.yaml", "compose.gpu-host.yaml"])
def test_restart_policies(name: str, sample_env: dict[str, str]) -> None:
    for service, spec in _compose(name, sample_env)["services"].items():
        restart = spec.get("restart")
        assert restart and ALLOWED_RESTART.match(restart), f"{name}:{service}: restart={restart!r}"
        if service.endswith("-init"):
            assert restart.startswith("on-failure"), f"{service}: a one-shot job must not restart forever"


def test_dependencies_wait_for_health(sample_env: dict[str, str]) -> None:
    services = _compose("compose.yaml", sample_env)["services"]
    for name, spec in services.items():
        for dep, cond in (spec.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            expected = "service_healthy" if "healthcheck" in services[dep] else "service_completed_successfully"
            assert cond.get("condition") == expected, f"{name} -> {dep}: {cond}"
    for name in _airflow_services({"services": services}):
        if name != "airflow-init":
            assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_airflow_settings_use_airflow_3_keys(
    name: str,
    sample_env: dict[str, str],
    airflow_config_keys: set[tuple[str, str]],
    removed_airflow_keys: set[tuple[str, str]],
) -> None:
    keys: set[tuple[str, str]] = set()
    for spec in _compose(name, sample_env)["services"].values():
        keys |= airflow_env_keys(service_env(spec))
    unknown = unknown_airflow_keys(keys, airflow_config_keys)
    assert not unknown, f"{name}: options the installed Airflow does not define: {sorted(unknown)}"
    assert not keys & removed_airflow_keys, f"{name}: Airflow 2 options: {sorted(keys & removed_airflow_keys)}"
    text = (DOCKER / name).read_text()
    assert "webserver" not in text.lower(), "Airflow 3 has no webserver: api-server"


def test_removed_key_list_is_real(removed_airflow_keys: set[tuple[str, str]]) -> None:
    # The check above is only as good as this list: it must hold the Airflow 2 keys we know of.
    assert {("webserver", "secret_key"), ("core", "sql_alchemy_conn"), ("webserver", "web_server_port")} <= (
        removed_airflow_keys
    )


def test_the_stack_has_every_airflow_3_component(sample_env: dict[str, str]) -> None:
    services = _compose("compose.yaml", sample_env)["services"]

    def command(name: str) -> str:
        cmd = services[name]["command"]
        return cmd if isinstance(cmd, str) else " ".join(cmd)

    assert command("airflow-apiserver") == "api-server"
    assert command("airflow-scheduler") == "scheduler"
    assert command("airflow-dag-processor") == "dag-processor"
    assert command("airflow-triggerer") == "triggerer"
    assert command("airflow-init") == "python /opt/airflow/docker/airflow/init_stack.py"
    assert (DOCKER / "airflow" / "init_stack.py").is_file()
    env = service_env(services["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")


def test_workers_route_the_gpu_queue(sample_env: dict[str, str]) -> None:
    services = _compose("compose.yaml", sample_env)["services"]
    default, gpu = services["airflow-worker"]["command"], services["airflow-worker-gpu"]["command"]
    queues = default[default.index("--queues") + 1].split(",")
    assert "default" in queues
    assert gpu[:2] == ["celery", "worker"] and gpu[gpu.index("--queues") + 1] == "gpu"
    assert gpu[gpu.index("--concurrency") + 1] == "1"
    devices = services["airflow-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["airflow-worker-gpu"]["build"]["args"]["TORCH_VARIANT"] == "gpu"
    assert services["airflow-worker"]["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert services["airflow-worker-gpu"]["profiles"] == ["gpu"]
    # With a GPU worker the default worker must leave queue `gpu` to it: the documented setting.
    assert "LOCKGATE_DEFAULT_WORKER_QUEUES" in (DOCKER / ".env.example").read_text()
    # The queue and pool names are the ones lockgate's settings create.
    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    assert "gpu" in {p["pool_name"] for p in settings["airflow"]["pools"]}


@pytest.mark.parametrize("name", ["compose.yaml", "compose.gpu-host.yaml"])
def test_lockgate_settings_on_every_airflow_container(name: str, sample_env: dict[str, str]) -> None:
    airflow = _airflow_services(_compose(name, sample_env))
    assert airflow
    for service, spec in airflow.items():
        env = service_env(spec)
        for var in ("LOCKGATE_HOME", "LOCKGATE_REPORTS_DIR", "LOCKGATE_CONFIG"):
            assert env.get(var), f"{service}: {var} unset"
        assert env.get("LOCKGATE_LOGS_DB_URL") or env.get("AIRFLOW_CONN_LOCKGATE_LOGS"), service
        assert env.get("MLFLOW_TRACKING_URI") or env.get("AIRFLOW_CONN_LOCKGATE_MLFLOW"), service
        assert env["LOCKGATE_REPORTS_DIR"].startswith(env["LOCKGATE_HOME"])
        # The reports the workers write are what the API server's plugin serves: one shared volume.
        assert any(v.startswith("lockgate-home:" + env["LOCKGATE_HOME"]) for v in spec["volumes"]), service


def test_mlflow_runs_the_basic_auth_app_on_postgres(sample_env: dict[str, str]) -> None:
    services = _compose("compose.yaml", sample_env)["services"]
    mlflow = services["mlflow"]
    assert mlflow["command"][:2] == ["--app-name", "basic-auth"]
    env = service_env(mlflow)
    assert env["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    assert env["MLFLOW_AUTH_DATABASE_URI"].endswith("@postgres:5432/mlflow_auth")
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "mlflow:5000" in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert "mlflow-artifacts:/mlflow/artifacts" in mlflow["volumes"]
    assert service_env(services["mlflow-init"])["LOCKGATE_MLFLOW_PASSWORD"]
    assert services["mlflow-init"]["command"] == ["bootstrap"]
    # The Airflow containers sign in as lockgate's service account, never as the MLflow admin.
    for spec in _airflow_services({"services": services}).values():
        env = service_env(spec)
        assert env["MLFLOW_TRACKING_USERNAME"] == sample_env["LOCKGATE_MLFLOW_USERNAME"]
        assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in env


def test_postgres_creates_the_databases_on_first_start(sample_env: dict[str, str]) -> None:
    postgres = _compose("compose.yaml", sample_env)["services"]["postgres"]
    mount = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v)
    source = DOCKER / mount.split(":")[0]
    assert source.resolve() == (DOCKER / "postgres" / "init-databases.sql").resolve()
    assert mount.endswith(":ro")
    env = service_env(postgres)
    for var in ("AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD", "LOCKGATE_DB_PASSWORD"):
        assert env[var] and var in source.read_text()


def test_secrets_are_required_variables_never_defaults() -> None:
    for name in COMPOSE_FILES:
        for var, op, arg in tree_refs(load_compose(name)):
            if SECRET_NAME.search(var):
                assert op == ":?", f"{name}: ${{{var}}} must be required (${{{var}:?...}}), not {op}{arg!r}"


def test_compose_refuses_to_start_without_secrets(sample_env: dict[str, str]) -> None:
    incomplete = {k: v for k, v in sample_env.items() if k != "AIRFLOW_DB_PASSWORD"}
    with pytest.raises(InterpolationError, match="AIRFLOW_DB_PASSWORD"):
        _compose("compose.yaml", incomplete)


def test_no_secret_literal_in_deployment_files(env_example: dict[str, str]) -> None:
    # .env.example holds placeholders only; every other file takes secrets from ${VAR}.
    for key, value in env_example.items():
        if SECRET_NAME.search(key):
            assert value == "CHANGE_ME", f".env.example: {key} must be the CHANGE_ME placeholder"
    credential_in_url = re.compile(r"://[^/\s:@]+:(?P<pw>[^@\s]+)@")
    assignment = re.compile(
        r"(?i)\b[\w.-]*(password|secret|fernet|token|api_key)[\w.-]*\s*[:=]\s*[\"']?(?P<v>[^\s\"',}]+)"
    )
    # Python files read their secrets from the environment; the assignment heuristic is for config
    # and docs (a URL with a password is checked everywhere).
    files = [p for p in DOCKER.rglob("*") if p.is_file() and p.name != ".env" and p.suffix != ".pyc"]
    files += [ROOT / "docs" / "deployment.md", ROOT / "docs" / "kubernetes.md"]
    for path in files:
        if not path.exists():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            for m in credential_in_url.finditer(line):
                assert m.group("pw").startswith(("${", "$", "<", "...")), f"{where}: password in a URL"
            for m in assignment.finditer(line) if path.suffix != ".py" else ():
                value = m.group("v")
                literal = not value.startswith(("${", "$", "<", "CHANGE_ME", "os.environ", "env")) and len(value) >= 8
                assert not (literal and re.search(r"[0-9]", value) and re.search(r"[A-Za-z]", value)), (
                    f"{where}: looks like a secret literal: {line.strip()[:120]}"
                )


def test_real_env_file_is_git_ignored() -> None:
    out = subprocess.run(
        ["git", "check-ignore", "-q", "docker/.env"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, "docker/.env must be git-ignored"
    tracked = subprocess.run(
        ["git", "ls-files", "docker/.env"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert not tracked.strip(), "docker/.env is tracked"


def test_env_example_covers_every_variable_the_files_need(env_example: dict[str, str]) -> None:
    for name in COMPOSE_FILES:
        missing = {var for var, op, _ in tree_refs(load_compose(name)) if op == ":?"} - set(env_example)
        assert not missing, f"{name}: required variables absent from .env.example: {sorted(missing)}"
    # and interpolation with the example succeeds for every file
    for name in COMPOSE_FILES:
        interpolate_tree(load_compose(name), env_example)


def test_interpolation_follows_the_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${UNSET:-d}/${EMPTY-d}", env) == "v/d/d/"
    assert interpolate("$$HOME ${SET:+alt} ${EMPTY:+alt}", env) == "$HOME alt "
    with pytest.raises(InterpolationError):
        interpolate("${EMPTY:?needed}", env)
    assert interpolate("${EMPTY?needed}", env) == ""
