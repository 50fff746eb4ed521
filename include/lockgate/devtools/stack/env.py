"""Where the stack keeps its state, the secrets it persists, and the environment of every component.

Every component (and `settings apply`) gets the same environment from `build_stack_env`,
so the CLI, the API server, the scheduler and the tasks it runs agree on the metadata
database, the Fernet key and the JWT secret. Secrets are generated once and kept in
`<LOCKGATE_HOME>/secrets.json` (mode 0600): tokens and encrypted connection passwords
survive a restart.

Everything under LOCKGATE_HOME is its owner's only: directories 0700, files 0600
(`make_private`), and the components run with umask 077 so what they create is too.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shlex
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from lockgate.devtools.settings import get_dev_settings
from lockgate.errors import ConfigError
from lockgate.jobs import QUIET_PROGRESS_ENV
from lockgate.settings import PROJECT_ROOT, Settings

logger = logging.getLogger(__name__)

ADMIN_USER = "admin"

# A modest executor (the local stack shares its machine with everything else on it), and new
# DAG files noticed within 30 s instead of Airflow's default 5 minutes.
PARALLELISM = 4
DAG_REFRESH_INTERVAL_S = 30
DEFAULT_WORKER_LOG_PORT = 8793
DEFAULT_TRIGGER_LOG_PORT = 8794


@dataclass(frozen=True)
class StackPaths:
    """Every file the stack reads or writes, all under LOCKGATE_HOME."""

    home: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> StackPaths:
        return cls(home=settings.home)

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "stack.json"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "stack.lock"

    @property
    def env_file(self) -> Path:
        return self.run_dir / "stack.env"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.json"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def airflow_db(self) -> Path:
        return self.airflow_home / "airflow.db"

    @property
    def airflow_db_url_file(self) -> Path:
        """The metadata database `up` chose (PostgreSQL), kept so every later command agrees."""
        return self.airflow_home / "database_url"

    @property
    def password_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def pycache_dir(self) -> Path:
        return self.home / "pycache"

    def log_file(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def ensure(self) -> None:
        for d in (self.home, self.run_dir, self.logs_dir, self.airflow_home):
            private_dir(d)


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) readable by its owner only; tighten it if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid == os.getuid():
        os.chmod(path, 0o700)
    return path


# What lockgate writes under LOCKGATE_HOME. Only these are tightened file by file: LOCKGATE_HOME
# may be a folder that also holds someone's other files (whose modes are theirs to keep; the
# home's own 0700 already keeps other users out of them). The bytecode cache is left alone.
LOCKGATE_ENTRIES = (
    "run",
    "airflow",
    "reports",
    "secrets.json",
    "logs.db",
    "logs.db-wal",
    "logs.db-shm",
    "mlflow.db",
    "mlartifacts",
    "cache",
    "model_cache",
    "judge",
    "demo",
)


def _tighten(path: Path, uid: int) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:  # removed meanwhile (a log rotated, a temp file)
        return
    if path.is_symlink() or st.st_uid != uid:
        return
    mode = 0o700 if path.is_dir() else 0o600
    if st.st_mode & 0o777 != mode:
        os.chmod(path, mode)


def make_private(root: Path, entries: tuple[str, ...] = LOCKGATE_ENTRIES) -> None:
    """`root` 0700, and under its `entries` every directory 0700 and every file 0600."""
    if not root.is_dir():
        return
    uid = os.getuid()
    private_dir(root)
    for entry in entries:
        top = root / entry
        _tighten(top, uid)
        if not top.is_dir() or top.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                _tighten(Path(dirpath) / name, uid)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """umask 077 while the stack starts: files its components create are their owner's only."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@dataclass(frozen=True)
class StackPorts:
    """Ports the stack listens on; the log-server ports are picked at `up` and recorded."""

    airflow: int
    mlflow: int
    worker_log: int = DEFAULT_WORKER_LOG_PORT
    trigger_log: int = DEFAULT_TRIGGER_LOG_PORT

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow}"


class StackSecrets(BaseModel):
    """Generated once per LOCKGATE_HOME; a missing field is generated, the others are kept."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    jwt_secret: str
    api_secret_key: str
    fernet_key: str
    admin_password: str
    mlflow_webhook_secret: str
    # MLflow encrypts each webhook's secret with this key; without one it makes up a key per start, and
    # the next start cannot read the webhook back (HTTP 500 on every listing).
    mlflow_webhook_encryption_key: str


def _generate_secrets() -> dict[str, str]:
    return {
        # 64 bytes: PyJWT warns about shorter HMAC keys for the SHA512 Airflow signs with.
        "jwt_secret": secrets.token_urlsafe(64),
        "api_secret_key": secrets.token_urlsafe(32),
        # Fernet wants 32 url-safe base64-encoded bytes.
        "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "admin_password": secrets.token_urlsafe(12),
        "mlflow_webhook_secret": secrets.token_urlsafe(32),
        "mlflow_webhook_encryption_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (a crash never leaves half a secret)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_or_create_secrets(paths: StackPaths) -> StackSecrets:
    """The persisted secrets of this LOCKGATE_HOME, generating what is missing."""
    stored: dict[str, str] = {}
    if paths.secrets_file.exists():
        try:
            raw = json.loads(paths.secrets_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"unreadable secrets file ({exc}); delete it to regenerate", source=str(paths.secrets_file)
            ) from None
        if not isinstance(raw, dict):
            raise ConfigError("secrets file must hold a JSON object", source=str(paths.secrets_file))
        stored = {k: v for k, v in raw.items() if isinstance(v, str) and v}
    merged = {**_generate_secrets(), **stored}
    try:
        result = StackSecrets.model_validate(merged)
    except ValidationError as exc:  # pragma: no cover - every field is generated above
        raise ConfigError(str(exc), source=str(paths.secrets_file)) from None
    if merged.keys() - stored.keys():
        _write_private(paths.secrets_file, json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return result


def effective_admin_password(stack_secrets: StackSecrets, environ: Mapping[str, str] | None = None) -> str:
    """`LOCKGATE_ADMIN_PASSWORD` (lockgate.devtools.settings), else the generated one."""
    return get_dev_settings(environ).admin_password or stack_secrets.admin_password


def write_password_file(paths: StackPaths, password: str) -> None:
    """The simple auth manager's password file, written by us so the login is known.

    Airflow only adds users missing from this file, so the password we write is kept.
    """
    _write_private(paths.password_file, json.dumps({ADMIN_USER: password}) + "\n")


def read_admin_password(paths: StackPaths) -> str | None:
    """The password the running API server checks against (the file it reads at login)."""
    try:
        data = json.loads(paths.password_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    value = data.get(ADMIN_USER) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def venv_bin() -> Path:
    """The directory holding `airflow`, `mlflow` and this interpreter."""
    project_venv = PROJECT_ROOT / ".venv" / "bin"
    if (project_venv / "airflow").exists():
        return project_venv
    return Path(sys.executable).parent


def airflow_db_name(paths: StackPaths) -> str:
    """The metadata database's name on a shared PostgreSQL: one per LOCKGATE_HOME and its secrets.

    Stacks never share one, and a home made again (its secrets file gone, so a new Fernet key) gets a
    new database: the old one's connections and Asset-watcher triggers are encrypted with a key that
    is gone, and the triggerer would exit on the first it cannot decrypt.
    """
    seed = "\0".join((str(paths.home), load_or_create_secrets(paths).fernet_key))
    return f"lockgate_airflow_{hashlib.sha256(seed.encode()).hexdigest()[:8]}"


def recorded_airflow_db_url(paths: StackPaths) -> str | None:
    try:
        url = paths.airflow_db_url_file.read_text().strip()
    except OSError:
        return None
    return url or None


def record_airflow_db_url(paths: StackPaths, url: str) -> None:
    _write_private(paths.airflow_db_url_file, url + "\n")


def airflow_db_url(paths: StackPaths, environ: Mapping[str, str] | None = None) -> str:
    """`LOCKGATE_AIRFLOW_DB_URL`, else the PostgreSQL database `up` chose, else SQLite under LOCKGATE_HOME."""
    url = get_dev_settings(environ).airflow_db_url or recorded_airflow_db_url(paths)
    if url:
        # SQLAlchemy 2 no longer accepts the postgres:// spelling.
        return "postgresql://" + url[len("postgres://") :] if url.startswith("postgres://") else url
    return f"sqlite:///{paths.airflow_db}"


def mask_url(url: str) -> str:
    """A URL safe to print: the password replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def stack_overrides(
    settings: Settings,
    paths: StackPaths,
    stack_secrets: StackSecrets,
    ports: StackPorts,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables the stack sets for each component (on top of the caller's environment)."""
    env = os.environ if environ is None else environ
    base_url = ports.airflow_url
    return {
        # Airflow: separate components, LocalExecutor, only our DAGs and plugins.
        "AIRFLOW_HOME": str(paths.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
        "AIRFLOW__CORE__FERNET_KEY": stack_secrets.fernet_key,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db_url(paths, env),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(DAG_REFRESH_INTERVAL_S),
        # Tasks reach the execution API here; without it they fail with httpx ConnectError.
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports.airflow),
        "AIRFLOW__API__SECRET_KEY": stack_secrets.api_secret_key,
        "AIRFLOW__API_AUTH__JWT_SECRET": stack_secrets.jwt_secret,
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(paths.password_file),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports.worker_log),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports.trigger_log),
        # Lockgate inside tasks: same home, policy and reports as the CLI, MLflow = the server.
        "LOCKGATE_HOME": str(paths.home),
        "LOCKGATE_REPORTS_DIR": str(settings.reports_dir),
        "LOCKGATE_CONFIG": str(Path(settings.config_path).resolve()),
        "LOCKGATE_AIRFLOW_PORT": str(ports.airflow),
        "LOCKGATE_MLFLOW_PORT": str(ports.mlflow),
        "LOCKGATE_AIRFLOW_URL": base_url,
        "MLFLOW_TRACKING_URI": ports.mlflow_url,
        # The MLflow server's registry webhook to the plugin (lockgate.registry.webhook): signed with
        # this secret, delivered over plain HTTP to 127.0.0.1, which MLflow refuses unless told.
        "LOCKGATE_MLFLOW_WEBHOOK_SECRET": stack_secrets.mlflow_webhook_secret,
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": stack_secrets.mlflow_webhook_encryption_key,
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        # No downloads, no telemetry, no tokenizer thread pools fighting over the cores.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # No progress bars in task logs (Airflow shows stderr as ERROR lines): lockgate.jobs sets them too.
        **QUIET_PROGRESS_ENV,
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # The MLflow job runner pulls ~1.2 GB of extra processes we do not use.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": os.pathsep.join([str(venv_bin()), env.get("PATH", os.defpath)]),
        # Bytecode cached under LOCKGATE_HOME (never in the venv or the repo): without it every
        # component and task recompiles Airflow, MLflow, torch... at each start (2-3x slower).
        "PYTHONPYCACHEPREFIX": str(paths.pycache_dir),
    }


def _inherited_key_dropped(key: str) -> bool:
    # An inherited AIRFLOW_HOME or database URL (a test session's, another project's)
    # would silently point the stack at someone else's metadata database.
    # PYTHONDONTWRITEBYTECODE would defeat the bytecode cache (PYTHONPYCACHEPREFIX).
    return key in ("AIRFLOW_HOME", "AIRFLOW_CONFIG", "PYTHONDONTWRITEBYTECODE") or key.startswith("AIRFLOW__DATABASE__")


def build_stack_env(
    settings: Settings,
    paths: StackPaths,
    stack_secrets: StackSecrets,
    ports: StackPorts,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The full environment of every stack process: the caller's, made to point at the stack.

    LOCKGATE_LOGS_DB_URL is kept when the caller set it; otherwise it stays unset so the
    Airflow connection `lockgate_logs` (or the embedded SQLite store) decides.
    """
    env = dict(os.environ if environ is None else environ)
    base = {k: v for k, v in env.items() if not _inherited_key_dropped(k)}
    base.update(stack_overrides(settings, paths, stack_secrets, ports, env))
    return base


def env_file_values(overrides: Mapping[str, str], logs_db_url: str, settings: Settings) -> dict[str, str]:
    """What `stack.env` exports: the stack's overrides plus where the logs (and state) live.

    After `source stack.env`, the `airflow` and `lockgate` CLIs see what the stack's tasks see.
    """
    values = {**overrides, "LOCKGATE_LOGS_DB_URL": logs_db_url}
    if settings.state_db_url:
        values["LOCKGATE_STATE_DB_URL"] = settings.state_db_url
    return values


def write_env_file(paths: StackPaths, overrides: Mapping[str, str]) -> None:
    """`source <home>/run/stack.env` points a shell's `airflow` and `lockgate` CLIs at the stack (0600)."""
    lines = ["# Written by `lockgate up`: source it to use the airflow and lockgate CLIs against the stack."]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(overrides.items())]
    _write_private(paths.env_file, "\n".join(lines) + "\n")
