"""airflow_settings.yaml (Astro CLI format): parsing, bad keys named, conversion. No Airflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.devtools.stack.settings_apply import (
    DEFAULT_SETTINGS_FILE,
    load_settings_file,
    parse_settings,
    to_load_spec,
)
from lockgate.errors import ConfigError


def _conn(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"conn_id": "c1", "conn_type": "postgres", "conn_host": "db", "conn_port": 5432}
    base.update(overrides)
    return base


def _settings(connections: list[Any] | None = None, pools: list[Any] | None = None, variables: list[Any] | None = None):
    return {"airflow": {"connections": connections or [], "pools": pools or [], "variables": variables or []}}


def test_project_file_parses_and_converts() -> None:
    spec = to_load_spec(load_settings_file(DEFAULT_SETTINGS_FILE))
    conns = {c["conn_id"]: c for c in spec["connections"]}
    logs = conns["lockgate_logs"]
    # The logs live in their own database, created by `lockgate up`.
    assert (logs["conn_type"], logs["host"], logs["port"]) == ("postgres", "127.0.0.1", 5432)
    assert logs["schema"] == "lockgate"
    assert logs["password"] is None  # "" means no password
    assert logs["extra"] is None  # {} means no extra
    assert conns["lockgate_mlflow"]["conn_type"] == "http"
    pools = {p["name"]: p for p in spec["pools"]}
    assert pools["gpu"]["slots"] == 1 and pools["lockgate_promotion"]["slots"] == 1
    assert spec["variables"] == [{"key": "lockgate_policy_path", "value": "include/lockgate.yaml"}]
    json.dumps(spec)  # the loader's input is plain JSON


def test_conversion_of_every_field() -> None:
    parsed = parse_settings(
        _settings(
            connections=[
                _conn(conn_schema="s", conn_login="u", conn_password="p", conn_extra={"sslmode": "disable"}),
                {"conn_id": "u1", "conn_uri": "postgresql://u:p@h:5433/db"},
                _conn(conn_id="c2", conn_extra='{"a": 1}', conn_port="6543"),
            ],
            pools=[{"pool_name": "gpu", "pool_slot": 2, "pool_description": ""}, {"pool_name": "any", "pool_slot": -1}],
            variables=[
                {"variable_name": "s", "variable_value": "text"},
                {"variable_name": "n", "variable_value": 3},
                {"variable_name": "d", "variable_value": {"b": 1, "a": [1, 2]}},
                {"variable_name": "b", "variable_value": True},
            ],
        )
    )
    spec = to_load_spec(parsed)
    c1, u1, c2 = spec["connections"]
    assert c1 == {
        "conn_id": "c1",
        "uri": None,
        "conn_type": "postgres",
        "host": "db",
        "schema": "s",
        "login": "u",
        "password": "p",
        "port": 5432,
        "extra": {"sslmode": "disable"},
    }
    assert u1["uri"] == "postgresql://u:p@h:5433/db" and u1["conn_type"] is None
    assert c2["extra"] == {"a": 1} and c2["port"] == 6543
    assert spec["pools"] == [
        {"name": "gpu", "slots": 2, "description": None},
        {"name": "any", "slots": -1, "description": None},
    ]
    # Airflow variables are strings; non-strings are stored as JSON.
    assert spec["variables"] == [
        {"key": "s", "value": "text"},
        {"key": "n", "value": "3"},
        {"key": "d", "value": '{"a": [1, 2], "b": 1}'},
        {"key": "b", "value": "true"},
    ]


def test_numeric_password_is_a_string() -> None:
    spec = to_load_spec(parse_settings(_settings(connections=[_conn(conn_password=1234)])))
    assert spec["connections"][0]["password"] == "1234"


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"airflow": None},
        {"airflow": {"connections": None, "pools": None, "variables": None}},
        # The Astro CLI template: entries with every field empty mean nothing.
        {
            "airflow": {
                "connections": [{"conn_id": None, "conn_type": None, "conn_host": None, "conn_extra": None}],
                "pools": [{"pool_name": None, "pool_slot": None, "pool_description": None}],
                "variables": [{"variable_name": None, "variable_value": None}],
            }
        },
    ],
)
def test_empty_files_apply_nothing(data: Any) -> None:
    assert to_load_spec(parse_settings(data)) == {"connections": [], "pools": [], "variables": []}


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        (_settings(connections=[_conn(conn_port="abc")]), "airflow.connections.0.conn_port", "valid integer"),
        (_settings(connections=[_conn(conn_port=70000)]), "airflow.connections.0.conn_port", "65535"),
        (_settings(connections=[_conn(conn_hots="x")]), "airflow.connections.0.conn_hots", "not permitted"),
        (_settings(connections=[_conn(), _conn(conn_type=None)]), "airflow.connections.1", "conn_type is required"),
        (_settings(connections=[_conn(conn_id="")]), "airflow.connections.0.conn_id", "at least 1"),
        (_settings(connections=[_conn(conn_id="a b")]), "airflow.connections.0.conn_id", "pattern"),
        (_settings(connections=[_conn(conn_extra="not json")]), "airflow.connections.0.conn_extra", "JSON object"),
        (_settings(connections=[_conn(conn_extra="[1]")]), "airflow.connections.0.conn_extra", "JSON object"),
        (
            _settings(connections=[_conn(conn_uri="postgresql://h/db")]),
            "airflow.connections.0",
            "conn_uri cannot be combined",
        ),
        (_settings(connections=[_conn(), _conn()]), "airflow.connections.1.conn_id", "duplicate 'c1'"),
        (_settings(pools=[{"pool_name": "gpu", "pool_slot": -2}]), "airflow.pools.0.pool_slot", "-1"),
        (_settings(pools=[{"pool_name": "gpu"}]), "airflow.pools.0.pool_slot", "required"),
        (_settings(pools=[{"pool_name": "gpu", "pool_slot": 1, "slots": 2}]), "airflow.pools.0.slots", "not permitted"),
        (
            _settings(pools=[{"pool_name": "gpu", "pool_slot": 1}, {"pool_name": "gpu", "pool_slot": 2}]),
            "airflow.pools.1.pool_name",
            "duplicate",
        ),
        (_settings(variables=[{"variable_name": "v"}]), "airflow.variables.0.variable_value", "required"),
        (
            _settings(variables=[{"variable_name": "v", "variable_value": v} for v in ("1", "2")]),
            "airflow.variables.1.variable_name",
            "duplicate",
        ),
        ({"airflow": {"dags": []}}, "airflow.dags", "not permitted"),
        ({"airflow": {}, "astro": {}}, "astro", "not permitted"),
        ({"airflow": {"connections": {"conn_id": "x"}}}, "airflow.connections", "valid list"),
        ([1, 2], "<root>", "mapping"),
    ],
)
def test_bad_keys_are_named(data: Any, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(data, source="settings.yaml")
    assert info.value.key == key
    assert str(info.value).startswith(f"settings.yaml: {key}: ")
    assert fragment in str(info.value)


def test_every_problem_is_listed() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(_settings(connections=[_conn(conn_port="abc")], pools=[{"pool_name": "p", "pool_slot": "x"}]))
    assert info.value.key == "airflow.connections.0.conn_port"
    assert "airflow.pools.0.pool_slot" in str(info.value)


def test_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_settings_file(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("airflow: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings_file(broken)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_settings(connections=[_conn(conn_port="abc")])))
    with pytest.raises(ConfigError) as info:
        load_settings_file(bad)
    assert str(info.value).startswith(f"{bad}: airflow.connections.0.conn_port: ")


def test_parsing_does_not_import_airflow() -> None:
    # The CLI process must never read Airflow's configuration: the loader runs in the target's env.
    code = (
        "import sys; from lockgate.devtools.stack.settings_apply import load_settings_file, to_load_spec; "
        "to_load_spec(load_settings_file()); "
        "assert not any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules), 'airflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
