"""The local stack without starting it: connections follow the environment, stack.env is complete,
the metadata database prefers PostgreSQL, and LOCKGATE_HOME is its owner's only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from lockgate.devtools.stack import commands
from lockgate.devtools.stack.env import (
    StackPaths,
    StackPorts,
    airflow_db_name,
    airflow_db_url,
    env_file_values,
    load_or_create_secrets,
    make_private,
    private_umask,
    stack_overrides,
    write_env_file,
)
from lockgate.devtools.stack.processes import free_port
from lockgate.devtools.stack.settings_apply import (
    DEFAULT_SETTINGS_FILE,
    align_stack_connections,
    load_settings_file,
    parse_settings,
    to_load_spec,
)
from lockgate.errors import ServiceUnavailableError
from lockgate.settings import get_settings


def _connections(parsed: object) -> dict[str, dict[str, object]]:
    return {c["conn_id"]: c for c in to_load_spec(parsed)["connections"]}  # type: ignore[arg-type]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- connections


def test_connections_follow_the_logs_url_and_the_mlflow_port() -> None:
    parsed, removed = align_stack_connections(
        load_settings_file(DEFAULT_SETTINGS_FILE),
        logs_db_url="postgresql+psycopg2://reader:s3cret@db.internal:6543/prodlogs?sslmode=require",
        mlflow_url="http://127.0.0.1:5123",
    )
    conns = _connections(parsed)
    assert removed == set()
    logs = conns["lockgate_logs"]
    assert (logs["host"], logs["port"], logs["login"], logs["password"], logs["schema"]) == (
        "db.internal",
        6543,
        "reader",
        "s3cret",
        "prodlogs",
    )
    assert logs["conn_type"] == "postgres" and logs["extra"] == {"sslmode": "require"}
    assert (conns["lockgate_mlflow"]["host"], conns["lockgate_mlflow"]["port"]) == ("http://127.0.0.1", 5123)


def test_without_a_logs_url_the_file_decides_but_mlflow_still_follows_the_port() -> None:
    original = load_settings_file(DEFAULT_SETTINGS_FILE)
    parsed, removed = align_stack_connections(original, logs_db_url=None, mlflow_url="http://127.0.0.1:5999")
    assert removed == set()
    assert _connections(parsed)["lockgate_logs"] == _connections(original)["lockgate_logs"]
    assert _connections(parsed)["lockgate_mlflow"]["port"] == 5999


def test_a_sqlite_logs_url_removes_the_postgres_connection() -> None:
    parsed, removed = align_stack_connections(
        load_settings_file(DEFAULT_SETTINGS_FILE), logs_db_url="sqlite:////tmp/x.db", mlflow_url="http://127.0.0.1:5000"
    )
    assert removed == {"lockgate_logs"} and "lockgate_logs" not in _connections(parsed)


def test_an_unreachable_explicit_logs_database_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/logs"
    monkeypatch.setenv("LOCKGATE_LOGS_DB_URL", url)
    parsed, _ = align_stack_connections(
        load_settings_file(DEFAULT_SETTINGS_FILE), logs_db_url=url, mlflow_url="http://127.0.0.1:5000"
    )
    # Falling back to SQLite would report one database and write to another: refused.
    with pytest.raises(ServiceUnavailableError):
        commands.prepare_logs_database(parsed)


def test_effective_logs_url(lockgate_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKGATE_LOGS_DB_URL")
    settings = get_settings()
    parsed = load_settings_file(DEFAULT_SETTINGS_FILE)
    assert commands.effective_logs_url(parsed, set(), settings) == "postgresql://postgres@127.0.0.1:5432/lockgate"
    assert commands.effective_logs_url(parsed, {"lockgate_logs"}, settings) == settings.embedded_logs_url
    monkeypatch.setenv("LOCKGATE_LOGS_DB_URL", "postgresql://u:p@h:1/d")
    assert commands.effective_logs_url(parsed, set(), get_settings()) == "postgresql://u:p@h:1/d"


# --------------------------------------------------------------------------- stack.env


def test_stack_env_lets_the_cli_see_what_the_tasks_see(lockgate_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_STATE_DB_URL", f"sqlite:///{lockgate_env / 'state.db'}")
    settings = get_settings()
    paths = StackPaths.from_settings(settings)
    paths.ensure()
    ports = StackPorts(airflow=free_port(), mlflow=free_port())
    logs_url = "postgresql://postgres:pw@127.0.0.1:5432/userlogs"
    overrides = stack_overrides(settings, paths, load_or_create_secrets(paths), ports)
    write_env_file(paths, env_file_values(overrides, logs_url, settings))
    assert _mode(paths.env_file) == 0o600

    # A fresh shell with nothing of lockgate's in its environment, then `source stack.env`.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKGATE_", "MLFLOW_", "AIRFLOW"))}
    code = (
        "from lockgate.settings import get_settings, resolve_logs_db_url, resolve_mlflow_uri, resolve_state_db_url\n"
        "s = get_settings()\n"
        "print(resolve_logs_db_url(s)); print(resolve_state_db_url(s)); print(resolve_mlflow_uri(s))\n"
        "print(s.home); print(s.config_path); print(s.reports_dir); print(s.airflow_api_url)"
    )
    out = subprocess.run(
        ["bash", "-c", f'source "{paths.env_file}" && "{sys.executable}" -c "$0"', code],
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == [
        logs_url,
        f"sqlite:///{lockgate_env / 'state.db'}",
        ports.mlflow_url,
        str(paths.home),
        str(Path(settings.config_path).resolve()),
        str(settings.reports_dir),
        ports.airflow_url,
    ]


# --------------------------------------------------------------------------- metadata database


def test_airflow_db_url_prefers_the_explicit_one_then_the_recorded_one(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path / "home")
    paths.ensure()
    assert airflow_db_url(paths, {}) == f"sqlite:///{paths.airflow_db}"
    paths.airflow_db_url_file.write_text("postgresql://postgres@127.0.0.1:5432/lockgate_airflow_x\n")
    assert airflow_db_url(paths, {}) == "postgresql://postgres@127.0.0.1:5432/lockgate_airflow_x"
    assert airflow_db_url(paths, {"LOCKGATE_AIRFLOW_DB_URL": "postgres://a@b/c"}) == "postgresql://a@b/c"


def test_metadata_database_falls_back_to_sqlite_only_without_postgres(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCKGATE_AIRFLOW_DB_URL", raising=False)
    paths = StackPaths(tmp_path / "home")
    paths.ensure()
    port = free_port()
    parsed = parse_settings(
        {"airflow": {"connections": [{"conn_id": "lockgate_logs", "conn_type": "postgres", "conn_port": port}]}}
    )
    assert commands.choose_airflow_database(paths, parsed) == f"sqlite:///{paths.airflow_db}"
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "falls back to SQLite" in err
    assert not paths.airflow_db_url_file.exists()  # the next `up` tries PostgreSQL again


@pytest.mark.postgres
def test_metadata_database_on_the_local_postgres(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg2

    monkeypatch.delenv("LOCKGATE_AIRFLOW_DB_URL", raising=False)
    server = make_url(pg_url)
    paths = StackPaths(tmp_path / "home")
    paths.ensure()
    conn = {
        "conn_id": "lockgate_logs",
        "conn_type": "postgres",
        "conn_host": server.host,
        "conn_port": server.port or 5432,
        "conn_login": server.username,
        "conn_password": server.password or "",
        "conn_schema": server.database,
    }
    parsed = parse_settings({"airflow": {"connections": [conn]}})
    name = airflow_db_name(paths)
    try:
        url = commands.choose_airflow_database(paths, parsed)
        assert make_url(url).database == name and make_url(url).port == (server.port or 5432)
        assert "created" in capsys.readouterr().err
        # Recorded: every later command (status, settings apply, the demo) uses the same database.
        assert airflow_db_url(paths, {}) == url
        assert _mode(paths.airflow_db_url_file) == 0o600
        assert commands.choose_airflow_database(paths, parsed) == url
    finally:
        admin = psycopg2.connect(
            host=server.host,
            port=server.port or 5432,
            user=server.username,
            password=server.password,
            dbname="postgres",
        )
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def test_each_home_gets_its_own_metadata_database(tmp_path: Path) -> None:
    assert airflow_db_name(StackPaths(tmp_path / "a")) != airflow_db_name(StackPaths(tmp_path / "b"))


def test_a_home_made_again_with_new_secrets_gets_a_new_metadata_database(tmp_path: Path) -> None:
    # Its old database holds connections and Asset-watcher triggers encrypted with the lost Fernet
    # key: the triggerer exits on the first it cannot decrypt (InvalidToken), so it is not reused.
    paths = StackPaths(tmp_path / "home")
    paths.ensure()
    first = airflow_db_name(paths)
    assert airflow_db_name(paths) == first  # same secrets: same database, every command
    paths.secrets_file.unlink()
    assert airflow_db_name(paths) != first


# --------------------------------------------------------------------------- permissions


def test_home_and_everything_under_it_is_the_owners_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    (home / "reports" / "drift").mkdir(parents=True)
    for name in ("logs.db", "mlflow.db", "reports/drift/report.html"):
        (home / name).write_text("x")
        os.chmod(home / name, 0o644)
    paths = StackPaths(home)
    paths.ensure()
    make_private(home)
    assert _mode(home) == 0o700
    for d in (paths.run_dir, paths.logs_dir, paths.airflow_home, home / "reports", home / "reports" / "drift"):
        assert _mode(d) == 0o700, d
    for f in ("logs.db", "mlflow.db", "reports/drift/report.html"):
        assert _mode(home / f) == 0o600, f
    load_or_create_secrets(paths)
    assert _mode(paths.secrets_file) == 0o600


def test_files_lockgate_did_not_write_keep_their_modes(tmp_path: Path) -> None:
    home = tmp_path / "shared-folder"
    home.mkdir()
    (home / "script.sh").write_text("#!/bin/sh\n")
    os.chmod(home / "script.sh", 0o755)
    (home / "mlflow.db").write_text("x")
    os.chmod(home / "mlflow.db", 0o644)
    make_private(home)
    assert _mode(home) == 0o700  # other users cannot reach anything inside
    assert _mode(home / "script.sh") == 0o755 and _mode(home / "mlflow.db") == 0o600


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_components_create_private_files(tmp_path: Path) -> None:
    before = _current_umask()
    with private_umask():
        created = tmp_path / "by-a-component.db"
        subprocess.run([sys.executable, "-c", f"open({str(created)!r}, 'w').write('x')"], check=True)
        folder = tmp_path / "artifacts"
        subprocess.run([sys.executable, "-c", f"import os; os.mkdir({str(folder)!r})"], check=True)
    assert _mode(created) == 0o600 and _mode(folder) == 0o700
    assert _current_umask() == before  # the CLI's own umask is restored afterwards


def test_the_mlflow_webhook_encryption_key_is_kept_with_the_homes_secrets(tmp_path: Path) -> None:
    """MLflow encrypts the webhook's secret with MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY and makes one up per
    start without it: the next start of the same home could not list its webhook (HTTP 500)."""
    from cryptography.fernet import Fernet

    from lockgate.devtools.stack.env import StackPaths, load_or_create_secrets

    paths = StackPaths(home=tmp_path / "home")
    first = load_or_create_secrets(paths)
    Fernet(first.mlflow_webhook_encryption_key.encode())  # a valid key
    assert load_or_create_secrets(paths).mlflow_webhook_encryption_key == first.mlflow_webhook_encryption_key
    # a home written before the key existed gets one, once
    import json

    stored = json.loads(paths.secrets_file.read_text())
    del stored["mlflow_webhook_encryption_key"]
    paths.secrets_file.write_text(json.dumps(stored))
    added = load_or_create_secrets(paths).mlflow_webhook_encryption_key
    assert added and load_or_create_secrets(paths).mlflow_webhook_encryption_key == added
