"""Typed settings: the one place the runtime's environment variables are read.

`Settings` says where things are (databases, MLflow, reports, local state). Every field
can be overridden by an environment variable so tests and operators can point lockgate
anywhere without editing files. What lockgate decides with, the policy, has its schema
in `lockgate.policy.schema`; the dev tooling's own variables (the local stack's) are declared
in `lockgate.devtools.settings`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lockgate.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY_PATH = PROJECT_ROOT / "include" / "lockgate.yaml"


def _loc(err: Any) -> str:
    return ".".join(str(p) for p in err["loc"]) or "<root>"


def format_validation_error(exc: ValidationError) -> tuple[str, str]:
    """First bad key and a one-paragraph message listing every problem."""
    errors = exc.errors()
    first = _loc(errors[0]) if errors else "<root>"
    lines = [f"{_loc(e)}: {e['msg']}" for e in errors]
    return first, "; ".join(lines)


class Settings(BaseSettings):
    """Where things are: each environment variable of the runtime, declared once, typed and validated.

    Read by pydantic-settings when `get_settings()` builds it (never at import time: tests change the
    environment). An empty variable counts as unset; an invalid one is an error naming it.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_ignore_empty=True)

    config_path: Path = Field(DEFAULT_POLICY_PATH, validation_alias="LOCKGATE_CONFIG", description="The policy file.")
    home: Path = Field(
        PROJECT_ROOT / ".lockgate",
        validation_alias="LOCKGATE_HOME",
        description="Local state: embedded databases, the local stack, reports.",
    )
    reports_dir: Path = Field(
        PROJECT_ROOT / ".lockgate" / "reports",
        validation_alias="LOCKGATE_REPORTS_DIR",
        description="HTML reports and JSON summaries (the plugin serves them). Default: <home>/reports.",
    )
    reports_url: str | None = Field(
        None,
        validation_alias="LOCKGATE_REPORTS_URL",
        pattern=r"^[a-z][a-z0-9+.-]*://\S+$",
        description="Where the plugin reads reports from, as an fsspec URL (`s3://bucket/prefix`: `lockgate[s3]`); "
        "the jobs write into LOCKGATE_REPORTS_DIR, then upload each run there (lockgate.reports.store). "
        "None: LOCKGATE_REPORTS_DIR itself.",
    )
    logs_db_url: str | None = Field(
        None, validation_alias="LOCKGATE_LOGS_DB_URL", description="Explicit URL; None means: resolve at use."
    )
    state_db_url: str | None = Field(
        None, validation_alias="LOCKGATE_STATE_DB_URL", description="lockgate's own tables. Default: the logs database."
    )
    mlflow_tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")
    airflow_port: int = Field(8080, validation_alias="LOCKGATE_AIRFLOW_PORT", description="The local stack's.")
    mlflow_port: int = Field(5000, validation_alias="LOCKGATE_MLFLOW_PORT", description="The local stack's.")
    airflow_api_url: str = Field(
        "http://127.0.0.1:8080",
        validation_alias="LOCKGATE_AIRFLOW_URL",
        description="Airflow's API server. Default: the local stack's, on LOCKGATE_AIRFLOW_PORT.",
    )
    pushgateway_url: str | None = Field(
        None,
        validation_alias="LOCKGATE_PUSHGATEWAY_URL",
        description="Prometheus Pushgateway the jobs push their metrics to (lockgate.observability.prometheus); "
        "None: no export.",
    )
    public_url: str = Field(
        "http://127.0.0.1:8080",
        validation_alias="LOCKGATE_PUBLIC_URL",
        description="How people reach Airflow's API server (the Lockgate pages): the base of report URLs in "
        "registry tags and pages. Default: LOCKGATE_AIRFLOW_URL.",
    )
    in_airflow: bool = Field(
        False,
        validation_alias="LOCKGATE_IN_AIRFLOW",
        description="Resolve the connections lockgate_logs and lockgate_mlflow through Airflow (its secrets "
        "backends and metadata database) outside a task too; a task always does (Airflow sets "
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL there).",
    )
    mlflow_webhook_secret: str | None = Field(
        None,
        validation_alias="LOCKGATE_MLFLOW_WEBHOOK_SECRET",
        description="Shared secret of MLflow's registry webhook (lockgate.registry.webhook); None: the plugin's "
        "webhook receiver is off and new challengers are found by the triggerer's poll alone.",
    )

    embeddings_device: str = Field(
        "cpu", validation_alias="LOCKGATE_EMBEDDINGS_DEVICE", description="Where MiniLM encodes (cpu, cuda, cuda:1)."
    )
    embeddings_threads: int | None = Field(
        None,
        ge=1,
        validation_alias="LOCKGATE_EMBEDDINGS_THREADS",
        description="Torch threads while MiniLM encodes; None: the cores other processes leave free.",
    )
    embeddings_bf16: bool | None = Field(
        None,
        validation_alias="LOCKGATE_EMBEDDINGS_BF16",
        description="Encode under bfloat16 autocast (1) or not (0); None: where the device has bf16 instructions.",
    )
    embeddings_cache: str | None = Field(
        None,
        validation_alias="LOCKGATE_EMBEDDINGS_CACHE",
        description="SQLite file of MiniLM vectors of texts seen before, or `off`. "
        "Default: <home>/cache/<model>.sqlite.",
    )

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        """Defaults that follow other variables: the reports under the home, the URLs on the port."""
        if not isinstance(data, dict):
            return data
        values = {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
        values = {k: v for k, v in values.items() if v != ""}
        home = Path(values.get("LOCKGATE_HOME") or PROJECT_ROOT / ".lockgate").expanduser().resolve()
        values["LOCKGATE_HOME"] = home
        values["LOCKGATE_REPORTS_DIR"] = (
            Path(values.get("LOCKGATE_REPORTS_DIR") or home / "reports").expanduser().resolve()
        )
        if "LOCKGATE_CONFIG" in values:
            values["LOCKGATE_CONFIG"] = Path(values["LOCKGATE_CONFIG"]).expanduser()
        port = values.get("LOCKGATE_AIRFLOW_PORT") or 8080
        values.setdefault("LOCKGATE_AIRFLOW_URL", f"http://127.0.0.1:{port}")
        values.setdefault("LOCKGATE_PUBLIC_URL", values["LOCKGATE_AIRFLOW_URL"])
        return values

    @property
    def embedded_logs_url(self) -> str:
        return f"sqlite:///{self.home / 'logs.db'}"

    @property
    def embedded_mlflow_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"


# Field -> its environment variable (the one place each is named: the field's alias above).
ENV_VARS: dict[str, str] = {name: str(field.validation_alias) for name, field in Settings.model_fields.items()}


def get_settings() -> Settings:
    """Read the environment now (not at import time: tests change it)."""
    try:
        return Settings()
    except ValidationError as exc:
        key, msg = format_validation_error(exc)
        raise ConfigError(msg, key=ENV_VARS.get(key, key), source="environment") from None


def ensure_home(settings: Settings) -> Path:
    """LOCKGATE_HOME, created readable by its owner only: it holds databases, reports and secrets."""
    home = settings.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.stat().st_uid == os.getuid() and home.stat().st_mode & 0o077:
        home.chmod(0o700)
    return home


def _airflow_connection_uri(conn_id: str, settings: Settings) -> str | None:
    """URI of an Airflow connection, if Airflow can resolve it here.

    `AIRFLOW_CONN_<ID>` is read directly so the CLI and tests need no Airflow
    database; inside a task the SDK resolves secrets backends and the metadata DB.
    """
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if raw:
        if raw.lstrip().startswith("{"):
            from airflow.sdk import Connection

            return str(Connection.from_json(raw, conn_id=conn_id).get_uri())
        return raw
    if not os.environ.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL") and not settings.in_airflow:
        return None
    try:
        from airflow.sdk import BaseHook

        return str(BaseHook.get_connection(conn_id).get_uri())
    except Exception:  # noqa: BLE001 - an absent connection falls back to the embedded default
        return None


def _sqlalchemy_url(uri: str) -> str:
    # Airflow writes postgres connections as postgres://; SQLAlchemy 2 wants postgresql://
    if uri.startswith("postgres://"):
        return "postgresql://" + uri[len("postgres://") :]
    return uri


def resolve_logs_db_url(settings: Settings | None = None) -> str:
    """`LOCKGATE_LOGS_DB_URL`, else the Airflow connection `lockgate_logs`, else embedded SQLite."""
    s = settings or get_settings()
    if s.logs_db_url:
        return _sqlalchemy_url(s.logs_db_url)
    uri = _airflow_connection_uri("lockgate_logs", s)
    if uri:
        return _sqlalchemy_url(uri)
    ensure_home(s)
    return s.embedded_logs_url


def resolve_state_db_url(settings: Settings | None = None) -> str:
    """Lockgate's own tables (audit trail, reports index) live beside the logs by default."""
    s = settings or get_settings()
    return _sqlalchemy_url(s.state_db_url) if s.state_db_url else resolve_logs_db_url(s)


def resolve_mlflow_uri(settings: Settings | None = None) -> str:
    """`MLFLOW_TRACKING_URI`, else the Airflow connection `lockgate_mlflow`, else embedded SQLite."""
    s = settings or get_settings()
    if s.mlflow_tracking_uri:
        return s.mlflow_tracking_uri
    uri = _airflow_connection_uri("lockgate_mlflow", s)
    if uri:
        # An http connection stored as "http://host:port" is used as is; Airflow's
        # generic form "mlflow://host:port" maps to http.
        if uri.startswith("mlflow://"):
            uri = "http://" + uri[len("mlflow://") :]
        return uri.rstrip("/")
    ensure_home(s)
    return s.embedded_mlflow_uri


def read_yaml_file(path: Path, what: str) -> object:
    """A YAML file's data; an unreadable file or invalid YAML is one `ConfigError` naming the file
    (`what`: "policy file", "settings file", ...)."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", source=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=str(path)) from None
