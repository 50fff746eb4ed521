"""One-shot initialisation of a lockgate deployment (the `airflow-init` compose service).

Every step is idempotent, so re-running it (on each `docker compose up`, after an upgrade, after
rotating a password in docker/.env) is safe:

1. refuse to start on placeholder secrets copied unchanged from docker/.env.example;
2. `airflow db migrate` (creates or upgrades the metadata database);
3. the UI login: the simple auth manager's password file, written from AIRFLOW_ADMIN_PASSWORD;
4. `lockgate settings apply` with the project's airflow_settings.yaml less its connections:
   pools (`gpu`, ...) and variables. In a deployment the connections `lockgate_logs` and
   `lockgate_mlflow` come from `AIRFLOW_CONN_*` environment variables built from secrets, and a
   copy in the metadata database pointing at 127.0.0.1 would only mislead.

Usage: `python docker/airflow/init_stack.py [--skip-migrate]`. Exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

# The placeholder of docker/.env.example; compose passes every secret into this container's env
# (inside URLs too), so any variable still holding it means docker/.env was not filled in.
PLACEHOLDER = "CHANGE_ME"
MIGRATE_TIMEOUT_S = 900
APPLY_TIMEOUT_S = 600


def placeholder_secrets(env: Mapping[str, str]) -> list[str]:
    """Names of the variables that still hold the .env.example placeholder."""
    return sorted(name for name, value in env.items() if PLACEHOLDER in value)


def settings_without_connections(data: Any) -> dict[str, Any]:
    """The Astro-format settings with `airflow.connections` removed; pools and variables kept."""
    if not isinstance(data, dict):
        raise ValueError("airflow_settings.yaml must be a mapping with an `airflow` key")
    airflow = dict(data.get("airflow") or {})
    airflow.pop("connections", None)
    return {**data, "airflow": airflow}


def write_passwords_file(path: Path, username: str, password: str) -> None:
    """The simple auth manager reads {"user": "password"}; readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({username: password}, fh)
        fh.write("\n")


def _run(argv: Sequence[str], timeout: float) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(list(argv), check=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _project_root() -> Path:
    # docker/airflow/init_stack.py -> the project root (/opt/airflow in the image).
    return Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-migrate", action="store_true", help="the metadata database is already migrated")
    parser.add_argument("--settings", type=Path, default=_project_root() / "airflow_settings.yaml")
    args = parser.parse_args(argv)

    bad = placeholder_secrets(os.environ)
    if bad:
        print(f"init: replace the {PLACEHOLDER} values in docker/.env first ({', '.join(bad)})", file=sys.stderr)
        return 2
    airflow = shutil.which("airflow") or "airflow"
    lockgate = shutil.which("lockgate") or "lockgate"

    if not args.skip_migrate:
        _run([airflow, "db", "migrate"], MIGRATE_TIMEOUT_S)

    passwords_file = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    admin_password = os.environ.get("AIRFLOW_ADMIN_PASSWORD")
    if passwords_file and admin_password:
        user = os.environ.get("AIRFLOW_ADMIN_USER") or "admin"
        write_passwords_file(Path(passwords_file), user, admin_password)
        print(f"init: UI login for {user!r} written to {passwords_file}")

    reports = os.environ.get("LOCKGATE_REPORTS_DIR")
    if reports:
        Path(reports).mkdir(parents=True, exist_ok=True)

    filtered = settings_without_connections(yaml.safe_load(args.settings.read_text()))
    with tempfile.TemporaryDirectory(prefix="lockgate-init-") as tmp:
        path = Path(tmp) / "airflow_settings.yaml"
        path.write_text(yaml.safe_dump(filtered, sort_keys=False))
        _run([lockgate, "settings", "apply", "--file", str(path)], APPLY_TIMEOUT_S)
    print("init: done")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(f"init: `{' '.join(map(str, exc.cmd))}` exited {exc.returncode}", file=sys.stderr)
        sys.exit(exc.returncode or 1)
