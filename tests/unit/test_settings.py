"""lockgate.settings: environment overrides, URL resolution, and the README documenting each variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.devtools.settings import DEV_ENV_VARS, DevSettings, get_dev_settings
from lockgate.errors import ConfigError
from lockgate.settings import (
    DEFAULT_POLICY_PATH,
    ENV_VARS,
    PROJECT_ROOT,
    get_settings,
    resolve_logs_db_url,
    resolve_mlflow_uri,
    resolve_state_db_url,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No lockgate variable and no Airflow connection or task context from the caller."""
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    for var in (
        "AIRFLOW_CONN_LOCKGATE_LOGS",
        "AIRFLOW_CONN_LOCKGATE_MLFLOW",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


# --------------------------------------------------------------------------- settings


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    s = get_settings()
    assert s.home == (PROJECT_ROOT / ".lockgate").resolve()
    assert s.reports_dir == s.home / "reports"
    assert s.config_path == DEFAULT_POLICY_PATH
    assert (s.airflow_port, s.mlflow_port) == (8080, 5000)
    assert s.airflow_api_url == "http://127.0.0.1:8080"
    assert s.logs_db_url is None and s.mlflow_tracking_uri is None and s.state_db_url is None
    assert s.pushgateway_url is None  # metrics export is off unless asked for
    assert s.mlflow_webhook_secret is None  # the webhook receiver is off unless given a secret
    assert s.public_url == "http://127.0.0.1:8080"  # report links: the local stack's pages
    assert s.in_airflow is False  # outside a task, connections come from AIRFLOW_CONN_* only
    assert s.reports_url is None  # reports are served from LOCKGATE_REPORTS_DIR itself


def test_the_reports_url_is_a_url(clean_env: pytest.MonkeyPatch) -> None:
    from lockgate.errors import ConfigError

    clean_env.setenv("LOCKGATE_REPORTS_URL", "/srv/reports")  # a folder is LOCKGATE_REPORTS_DIR's job
    with pytest.raises(ConfigError) as err:
        get_settings()
    assert err.value.key == "LOCKGATE_REPORTS_URL"


def test_every_setting_has_an_env_override(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "LOCKGATE_CONFIG": str(tmp_path / "policy.yaml"),
        "LOCKGATE_HOME": str(tmp_path / "home"),
        "LOCKGATE_REPORTS_DIR": str(tmp_path / "reports"),
        "LOCKGATE_REPORTS_URL": "s3://bucket/lockgate/reports",
        "LOCKGATE_LOGS_DB_URL": "postgresql://u@h/logs",
        "LOCKGATE_STATE_DB_URL": "sqlite:///state.db",
        "MLFLOW_TRACKING_URI": "http://mlflow:5001",
        "LOCKGATE_AIRFLOW_URL": "http://airflow:9999",
        "LOCKGATE_MLFLOW_PORT": "5123",
        "LOCKGATE_AIRFLOW_PORT": "8123",
        "LOCKGATE_PUSHGATEWAY_URL": "http://pushgateway:9091",
        "LOCKGATE_MLFLOW_WEBHOOK_SECRET": " s3cret ",
        "LOCKGATE_PUBLIC_URL": "https://airflow.example.com",
        "LOCKGATE_EMBEDDINGS_DEVICE": "cuda:1",
        "LOCKGATE_EMBEDDINGS_THREADS": "3",
        "LOCKGATE_EMBEDDINGS_BF16": "0",
        "LOCKGATE_EMBEDDINGS_CACHE": "off",
        "LOCKGATE_IN_AIRFLOW": "1",
    }
    assert set(values) == set(ENV_VARS.values()), "a setting without a test of its override"
    for k, v in values.items():
        clean_env.setenv(k, v)
    s = get_settings()
    assert s.config_path == tmp_path / "policy.yaml"
    assert s.home == tmp_path / "home"
    assert s.reports_dir == tmp_path / "reports"
    assert s.reports_url == "s3://bucket/lockgate/reports"
    assert s.logs_db_url == "postgresql://u@h/logs"
    assert s.state_db_url == "sqlite:///state.db"
    assert s.mlflow_tracking_uri == "http://mlflow:5001"
    assert s.airflow_api_url == "http://airflow:9999"
    assert (s.mlflow_port, s.airflow_port) == (5123, 8123)
    assert s.pushgateway_url == "http://pushgateway:9091"
    assert s.mlflow_webhook_secret == "s3cret"
    assert s.public_url == "https://airflow.example.com"
    assert s.in_airflow is True
    assert (s.embeddings_device, s.embeddings_threads, s.embeddings_bf16, s.embeddings_cache) == (
        "cuda:1",
        3,
        False,
        "off",
    )


def test_reports_follow_home_and_api_url_follows_port(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("LOCKGATE_HOME", str(tmp_path))
    clean_env.setenv("LOCKGATE_AIRFLOW_PORT", "8181")
    s = get_settings()
    assert s.reports_dir == tmp_path / "reports"
    assert s.airflow_api_url == "http://127.0.0.1:8181"
    assert s.public_url == "http://127.0.0.1:8181"


def test_settings_are_read_at_call_time(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("LOCKGATE_HOME", str(tmp_path / "a"))
    first = get_settings().home
    clean_env.setenv("LOCKGATE_HOME", str(tmp_path / "b"))
    assert get_settings().home != first


@pytest.mark.parametrize(("var", "value"), [("LOCKGATE_MLFLOW_PORT", "abc"), ("LOCKGATE_AIRFLOW_PORT", "80.5x")])
def test_invalid_env_value_names_the_variable(clean_env: pytest.MonkeyPatch, var: str, value: str) -> None:
    clean_env.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert info.value.key == var
    assert str(info.value).startswith(f"environment: {var}: ")


# --------------------------------------------------------------------------- URL resolution


def test_logs_url_explicit_wins(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("LOCKGATE_HOME", str(tmp_path))
    clean_env.setenv("LOCKGATE_LOGS_DB_URL", "postgres://u@h:5432/logs")
    clean_env.setenv("AIRFLOW_CONN_LOCKGATE_LOGS", "postgres://other@h/other")
    # SQLAlchemy 2 only understands postgresql://
    assert resolve_logs_db_url() == "postgresql://u@h:5432/logs"


def test_logs_url_from_airflow_connection(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("LOCKGATE_HOME", str(tmp_path))
    clean_env.setenv("AIRFLOW_CONN_LOCKGATE_LOGS", "postgres://u@h:5432/lockgate")
    assert resolve_logs_db_url() == "postgresql://u@h:5432/lockgate"


def test_logs_url_from_json_airflow_connection(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("LOCKGATE_HOME", str(tmp_path))
    clean_env.setenv(
        "AIRFLOW_CONN_LOCKGATE_LOGS",
        '{"conn_type": "postgres", "host": "h", "login": "u", "schema": "lockgate", "port": 5432}',
    )
    assert resolve_logs_db_url() == "postgresql://u@h:5432/lockgate"


def test_logs_url_falls_back_to_embedded_sqlite(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    clean_env.setenv("LOCKGATE_HOME", str(home))
    assert resolve_logs_db_url() == f"sqlite:///{home / 'logs.db'}"
    assert home.is_dir()  # the embedded store has somewhere to live
    assert resolve_state_db_url() == resolve_logs_db_url()
    clean_env.setenv("LOCKGATE_STATE_DB_URL", "postgres://u@h/state")
    assert resolve_state_db_url() == "postgresql://u@h/state"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MLFLOW_TRACKING_URI": "http://m:5000"}, "http://m:5000"),
        ({"AIRFLOW_CONN_LOCKGATE_MLFLOW": "http://127.0.0.1:5005/"}, "http://127.0.0.1:5005"),
        ({"AIRFLOW_CONN_LOCKGATE_MLFLOW": "mlflow://m:5000"}, "http://m:5000"),
    ],
)
def test_mlflow_uri(clean_env: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], expected: str) -> None:
    clean_env.setenv("LOCKGATE_HOME", str(tmp_path))
    for k, v in env.items():
        clean_env.setenv(k, v)
    assert resolve_mlflow_uri() == expected


def test_mlflow_uri_falls_back_to_embedded_sqlite(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("LOCKGATE_HOME", str(tmp_path))
    assert resolve_mlflow_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_the_embedded_stores_create_a_private_home(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import stat

    from lockgate.settings import resolve_logs_db_url

    home = tmp_path / "fresh"
    clean_env.setenv("LOCKGATE_HOME", str(home))
    assert resolve_logs_db_url() == f"sqlite:///{home / 'logs.db'}"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    variables = [*ENV_VARS.values(), *DEV_ENV_VARS.values()]
    missing = [var for var in variables if f"`{var}`" not in readme]
    assert missing == [], f"environment variables the README does not document: {missing}"


def test_a_variable_is_declared_in_one_model_only() -> None:
    assert set(ENV_VARS.values()).isdisjoint(DEV_ENV_VARS.values())


# --------------------------------------------------------------------------- the dev tooling's variables


def test_dev_settings_read_the_given_environment() -> None:
    assert get_dev_settings({}) == DevSettings()
    assert get_dev_settings({"LOCKGATE_AIRFLOW_DB_URL": "", "LOCKGATE_ADMIN_PASSWORD": ""}) == DevSettings()
    dev = get_dev_settings({"LOCKGATE_AIRFLOW_DB_URL": "postgresql://a@b/c", "LOCKGATE_ADMIN_PASSWORD": "pw"})
    assert (dev.airflow_db_url, dev.admin_password) == ("postgresql://a@b/c", "pw")


def test_dev_settings_default_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_ADMIN_PASSWORD", "from-env")
    monkeypatch.delenv("LOCKGATE_AIRFLOW_DB_URL", raising=False)
    assert get_dev_settings().admin_password == "from-env"
    assert get_dev_settings().airflow_db_url is None
