"""lockgate.settings: environment overrides, URL resolution, policy validation and its hash."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.errors import ConfigError
from lockgate.settings import (
    DEFAULT_POLICY_PATH,
    ENV_VARS,
    PROJECT_ROOT,
    get_settings,
    load_policy,
    parse_policy,
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
        "LOCKGATE_IN_AIRFLOW",
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


# --------------------------------------------------------------------------- policy


def _policy() -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    assert isinstance(data, dict)
    return data


def _gate(**overrides: Any) -> dict[str, Any]:
    gate: dict[str, Any] = {
        "name": "g",
        "metric": "benchmark.ttft_ms_p50",
        "comparison": "ratio",
        "threshold": 0.1,
    }
    gate.update(overrides)
    return gate


def _with_gates(*gates: dict[str, Any]) -> dict[str, Any]:
    data = _policy()
    data["models"][0]["gates"] = list(gates)
    return data


def test_default_policy_is_valid() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert [m.name for m in policy.models] == ["lockgate-demo"]
    assert policy.model("lockgate-demo").gates


def test_policy_path_from_env(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(_policy()))
    clean_env.setenv("LOCKGATE_CONFIG", str(path))
    assert load_policy().policy_hash == load_policy(DEFAULT_POLICY_PATH).policy_hash


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        (_with_gates(_gate(treshold=0.2)), "models.0.gates.0.treshold", "Extra inputs are not permitted"),
        (_with_gates(_gate(threshold=-0.1)), "models.0.gates.0.threshold", "must be >= 0"),
        (_with_gates(_gate(comparison="difference", threshold=-1)), "models.0.gates.0.threshold", "must be >= 0"),
        (_with_gates(_gate(metric="ttft")), "models.0.gates.0.metric", "<benchmark|drift|quality|live>"),
        (_with_gates(_gate(action="explode")), "models.0.gates.0.action", "block_promotion"),
        (_with_gates(_gate(confidence=0.4)), "models.0.gates.0.confidence", "greater than 0.5"),
        (_with_gates(_gate(comparison="ratio", subject="model")), "models.0.gates.0", "subject must be 'challenger'"),
        (
            _with_gates(_gate(comparison="absolute", action="rollback")),
            "models.0.gates.0",
            "rollback gate must check the champion",
        ),
        (_with_gates(_gate(), _gate()), "models.0", "gate names must be unique"),
        (_with_gates(_gate(threshold="high")), "models.0.gates.0.threshold", "valid number"),
    ],
)
def test_invalid_gate_names_the_key(data: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(data, source="p.yaml")
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"p.yaml: {key}: ")


def _absolute(metric: str, threshold: Any, **kw: Any) -> dict[str, Any]:
    return _gate(metric=metric, comparison="absolute", threshold=threshold, **kw)


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        # Not a finite number, wherever a float is read.
        (_with_gates(_gate(threshold=float("nan"))), "models.0.gates.0.threshold", "finite number"),
        (_with_gates(_gate(threshold=float("inf"))), "models.0.gates.0.threshold", "finite number"),
        (_with_gates(_gate(threshold="nan")), "models.0.gates.0.threshold", "finite number"),
        (
            _with_gates(_absolute("quality.error_rate", float("nan"), subject="champion", action="rollback")),
            "models.0.gates.0.threshold",
            "finite number",
        ),
        (_with_gates(_gate(confidence=float("nan"))), "models.0.gates.0.confidence", "finite number"),
        (
            {**_policy(), "statistics": {"confidence": float("nan")}},
            "statistics.confidence",
            "finite number",
        ),
        (
            {**_policy(), "evidence": {"max_age_hours": float("inf")}},
            "evidence.max_age_hours",
            "finite number",
        ),
        # Bounds that fit the metric.
        (_with_gates(_absolute("benchmark.ttft_ms_p50", -5.0)), "models.0.gates.0.threshold", "must be >= 0"),
        (
            _with_gates(_absolute("drift.drift_share", 5.0, subject="model")),
            "models.0.gates.0.threshold",
            "must be <= 1",
        ),
        (
            _with_gates(_absolute("quality.error_rate", -0.1, subject="champion", action="rollback")),
            "models.0.gates.0.threshold",
            "must be >= 0",
        ),
        (
            _with_gates(_gate(metric="quality.refusal_rate", comparison="difference", threshold=1.5)),
            "models.0.gates.0.threshold",
            "must be <= 1",
        ),
        (
            _with_gates(_absolute("quality.judge_relevance", 7, direction="higher_is_better")),
            "models.0.gates.0.threshold",
            "must be <= 5",
        ),
        (
            _with_gates(_gate(metric="benchmark.decode_tokens_per_s", direction="higher_is_better", threshold=1.0)),
            "models.0.gates.0.threshold",
            "must be < 1",
        ),
        # A metric no job publishes: the gate would never fire.
        (_with_gates(_gate(metric="benchmark.ttft_p50")), "models.0.gates.0.metric", "no benchmark job publishes"),
        (_with_gates(_gate(metric="drift.column.nonexistent")), "models.0.gates.0.metric", "no drift job publishes"),
        (_with_gates(_gate(metric="quality.relevance")), "models.0.gates.0.metric", "known: ["),
        (_with_gates(_gate(metric="live.ttft_ms_p95")), "models.0.gates.0.metric", "no live job publishes"),
        (
            _with_gates(
                _gate(
                    metric="live.error_rate",
                    comparison="difference",
                    subject="champion",
                    threshold=1.5,
                    action="rollback",
                )
            ),
            "models.0.gates.0.threshold",
            "must be <= 1",
        ),
    ],
)
def test_values_that_break_decisions_are_refused_naming_the_key(data: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(data, source="p.yaml")
    assert info.value.key == key
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", ["", "   ", "\t", " alice"])
def test_empty_or_padded_approver_names_are_refused(name: str) -> None:
    data = _policy()
    data["models"][0]["approvers"] = ["alice", name]
    with pytest.raises(ConfigError) as info:
        parse_policy(data)
    assert info.value.key == "models.0.approvers.1"
    assert "approver name" in str(info.value)


@pytest.mark.parametrize(
    "metric",
    [
        "benchmark.ttft_ms_p90",
        "benchmark.tpot_ms_p50.bs4",
        "benchmark.e2e_ms_p99.static_compile.bs1",
        "benchmark.decode_tokens_per_s",
        "drift.column.prompt_length",
        "drift.timeout_rate",
        "quality.win_rate",
        "live.ttft_ms_p90",
        "live.output_tokens_per_s_p50",
    ],
)
def test_published_metric_variants_are_accepted(metric: str) -> None:
    data = _with_gates(_gate(metric=metric, comparison="ratio", threshold=0.2))
    assert parse_policy(data).models[0].gates[0].metric == metric


def test_duplicated_model_is_rejected() -> None:
    data = _policy()
    data["models"].append(copy.deepcopy(data["models"][0]))
    with pytest.raises(ConfigError, match=r"model names must be unique, repeated: \['lockgate-demo'\]"):
        parse_policy(data)


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d.update(modles=[]), "modles"),
        (lambda d: d.update(models=[]), "models"),
        (lambda d: d["models"][0].update(approvers=[]), "models.0"),
        (lambda d: d["statistics"].update(confidence=1.5), "statistics.confidence"),
        (lambda d: d["redaction"]["patterns"].update(bad="(unclosed"), "redaction.patterns"),
        (lambda d: d["logs"].update(table="x; drop table y"), "logs.table"),
        (lambda d: d["models"][0]["windows"].update(reference={"mode": "weekly"}), "models.0.windows.reference"),
        (lambda d: d["quality"]["judge"].update(backend="openai"), "quality.judge"),
        (lambda d: d["quality"]["judge"].update(dtype="float16"), "quality.judge.dtype"),
        (lambda d: d["quality"]["judge"].update(backend="placeholder", model_path="/m"), "quality.judge"),
    ],
)
def test_invalid_policy_sections_name_the_key(mutate: Any, key: str) -> None:
    data = _policy()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_policy(data)
    assert info.value.key == key


def test_policy_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy([1, 2])
    assert info.value.key == "<root>"
    path = tmp_path / "bad.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_policy(path)
    with pytest.raises(ConfigError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.yaml")


def test_unknown_model_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(DEFAULT_POLICY_PATH).model("nope")
    assert info.value.key == "models"


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def test_policy_hash_is_stable_across_key_order_and_comments(tmp_path: Path) -> None:
    data = _policy()
    reordered = _reversed_keys(data)
    assert list(reordered) != list(data)
    assert parse_policy(data).policy_hash == parse_policy(reordered).policy_hash
    # Comments and formatting are not content.
    path = tmp_path / "p.yaml"
    path.write_text("# a comment\n" + yaml.safe_dump(reordered, default_flow_style=True))
    assert load_policy(path).policy_hash == load_policy(DEFAULT_POLICY_PATH).policy_hash
    # Spelling out a default is the same policy.
    explicit = copy.deepcopy(data)
    explicit["models"][0]["gates"][0]["action"] = "block_promotion"
    assert parse_policy(explicit).policy_hash == parse_policy(data).policy_hash


def test_policy_hash_changes_with_content() -> None:
    data = _policy()
    changed = copy.deepcopy(data)
    changed["models"][0]["gates"][0]["threshold"] = 0.2
    assert parse_policy(changed).policy_hash != parse_policy(data).policy_hash


def test_the_embedded_stores_create_a_private_home(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import stat

    from lockgate.settings import resolve_logs_db_url

    home = tmp_path / "fresh"
    clean_env.setenv("LOCKGATE_HOME", str(home))
    assert resolve_logs_db_url() == f"sqlite:///{home / 'logs.db'}"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [var for var in ENV_VARS.values() if f"`{var}`" not in readme]
    assert missing == [], f"environment variables the README does not document: {missing}"
