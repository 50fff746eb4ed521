"""docker/airflow/init_stack.py, the compose init job's pure parts (the whole job runs in
test_celery_routing.py, against PostgreSQL, as that test's set-up)."""

from __future__ import annotations

import importlib.util
import json
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from .conftest import DOCKER, ROOT, interpolate_tree, load_compose, service_env


@pytest.fixture(scope="module")
def init_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lockgate_init_stack", DOCKER / "airflow" / "init_stack.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_settings_keep_pools_and_variables_but_not_connections(init_stack: ModuleType) -> None:
    original = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    filtered = init_stack.settings_without_connections(original)
    assert "connections" not in filtered["airflow"]
    assert filtered["airflow"].get("pools") == original["airflow"].get("pools")
    assert filtered["airflow"].get("variables") == original["airflow"].get("variables")
    assert "gpu" in {p["pool_name"] for p in filtered["airflow"]["pools"]}
    # ...and the connections it drops are the ones compose provides as AIRFLOW_CONN_* variables.
    dropped = {c["conn_id"] for c in original["airflow"].get("connections") or []}
    env = service_env(load_compose("compose.yaml")["services"]["airflow-init"])
    assert {f"AIRFLOW_CONN_{c.upper()}" for c in dropped} <= set(env)
    # The result is still a valid `lockgate settings apply` file.
    from lockgate.devtools.stack.settings_apply import parse_settings

    parse_settings(filtered)


def test_placeholders_are_refused(init_stack: ModuleType, env_example: dict[str, str]) -> None:
    env = {
        "AIRFLOW__CORE__FERNET_KEY": "CHANGE_ME",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:CHANGE_ME@postgres:5432/airflow",
        "AIRFLOW_ADMIN_PASSWORD": "a-real-one",
    }
    assert init_stack.placeholder_secrets(env) == ["AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    # The init job's environment, built from an unedited .env.example, is refused in full.
    init_env = interpolate_tree(service_env(load_compose("compose.yaml")["services"]["airflow-init"]), env_example)
    refused = set(init_stack.placeholder_secrets(init_env))
    for name in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__CELERY__RESULT_BACKEND", "MLFLOW_TRACKING_PASSWORD"):
        assert name in refused


def test_main_refuses_placeholders_before_touching_anything(
    init_stack: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW_ADMIN_PASSWORD", "CHANGE_ME")
    ran: list[object] = []
    monkeypatch.setattr(init_stack, "_run", lambda *a, **k: ran.append(a))
    assert init_stack.main([]) == 2
    assert not ran
    assert "AIRFLOW_ADMIN_PASSWORD" in capsys.readouterr().err


def test_ui_password_file(init_stack: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "auth" / "passwords.json"
    init_stack.write_passwords_file(path, "admin", "s3cret-value")
    init_stack.write_passwords_file(path, "admin", "rotated-value")  # re-running replaces it
    assert json.loads(path.read_text()) == {"admin": "rotated-value"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    compose_env = service_env(load_compose("compose.yaml")["services"]["airflow-apiserver"])
    assert compose_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == "/opt/airflow/auth/passwords.json"
