"""`lockgate settings apply`: load airflow_settings.yaml (Astro CLI format) into Airflow, idempotently.

Airflow does not read this file itself (it is an Astro CLI convention). Two halves:

* pure: `parse_settings` validates the file with strict models (an unknown or bad key is a
  `ConfigError` naming it, e.g. `airflow.connections.0.conn_port`) and `to_load_spec`
  turns it into plain JSON the loader understands. No Airflow import, unit-tested.
* I/O: `apply_spec` runs `lockgate.devtools.stack.airflow_loader` in a subprocess with the target
  Airflow environment, which creates or updates each connection, pool and variable
  through Airflow's ORM and reports created / updated / unchanged.

The target is the running lockgate stack when there is one (same environment as `up`:
its metadata database and Fernet key); otherwise the caller's Airflow (`AIRFLOW_HOME` or
`AIRFLOW__DATABASE__SQL_ALCHEMY_CONN` set); otherwise the stack's own metadata database,
migrated first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lockgate.devtools.stack.env import (
    StackPaths,
    StackPorts,
    build_stack_env,
    load_or_create_secrets,
    mask_url,
    venv_bin,
)
from lockgate.devtools.stack.processes import StackError, is_alive, load_state, stack_lock, tail
from lockgate.errors import ConfigError, ServiceUnavailableError
from lockgate.settings import PROJECT_ROOT, Settings, get_settings, read_yaml_file

logger = logging.getLogger(__name__)

DEFAULT_SETTINGS_FILE = PROJECT_ROOT / "airflow_settings.yaml"
LOADER_TIMEOUT_S = 300

# --------------------------------------------------------------------------- the file


class _Entry(BaseModel):
    # Unknown keys are errors: a typo (`conn_hots`) must not silently drop a value.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class AstroConnection(_Entry):
    """One entry of `airflow.connections`: individual fields, or `conn_uri` alone."""

    conn_id: str = Field(min_length=1, max_length=250, pattern=r"^[\w#!\-.:/\\()]+$")
    conn_type: str | None = None
    conn_host: str | None = None
    conn_schema: str | None = None
    conn_login: str | None = None
    conn_password: str | None = None
    conn_port: int | None = Field(None, ge=1, le=65535)
    conn_uri: str | None = None
    conn_extra: dict[str, Any] | str | None = None

    @field_validator("conn_extra")
    @classmethod
    def _extra_is_object(cls, v: dict[str, Any] | str | None) -> dict[str, Any] | str | None:
        if isinstance(v, str) and v.strip():
            try:
                parsed = json.loads(v)
            except json.JSONDecodeError as exc:
                raise ValueError(f"a string conn_extra must be a JSON object: {exc.msg}") from None
            if not isinstance(parsed, dict):
                raise ValueError("a string conn_extra must be a JSON object")
        return v

    @model_validator(mode="after")
    def _uri_or_fields(self) -> AstroConnection:
        fields = (self.conn_type, self.conn_host, self.conn_schema, self.conn_login, self.conn_password, self.conn_port)
        if self.conn_uri:
            if any(f not in (None, "") for f in fields) or self.extra:
                raise ValueError("conn_uri cannot be combined with conn_type/conn_host/... or conn_extra")
        elif not self.conn_type:
            raise ValueError("conn_type is required (or give conn_uri)")
        return self

    @property
    def extra(self) -> dict[str, Any]:
        if isinstance(self.conn_extra, str):
            return json.loads(self.conn_extra) if self.conn_extra.strip() else {}
        return dict(self.conn_extra or {})


class AstroPool(_Entry):
    pool_name: str = Field(min_length=1, max_length=256)
    pool_slot: int = Field(ge=-1, description="-1 means unlimited, as in Airflow.")
    pool_description: str | None = None


JsonScalar = str | int | float | bool


class AstroVariable(_Entry):
    variable_name: str = Field(min_length=1, max_length=250)
    variable_value: JsonScalar | dict[str, Any] | list[Any]

    # No coercion to str here: a number, bool, list or mapping keeps its type and is
    # stored as its JSON text (3 -> "3", true -> "true", {"a": 1} -> '{"a": 1}').
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=False)

    @property
    def value(self) -> str:
        v = self.variable_value
        return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _drop_blank_entries(v: Any) -> Any:
    # The Astro CLI's template ships entries with every field empty; they mean "nothing".
    if isinstance(v, list):
        return [e for e in v if not (isinstance(e, dict) and all(x in (None, "", {}) for x in e.values()))]
    return [] if v is None else v


class AirflowSection(_Entry):
    connections: list[AstroConnection] = Field(default_factory=list)
    pools: list[AstroPool] = Field(default_factory=list)
    variables: list[AstroVariable] = Field(default_factory=list)

    @field_validator("connections", "pools", "variables", mode="before")
    @classmethod
    def _blank(cls, v: Any) -> Any:
        return _drop_blank_entries(v)


class AstroSettings(_Entry):
    airflow: AirflowSection = Field(default_factory=AirflowSection)

    @field_validator("airflow", mode="before")
    @classmethod
    def _empty_section(cls, v: Any) -> Any:
        return {} if v is None else v


def _loc(loc: Iterable[Any]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def _check_unique(items: list[Any], attr: str, section: str, source: str) -> None:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        name = getattr(item, attr)
        if name in seen:
            raise ConfigError(
                f"duplicate {name!r} (first at airflow.{section}.{seen[name]}.{attr})",
                key=f"airflow.{section}.{i}.{attr}",
                source=source,
            )
        seen[name] = i


def parse_settings(data: Any, source: str = "<airflow_settings>") -> AstroSettings:
    """Validate parsed YAML; raise `ConfigError` naming the first bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping with an `airflow` key at the top level", key="<root>", source=source)
    try:
        parsed = AstroSettings.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        # Errors raised by a model validator have the entry as their location; say which one.
        message = first["msg"].removeprefix("Value error, ")
        others = [f"{_loc(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in errors[1:]]
        if others:
            message += "; also " + "; ".join(others)
        raise ConfigError(message, key=_loc(first["loc"]), source=source) from None
    _check_unique(list(parsed.airflow.connections), "conn_id", "connections", source)
    _check_unique(list(parsed.airflow.pools), "pool_name", "pools", source)
    _check_unique(list(parsed.airflow.variables), "variable_name", "variables", source)
    return parsed


def load_settings_file(path: str | Path | None = None) -> AstroSettings:
    p = Path(path) if path else DEFAULT_SETTINGS_FILE
    return parse_settings(read_yaml_file(p, "settings file"), source=str(p))


def _blank_to_none(v: str | None) -> str | None:
    # An empty password or schema in YAML means "none", as in the Airflow UI.
    return v if v not in (None, "") else None


def to_load_spec(settings: AstroSettings) -> dict[str, list[dict[str, Any]]]:
    """The loader's input: plain JSON, one dict per connection, pool and variable."""
    connections = []
    for c in settings.airflow.connections:
        connections.append(
            {
                "conn_id": c.conn_id,
                "uri": c.conn_uri or None,
                "conn_type": c.conn_type,
                "host": _blank_to_none(c.conn_host),
                "schema": _blank_to_none(c.conn_schema),
                "login": _blank_to_none(c.conn_login),
                "password": _blank_to_none(c.conn_password),
                "port": c.conn_port,
                "extra": c.extra or None,
            }
        )
    pools = [
        {"name": p.pool_name, "slots": p.pool_slot, "description": _blank_to_none(p.pool_description)}
        for p in settings.airflow.pools
    ]
    variables = [{"key": v.variable_name, "value": v.value} for v in settings.airflow.variables]
    return {"connections": connections, "pools": pools, "variables": variables}


# --------------------------------------------------------------------------- the stack's connections

LOGS_CONN_ID = "lockgate_logs"
MLFLOW_CONN_ID = "lockgate_mlflow"


def logs_connection_from_url(url: str) -> AstroConnection | None:
    """`lockgate_logs` as fields for a PostgreSQL URL; None for any other database (SQLite)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"not a database URL: {mask_url(url)}", key="LOCKGATE_LOGS_DB_URL") from None
    if parsed.get_backend_name() != "postgresql":
        return None
    return AstroConnection(
        conn_id=LOGS_CONN_ID,
        conn_type="postgres",
        conn_host=parsed.host or "127.0.0.1",
        conn_port=parsed.port or 5432,
        conn_login=parsed.username,
        conn_password=parsed.password,
        conn_schema=parsed.database,
        conn_extra={k: v if isinstance(v, str) else ",".join(v) for k, v in parsed.query.items()},
    )


def align_stack_connections(
    parsed: AstroSettings, *, logs_db_url: str | None, mlflow_url: str
) -> tuple[AstroSettings, set[str]]:
    """The file's connections made to match the stack's environment; also the ids to remove.

    * `lockgate_mlflow` points at the stack's MLflow server (its port, `LOCKGATE_MLFLOW_PORT`).
    * `lockgate_logs`, when `LOCKGATE_LOGS_DB_URL` is set, points at that PostgreSQL database;
      for a non-PostgreSQL URL it is removed (the variable, which the tasks inherit, decides).
    """
    from urllib.parse import urlsplit

    ml = urlsplit(mlflow_url)
    connections: list[AstroConnection] = []
    removed: set[str] = set()
    for conn in parsed.airflow.connections:
        if conn.conn_id == MLFLOW_CONN_ID:
            conn = conn.model_copy(
                update={
                    "conn_uri": None,
                    "conn_type": conn.conn_type or "http",
                    "conn_host": f"{ml.scheme}://{ml.hostname}",
                    "conn_port": ml.port,
                }
            )
        elif conn.conn_id == LOGS_CONN_ID and logs_db_url:
            replacement = logs_connection_from_url(logs_db_url)
            if replacement is None:
                removed.add(LOGS_CONN_ID)
                continue
            conn = replacement
        connections.append(conn)
    section = parsed.airflow.model_copy(update={"connections": connections})
    return parsed.model_copy(update={"airflow": section}), removed


def connection_url(conn: AstroConnection) -> str:
    """A PostgreSQL connection of the file as a SQLAlchemy URL (password included)."""
    from sqlalchemy.engine import URL

    return URL.create(
        "postgresql",
        username=_blank_to_none(conn.conn_login),
        password=_blank_to_none(conn.conn_password),
        host=conn.conn_host or "127.0.0.1",
        port=conn.conn_port or 5432,
        database=_blank_to_none(conn.conn_schema),
    ).render_as_string(hide_password=False)


# --------------------------------------------------------------------------- loading


class DatabaseNotInitialisedError(ConfigError):
    """The target metadata database has no Airflow tables (never migrated)."""


@dataclass(frozen=True)
class ApplyResult:
    kind: str  # connection | pool | variable
    name: str
    action: str  # created | updated | unchanged | removed | absent


def apply_spec(
    spec: Mapping[str, Any],
    env: Mapping[str, str],
    remove_connections: Iterable[str] = (),
    db_url_for_errors: str | None = None,
) -> list[ApplyResult]:
    """Run the loader in a subprocess with `env` (the target Airflow's environment)."""
    payload = {**spec, "remove_connections": sorted(remove_connections)}
    with tempfile.TemporaryDirectory(prefix="lockgate-settings-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        out_path = Path(tmp) / "result.json"
        # The spec may hold passwords: readable by us only.
        fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "lockgate.devtools.stack.airflow_loader", str(spec_path), str(out_path)],
                env=dict(env),
                capture_output=True,
                text=True,
                timeout=LOADER_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(f"loading settings into Airflow took more than {LOADER_TIMEOUT_S} s") from None
        result = json.loads(out_path.read_text()) if out_path.exists() else None
    if result is None or proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ConfigError("loading settings into Airflow failed: " + " | ".join(last))
    if "error" in result:
        if result["error"] == "unreachable":
            raise ServiceUnavailableError("Airflow metadata database", db_url_for_errors or "?", result["message"])
        if result["error"] == "not_initialised":
            raise DatabaseNotInitialisedError(
                f"the Airflow metadata database {db_url_for_errors or ''} has no tables yet: run `lockgate up` "
                "(or `airflow db migrate`) first"
            )
        raise ConfigError(f"loading settings into Airflow failed: {result['message']}")
    return [ApplyResult(**r) for r in result["results"]]


def print_results(results: list[ApplyResult], target: str) -> None:
    print(f"settings applied to {target}:")
    for r in results:
        print(f"  {r.kind:<10} {r.name:<28} {r.action}")
    counts: dict[str, int] = {}
    for r in results:
        counts[r.action] = counts.get(r.action, 0) + 1
    print("  " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) if counts else "  (nothing to apply)")


@dataclass(frozen=True)
class Target:
    """Which Airflow a `settings apply` writes to."""

    env: dict[str, str]
    description: str
    db_url: str
    stack: bool  # the lockgate stack's own environment (take its lock)
    migrate: bool  # its database may not be migrated yet


def resolve_target(settings: Settings) -> Target:
    paths = StackPaths.from_settings(settings)
    state = load_state(paths)
    running = state is not None and any(is_alive(r) for r in state.processes)
    if running or not (os.environ.get("AIRFLOW_HOME") or os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")):
        ports = state.stack_ports() if state else StackPorts(settings.airflow_port, settings.mlflow_port)
        env = build_stack_env(settings, paths, load_or_create_secrets(paths), ports)
        db_url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        what = "the running lockgate stack" if running else "the lockgate stack (not running)"
        return Target(env, f"{what}, AIRFLOW_HOME={paths.airflow_home}", db_url, stack=True, migrate=not running)
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()
    db_url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or f"sqlite:///{airflow_home / 'airflow.db'}"
    where = os.environ.get("AIRFLOW_HOME") or db_url
    return Target(dict(os.environ), f"the Airflow of this environment ({where})", db_url, stack=False, migrate=False)


def migrate_db(env: Mapping[str, str], log_path: Path, timeout: float) -> None:
    """`airflow db migrate` (idempotent) with the stack's environment; its output goes to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            rc = subprocess.run(
                [str(venv_bin() / "airflow"), "db", "migrate"],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(timeout, 1),
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            raise StackError(f"`airflow db migrate` took more than {timeout:.0f} s (log: {log_path})") from None
    if rc != 0:
        print(tail(log_path, 30), file=sys.stderr)
        raise StackError(f"`airflow db migrate` failed with exit code {rc} (log: {log_path})")


def cmd_settings_apply(args: argparse.Namespace) -> int:
    """Load airflow_settings.yaml into Airflow (create or update; running it twice changes nothing)."""
    settings = get_settings()
    path = Path(args.file) if getattr(args, "file", None) else DEFAULT_SETTINGS_FILE
    parsed = load_settings_file(path)
    target = resolve_target(settings)
    if not target.stack:
        results = apply_spec(to_load_spec(parsed), target.env, db_url_for_errors=_masked(target.db_url))
        print_results(results, target.description)
        return 0
    # The stack's connections follow its environment, as `up` set them.
    parsed, removed = align_stack_connections(
        parsed, logs_db_url=settings.logs_db_url, mlflow_url=target.env["MLFLOW_TRACKING_URI"]
    )
    spec = to_load_spec(parsed)
    paths = StackPaths.from_settings(settings)
    with stack_lock(paths):
        _check_db(target.db_url)
        try:
            results = apply_spec(spec, target.env, remove_connections=removed, db_url_for_errors=_masked(target.db_url))
        except DatabaseNotInitialisedError:
            if not target.migrate:
                raise
            # The stack never ran here: create its metadata database, as `up` would.
            print("creating the stack's Airflow metadata database (airflow db migrate) ...", file=sys.stderr)
            migrate_db(target.env, paths.log_file("db-migrate"), LOADER_TIMEOUT_S)
            results = apply_spec(spec, target.env, remove_connections=removed, db_url_for_errors=_masked(target.db_url))
    print_results(results, target.description)
    return 0


def _masked(url: str) -> str:
    return mask_url(url)


def _check_db(url: str) -> None:
    if url.startswith(("postgres", "postgresql")):
        from lockgate.devtools.stack.postgres import check_reachable

        check_reachable(url)
