"""`lockgate up`, `lockgate down`, `lockgate status`: the local stack.

`up` starts, each in its own session and recorded with its start time in
`<LOCKGATE_HOME>/run/stack.json`: an MLflow server, then (after `airflow db migrate`) the
Airflow API server (with UI), scheduler, DAG processor and triggerer. It waits for their
health checks with a deadline, loads airflow_settings.yaml, and prints the URLs and the
login. Logs go to `<LOCKGATE_HOME>/run/logs/<component>.log`.

The Airflow metadata database is `LOCKGATE_AIRFLOW_DB_URL`, else a database of its own on
the local PostgreSQL (the server of the logs database) when one answers, else SQLite
under LOCKGATE_HOME. The connections `up` creates follow its environment
(`LOCKGATE_LOGS_DB_URL`, `LOCKGATE_MLFLOW_PORT`), and `<LOCKGATE_HOME>/run/stack.env`
exports what the `airflow` and `lockgate` CLIs need to see what the tasks see.

`down` stops exactly those sessions (children included) and verifies none is left.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from lockgate.devtools.bytecode import seed_bytecode
from lockgate.devtools.settings import get_dev_settings
from lockgate.devtools.stack.env import (
    ADMIN_USER,
    DEFAULT_TRIGGER_LOG_PORT,
    DEFAULT_WORKER_LOG_PORT,
    StackPaths,
    StackPorts,
    StackSecrets,
    airflow_db_name,
    build_stack_env,
    effective_admin_password,
    env_file_values,
    load_or_create_secrets,
    make_private,
    mask_url,
    private_dir,
    private_umask,
    read_admin_password,
    record_airflow_db_url,
    recorded_airflow_db_url,
    stack_overrides,
    venv_bin,
    write_env_file,
    write_password_file,
)
from lockgate.devtools.stack.health import airflow_health, airflow_healthy, component_status, mlflow_healthy
from lockgate.devtools.stack.processes import (
    ProcessRecord,
    StackError,
    StackState,
    free_port,
    is_alive,
    load_state,
    port_in_use,
    port_owner,
    remove_state,
    save_state,
    spawn,
    stack_lock,
    stop,
    tail,
)
from lockgate.devtools.stack.settings_apply import (
    DEFAULT_SETTINGS_FILE,
    LOGS_CONN_ID,
    AstroConnection,
    AstroSettings,
    align_stack_connections,
    apply_spec,
    connection_url,
    load_settings_file,
    migrate_db,
    print_results,
    to_load_spec,
)
from lockgate.errors import LockgateError
from lockgate.settings import PROJECT_ROOT, Settings, get_settings

if TYPE_CHECKING:
    from lockgate.devtools.stack.postgres import PgTarget

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
COMPONENTS = ("mlflow", *AIRFLOW_COMPONENTS)
# Health-document keys -> the component whose log explains a failure.
_HEALTH_TO_COMPONENT = {
    "metadatabase": "api-server",
    "scheduler": "scheduler",
    "dag_processor": "dag-processor",
    "triggerer": "triggerer",
}
DOWN_TIMEOUT_S = 30.0
_POLL_S = 2.0
_PROGRESS_EVERY_S = 10.0


def _quiet_http_logs() -> None:
    # httpx logs every health poll at INFO; keep them for -v (DEBUG) only.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _progress(message: str) -> None:
    # Progress goes to stderr; stdout carries the result (URLs, login) for scripts.
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- argv


def component_argv(name: str, paths: StackPaths, ports: StackPorts) -> list[str]:
    """The command line of one component (the environment carries the rest of its config)."""
    airflow = str(venv_bin() / "airflow")
    if name == "mlflow":
        return [
            str(venv_bin() / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports.mlflow),
            "--backend-store-uri",
            f"sqlite:///{paths.mlflow_db}",
            # Artifacts are proxied by the server: clients (tasks, the CLI) need no access to this folder.
            "--serve-artifacts",
            "--artifacts-destination",
            str(paths.mlflow_artifacts),
            # One worker: the local stack's only clients are its own tasks and the CLI.
            "--workers",
            "1",
        ]
    if name == "api-server":
        return [airflow, "api-server", "--host", "127.0.0.1", "--port", str(ports.airflow)]
    if name in ("scheduler", "dag-processor", "triggerer"):
        return [airflow, name]
    raise ValueError(f"unknown component {name!r}")


# --------------------------------------------------------------------------- ports


def _check_port(port: int, env_var: str) -> None:
    if port_in_use(port):
        owner = port_owner(port)
        raise StackError(
            f"port {port} ({env_var}) is already in use" + (f" by {owner}" if owner else "") + f"; stop that process "
            f"or choose another port, e.g. {env_var}={free_port()} lockgate up"
        )


def _pick_port(preferred: int, taken: set[int]) -> int:
    """The preferred port when free, else any free one (log-server ports need not be fixed)."""
    if preferred not in taken and not port_in_use(preferred):
        return preferred
    while True:
        port = free_port()
        if port not in taken:
            return port


def choose_ports(settings: Settings) -> StackPorts:
    if settings.airflow_port == settings.mlflow_port:
        raise StackError(
            f"LOCKGATE_AIRFLOW_PORT and LOCKGATE_MLFLOW_PORT are both {settings.airflow_port}; they must differ"
        )
    _check_port(settings.airflow_port, "LOCKGATE_AIRFLOW_PORT")
    _check_port(settings.mlflow_port, "LOCKGATE_MLFLOW_PORT")
    taken = {settings.airflow_port, settings.mlflow_port}
    worker_log = _pick_port(DEFAULT_WORKER_LOG_PORT, taken)
    trigger_log = _pick_port(DEFAULT_TRIGGER_LOG_PORT, taken | {worker_log})
    return StackPorts(settings.airflow_port, settings.mlflow_port, worker_log, trigger_log)


# --------------------------------------------------------------------------- logs database


def _postgres_logs_connection(parsed: AstroSettings) -> AstroConnection | None:
    conn = next((c for c in parsed.airflow.connections if c.conn_id == LOGS_CONN_ID), None)
    if conn is None or conn.conn_uri or (conn.conn_type or "") not in ("postgres", "postgresql"):
        return None
    return conn


def _pg_target(conn: AstroConnection, dbname: str | None = None) -> PgTarget:
    from lockgate.devtools.stack.postgres import PgTarget

    return PgTarget(
        host=conn.conn_host or "127.0.0.1",
        port=conn.conn_port or 5432,
        user=conn.conn_login or "postgres",
        password=conn.conn_password or None,
        dbname=dbname or conn.conn_schema or "lockgate",
    )


def prepare_logs_database(parsed: AstroSettings) -> set[str]:
    """Create the logs database named by the `lockgate_logs` connection; the ids to leave unset.

    `parsed` has gone through `align_stack_connections`, so with `LOCKGATE_LOGS_DB_URL` set the
    connection names that database. When the file's own PostgreSQL is unreachable the
    connection is left out (and removed if an earlier `up` set it), so `resolve_logs_db_url`
    falls back to the embedded SQLite store; an unreachable `LOCKGATE_LOGS_DB_URL` is an error.
    """
    from lockgate.devtools.stack.postgres import ensure_database

    explicit = get_settings().logs_db_url
    conn = _postgres_logs_connection(parsed)
    if conn is None:
        if explicit:
            _progress(f"logs database {mask_url(explicit)} (LOCKGATE_LOGS_DB_URL; connection {LOGS_CONN_ID} not set)")
            return {LOGS_CONN_ID}
        return set()
    target = _pg_target(conn)
    try:
        outcome = ensure_database(target)
    except LockgateError as exc:
        if explicit:
            raise
        _progress(f"{exc}: inference logs fall back to the embedded SQLite store (connection {LOGS_CONN_ID} not set)")
        return {LOGS_CONN_ID}
    origin = " (LOCKGATE_LOGS_DB_URL)" if explicit else ""
    _progress(f"logs database {target.url}: {outcome}{origin}")
    return set()


def effective_logs_url(parsed: AstroSettings, skip: set[str], settings: Settings) -> str:
    """Where the stack's tasks find the inference logs: what `resolve_logs_db_url` will answer there."""
    if settings.logs_db_url:
        return settings.logs_db_url
    conn = _postgres_logs_connection(parsed)
    if conn is not None and LOGS_CONN_ID not in skip:
        return connection_url(conn)
    return settings.embedded_logs_url


def choose_airflow_database(paths: StackPaths, parsed: AstroSettings) -> str:
    """The metadata database: `LOCKGATE_AIRFLOW_DB_URL`, the one chosen before, else PostgreSQL, else SQLite.

    SQLite serialises every write: two triggers at the same moment get "database is locked"
    (HTTP 500). So when the logs' PostgreSQL server answers, the metadata gets a database of
    its own there (one per LOCKGATE_HOME), recorded so every later command uses it.
    """
    from lockgate.devtools.stack.postgres import ensure_database

    chosen = get_dev_settings().airflow_db_url or recorded_airflow_db_url(paths)
    if chosen:
        return chosen
    sqlite = f"sqlite:///{paths.airflow_db}"
    conn = _postgres_logs_connection(parsed)
    if conn is None:
        _progress("Airflow metadata database: SQLite (no PostgreSQL server configured)")
        return sqlite
    target = _pg_target(conn, airflow_db_name(paths))
    try:
        outcome = ensure_database(target)
    except LockgateError as exc:
        _progress(f"{exc}: the Airflow metadata database falls back to SQLite ({paths.airflow_db})")
        return sqlite
    url = connection_url(conn.model_copy(update={"conn_schema": target.dbname}))
    record_airflow_db_url(paths, url)
    _progress(f"Airflow metadata database {target.url}: {outcome}")
    return url


def apply_stack_settings(
    parsed: AstroSettings, source: str, env: Mapping[str, str], db_url: str, skip_connections: set[str]
) -> None:
    spec = to_load_spec(parsed)
    spec["connections"] = [c for c in spec["connections"] if c["conn_id"] not in skip_connections]
    results = apply_spec(spec, env, remove_connections=skip_connections, db_url_for_errors=mask_url(db_url))
    print_results(results, f"the lockgate stack ({source})")


# --------------------------------------------------------------------------- waiting


class _Unhealthy(StackError):
    def __init__(self, component: str, message: str) -> None:
        super().__init__(message)
        self.component = component


def _health_line(ml_ok: bool, comps: Mapping[str, str], api_up: bool) -> str:
    parts = [f"mlflow {'healthy' if ml_ok else 'starting'}", f"api-server {'up' if api_up else 'starting'}"]
    if api_up:
        parts += [f"{k} {v}" for k, v in comps.items() if k != "metadatabase"]
    return ", ".join(parts)


def wait_healthy(state: StackState, ports: StackPorts, since: float, deadline: float) -> None:
    """Poll both health endpoints until everything is healthy, a component dies, or the deadline."""
    started = time.monotonic()
    last_line, last_print = "", 0.0
    while True:
        for record in state.processes:
            if not is_alive(record):
                raise _Unhealthy(record.name, f"{record.name} exited during start-up (log: {record.log})")
        ml_ok = mlflow_healthy(ports.mlflow_url, timeout=2)
        health = airflow_health(ports.airflow_url, timeout=2)
        comps = component_status(health, since)
        if ml_ok and airflow_healthy(health, since):
            _progress(f"  [{time.monotonic() - started:4.0f} s] all healthy")
            return
        line = _health_line(ml_ok, comps, health is not None)
        now = time.monotonic()
        if line != last_line or now - last_print >= _PROGRESS_EVERY_S:
            _progress(f"  [{now - started:4.0f} s] {line}")
            last_line, last_print = line, now
        if now >= deadline:
            if not ml_ok:
                failing = "mlflow"
            elif health is None:
                failing = "api-server"
            else:
                failing = next(_HEALTH_TO_COMPONENT[k] for k, v in comps.items() if v != "healthy")
            raise _Unhealthy(failing, f"{failing} not healthy before the deadline ({line})")
        time.sleep(min(_POLL_S, max(0.0, deadline - now)))


# --------------------------------------------------------------------------- up


def _print_summary(
    paths: StackPaths, ports: StackPorts, password: str | None, header: str, logs_db_url: str | None = None
) -> None:
    shown = password or f"(see {paths.password_file})"
    print(header)
    print(f"  Airflow UI   {ports.airflow_url}   login: {ADMIN_USER} / {shown}")
    print(f"  MLflow       {ports.mlflow_url}")
    if logs_db_url:
        print(f"  logs DB      {mask_url(logs_db_url)}")
    print(f"  logs         {paths.logs_dir}")
    print(f"  airflow CLI  source {paths.env_file}")
    print("  stop with    lockgate down")


def _running_state(paths: StackPaths) -> tuple[StackState | None, list[ProcessRecord]]:
    state = load_state(paths)
    if state is None:
        return None, []
    return state, [r for r in state.processes if is_alive(r)]


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while starting, so the clean-up below still runs.

    Python's default SIGTERM action ends the process at once, which would leave the
    components started so far running with nobody to stop them but `down`.
    """

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signal handling alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_up(args: argparse.Namespace) -> int:
    """Start the stack (or say it is already up) and wait until it is healthy."""
    with private_umask():
        return _up(args)


def _up(args: argparse.Namespace) -> int:
    _quiet_http_logs()
    settings = get_settings()
    paths = StackPaths.from_settings(settings)
    paths.ensure()
    make_private(paths.home)
    # The stack's processes keep bytecode under the home (PYTHONPYCACHEPREFIX): a new home starts
    # from the install's compiled files instead of compiling Airflow, MLflow and torch in each one.
    seed_bytecode(paths.pycache_dir, copy=False)
    timeout = float(getattr(args, "timeout", None) or 300)
    settings_file = Path(getattr(args, "file", None) or DEFAULT_SETTINGS_FILE)
    begin = time.monotonic()
    deadline = begin + timeout
    with stack_lock(paths):
        state, alive = _running_state(paths)
        if state is not None:
            names = {r.name for r in alive}
            if len(alive) == len(state.processes) and names == set(COMPONENTS):
                return _already_up(paths, state, deadline)
            _progress(
                f"a previous stack is partly running ({len(alive)} of {len(state.processes)} processes alive); "
                "stopping what is left of it first"
            )
            report = stop(state.processes, timeout=DOWN_TIMEOUT_S)
            if report.left:
                raise StackError(f"could not stop the previous stack: {', '.join(report.left)}")
            remove_state(paths)

        # Everything that can fail without side effects comes first.
        ports = choose_ports(settings)
        parsed, removed = align_stack_connections(
            load_settings_file(settings_file),
            logs_db_url=settings.logs_db_url,
            mlflow_url=ports.mlflow_url,
        )
        stack_secrets = load_or_create_secrets(paths)
        password = effective_admin_password(stack_secrets)
        write_password_file(paths, password)
        skip = prepare_logs_database(parsed) | removed
        choose_airflow_database(paths, parsed)
        env = build_stack_env(settings, paths, stack_secrets, ports)
        db_url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        if not db_url.startswith("sqlite"):
            from lockgate.devtools.stack.postgres import check_reachable

            check_reachable(db_url)
        logs_url = effective_logs_url(parsed, skip, settings)
        reports_outside = not settings.reports_dir.is_relative_to(paths.home)
        if reports_outside:
            private_dir(settings.reports_dir)

        state = StackState(
            started_at=time.time(),
            ports={
                "airflow": ports.airflow,
                "mlflow": ports.mlflow,
                "worker_log": ports.worker_log,
                "trigger_log": ports.trigger_log,
            },
        )
        with _sigterm_unwinds():
            try:
                _start_and_wait(state, paths, ports, env, deadline)
                apply_stack_settings(parsed, settings_file.name, env, db_url, skip)
                _register_mlflow_webhook(ports, stack_secrets)
            except BaseException:
                # Whatever went wrong (Ctrl-C and SIGTERM included), leave nothing behind.
                _progress("stopping what this `up` started ...")
                report = stop(state.processes, timeout=DOWN_TIMEOUT_S)
                if report.left:
                    _progress(f"still running (state kept in {paths.state_file}): {', '.join(report.left)}")
                else:
                    remove_state(paths)
                raise
        write_env_file(
            paths, env_file_values(stack_overrides(settings, paths, stack_secrets, ports), logs_url, settings)
        )
        make_private(paths.home)
        if reports_outside:
            make_private(settings.reports_dir, entries=tuple(p.name for p in settings.reports_dir.iterdir()))
    header = f"lockgate stack is up (ready in {time.monotonic() - begin:.0f} s)"
    _print_summary(paths, ports, password, header, logs_url)
    return 0


def _register_mlflow_webhook(ports: StackPorts, stack_secrets: StackSecrets) -> None:
    """MLflow tells the plugin at once when a `challenger` alias is set (the triggerer's poll stays the net)."""
    from lockgate.registry.webhook import ensure_mlflow_webhook

    url = f"{ports.airflow_url}/lockgate-hooks/mlflow"
    # The server is up: an error is an answer, not an outage, and retrying it only delays the stack
    # (a home made before the webhook key was kept answers 500 to every listing).
    saved = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        ensure_mlflow_webhook(ports.mlflow_url, url, stack_secrets.mlflow_webhook_secret)
    except Exception as exc:  # noqa: BLE001 - without it, new challengers are found by the poll alone
        _progress(f"MLflow webhook not registered ({exc}); new challengers are found by the triggerer's poll")
        return
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = saved
    _progress(f"MLflow webhook: model_version_alias.created -> {url}")


def _start_and_wait(
    state: StackState, paths: StackPaths, ports: StackPorts, env: Mapping[str, str], deadline: float
) -> None:
    _start(state, "mlflow", paths, ports, env)
    # MLflow starts while the metadata database migrates: the two are independent.
    _progress(f"airflow db migrate ({mask_url(env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'])}) ...")
    migrate_db(env, paths.log_file("db-migrate"), deadline - time.monotonic())
    since = time.time()
    for name in AIRFLOW_COMPONENTS:
        _start(state, name, paths, ports, env)
    _progress(f"waiting for health checks ({max(0.0, deadline - time.monotonic()):.0f} s left) ...")
    try:
        wait_healthy(state, ports, since, deadline)
    except _Unhealthy as exc:
        log = paths.log_file(exc.component)
        _progress(f"--- last lines of {log} ---\n{tail(log)}\n--- end of {log.name} ---")
        raise


def _start(state: StackState, name: str, paths: StackPaths, ports: StackPorts, env: Mapping[str, str]) -> None:
    record, _ = spawn(name, component_argv(name, paths, ports), env, paths.log_file(name), cwd=PROJECT_ROOT)
    state.processes.append(record)
    # Recorded at once: if `up` dies now, `down` still finds what it started.
    save_state(paths, state)
    _progress(f"started {name} (pid {record.pid})")


def _already_up(paths: StackPaths, state: StackState, deadline: float) -> int:
    ports = state.stack_ports()
    if not (mlflow_healthy(ports.mlflow_url) and airflow_healthy(airflow_health(ports.airflow_url))):
        _progress("the stack is running but not healthy yet; waiting ...")
        try:
            wait_healthy(state, ports, since=0.0, deadline=deadline)
        except _Unhealthy as exc:
            raise StackError(
                f"the stack is running but {exc}; see {paths.log_file(exc.component)}, "
                "or restart it with `lockgate down && lockgate up`"
            ) from None
    _print_summary(paths, ports, read_admin_password(paths), "lockgate stack is already up (nothing to do)")
    return 0


@dataclass(frozen=True)
class RunningStack:
    """What a program (the demo, a test) needs to drive a running stack."""

    airflow_url: str
    mlflow_url: str
    username: str
    password: str | None
    env: dict[str, str]  # the components' environment, for `airflow` subprocesses


def running_stack(settings: Settings | None = None) -> RunningStack | None:
    """The stack of this LOCKGATE_HOME when all its components run, else None."""
    s = settings or get_settings()
    paths = StackPaths.from_settings(s)
    state, alive = _running_state(paths)
    if state is None or len(alive) != len(state.processes):
        return None
    ports = state.stack_ports()
    env = build_stack_env(s, paths, load_or_create_secrets(paths), ports)
    return RunningStack(ports.airflow_url, ports.mlflow_url, ADMIN_USER, read_admin_password(paths), env)


# --------------------------------------------------------------------------- down


def cmd_down(args: argparse.Namespace) -> int:
    """Stop exactly the processes `up` started, children included, and verify none is left."""
    settings = get_settings()
    paths = StackPaths.from_settings(settings)
    with stack_lock(paths):
        state = load_state(paths)
        if state is None:
            print(f"lockgate stack is not running (no {paths.state_file})")
            return 0
        alive = [r for r in state.processes if is_alive(r)]
        report = stop(state.processes, timeout=DOWN_TIMEOUT_S)
        if report.left:
            raise StackError(
                f"{len(report.left)} process(es) of the stack survived SIGKILL: {', '.join(report.left)}; "
                f"state kept in {paths.state_file}"
            )
        remove_state(paths)
    if not alive and not report.terminated:
        print("lockgate stack was not running (its processes had already exited); removed its stale state")
        return 0
    killed = f", {len(report.killed)} needed SIGKILL" if report.killed else ""
    print(f"lockgate stack stopped: {report.terminated} process(es) in {report.seconds:.1f} s{killed}")
    return 0


# --------------------------------------------------------------------------- status


def cmd_status(args: argparse.Namespace) -> int:
    """Without a model: the stack's processes, URLs and health. With one: the model's state."""
    if getattr(args, "model", None):
        from lockgate.registry.commands import cmd_model_status

        return int(cmd_model_status(args) or 0)
    _quiet_http_logs()
    settings = get_settings()
    paths = StackPaths.from_settings(settings)
    state, alive = _running_state(paths)
    if state is None:
        print(f"lockgate stack: not running (LOCKGATE_HOME={paths.home})")
        return 1
    ports = state.stack_ports()
    alive_pids = {r.pid for r in alive}
    print(f"lockgate stack (LOCKGATE_HOME={paths.home}):")
    for r in state.processes:
        print(f"  {r.name:<14} pid {r.pid:<8} {'running' if r.pid in alive_pids else 'NOT RUNNING'}")
    ml_ok = mlflow_healthy(ports.mlflow_url)
    health = airflow_health(ports.airflow_url)
    comps = component_status(health)
    print(f"  MLflow       {ports.mlflow_url}   {'healthy' if ml_ok else 'not answering'}")
    print(f"  Airflow UI   {ports.airflow_url}   {'answering' if health else 'not answering'} (login: {ADMIN_USER})")
    if health:
        print("  Airflow      " + ", ".join(f"{k} {v}" for k, v in comps.items()))
    healthy = len(alive) == len(state.processes) and ml_ok and airflow_healthy(health)
    print(f"  overall      {'healthy' if healthy else 'NOT healthy'}")
    return 0 if healthy else 1
