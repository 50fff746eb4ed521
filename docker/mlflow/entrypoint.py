"""Start `mlflow server` with its basic-auth app configured from the environment.

The basic-auth app reads an INI file whose `database_uri` holds a database password, and no
environment variable overrides that key. So the file is written here, at container start, from
`MLFLOW_AUTH_DATABASE_URI`, to a private path (mode 0600), never into the image or the repository.
The admin account comes from `MLFLOW_AUTH_ADMIN_USERNAME` / `MLFLOW_AUTH_ADMIN_PASSWORD`, which
MLflow reads itself; the tracking store from `MLFLOW_BACKEND_STORE_URI` and the artifact store
from `MLFLOW_ARTIFACTS_DESTINATION` (both `mlflow server` options with environment variables).

Usage (the image's entrypoint): `python entrypoint.py [mlflow server options...]`.
"""

from __future__ import annotations

import configparser
import io
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_CONFIG_PATH = "/tmp/mlflow-auth/basic_auth.ini"  # noqa: S108 - private dir, created 0700 below
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")
REQUIRED = ("MLFLOW_AUTH_DATABASE_URI", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")


class ConfigurationError(Exception):
    """The environment does not describe a usable auth configuration."""


def render_auth_config(env: Mapping[str, str]) -> str:
    """The basic-auth INI text for this environment.

    `default_permission` is READ unless `MLFLOW_AUTH_DEFAULT_PERMISSION` says otherwise: every
    signed-in user can read every model, and only users granted EDIT (lockgate's service account,
    the approvers) may set tags or aliases.
    """
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise ConfigurationError(f"missing environment variables: {', '.join(missing)}")
    default_permission = env.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ").upper()
    if default_permission not in PERMISSIONS:
        raise ConfigurationError(
            f"MLFLOW_AUTH_DEFAULT_PERMISSION={default_permission!r} is not one of {', '.join(PERMISSIONS)}"
        )
    parser = configparser.ConfigParser(interpolation=None)
    parser["mlflow"] = {
        "default_permission": default_permission,
        # MLflow reads this file with interpolation on: a literal % (URL-encoded password) must be %%.
        "database_uri": env["MLFLOW_AUTH_DATABASE_URI"].replace("%", "%%"),
        "admin_username": env.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin",
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access": "false",
    }
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def write_auth_config(env: Mapping[str, str], path: Path) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(render_auth_config(env))
    return path


def main(argv: Sequence[str]) -> int:
    path = Path(os.environ.get("MLFLOW_AUTH_CONFIG_PATH") or DEFAULT_CONFIG_PATH)
    try:
        write_auth_config(os.environ, path)
    except ConfigurationError as exc:
        print(f"mlflow entrypoint: {exc}", file=sys.stderr)
        return 2
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(path)
    os.execvp("mlflow", ["mlflow", "server", *argv])  # noqa: S606, S607 - replaces this process
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
