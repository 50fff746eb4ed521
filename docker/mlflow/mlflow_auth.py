"""Accounts and permissions on lockgate's MLflow server (basic-auth app), idempotently.

Only approvers may set approval tags on a model: the server's default permission is READ, and
EDIT on a registered model (what setting tags and aliases needs) is granted to

* lockgate's service account, through the role `lockgate-service` (EDIT on every registered
  model: it moves aliases and writes `lockgate.*` tags);
* the approvers, through the role `lockgate-approvers` (EDIT on the registered models matching
  `LOCKGATE_MLFLOW_APPROVER_MODELS`, default every one), or one model at a time with `grant`.

Commands (run where the admin password is, e.g. `docker compose exec mlflow python
/opt/mlflow/mlflow_auth.py add-user alice --approver`):

    bootstrap                      service account + both roles (the `mlflow-init` service runs it)
    add-user NAME [--approver]     create NAME (password from NEW_USER_PASSWORD or a prompt)
    grant NAME MODEL PERMISSION    per-model permission: READ, USE, EDIT, MANAGE or DENY

Environment: MLFLOW_TRACKING_URI (default http://127.0.0.1:5000), MLFLOW_AUTH_ADMIN_USERNAME
(default admin), MLFLOW_AUTH_ADMIN_PASSWORD, LOCKGATE_MLFLOW_USERNAME (default lockgate) and
LOCKGATE_MLFLOW_PASSWORD for `bootstrap`.

Standard library only: it runs in the MLflow image and needs no MLflow client (whose auth
module imports the server's Flask-WTF).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WORKSPACE = "default"  # MLflow's implicit workspace when workspaces are not enabled
SERVICE_ROLE = "lockgate-service"
APPROVER_ROLE = "lockgate-approvers"
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "DENY")
READY_TIMEOUT_S = 300


class AuthError(Exception):
    """The MLflow server refused a request (status and body in the message)."""

    def __init__(self, status: int, body: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Admin:
    """An admin session against one MLflow server."""

    base_url: str
    username: str
    password: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Admin:
        password = env.get("MLFLOW_AUTH_ADMIN_PASSWORD")
        if not password:
            raise SystemExit("MLFLOW_AUTH_ADMIN_PASSWORD is not set")
        return cls(
            base_url=(env.get("MLFLOW_TRACKING_URI") or "http://127.0.0.1:5000").rstrip("/"),
            username=env.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin",
            password=password,
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **query: str) -> dict[str, Any]:
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) from config
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
                raw = resp.read().decode() or "{}"
        except urllib.error.HTTPError as exc:
            raise AuthError(exc.code, exc.read().decode(errors="replace"), f"{method} {path}") from None
        return json.loads(raw)


def wait_until_ready(admin: Admin, timeout: float = READY_TIMEOUT_S) -> None:
    """Every wait has a deadline: /health answers once the server (and its auth store) is up."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(admin.base_url + "/health", timeout=10) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(3)
    raise SystemExit(f"MLflow at {admin.base_url} not healthy after {timeout:.0f} s ({last})")


def user_exists(admin: Admin, username: str) -> bool:
    try:
        admin.call("GET", "/api/2.0/mlflow/users/get", username=username)
    except AuthError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def ensure_user(admin: Admin, username: str, password: str) -> str:
    """Create the user, or reset its password to the given one (so rotating it is re-running this)."""
    if user_exists(admin, username):
        admin.call("PATCH", "/api/2.0/mlflow/users/update-password", {"username": username, "password": password})
        return "updated"
    admin.call("POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password})
    return "created"


def ensure_role(admin: Admin, name: str, description: str, grants: Sequence[tuple[str, str, str]]) -> int:
    """The role `name` in the default workspace with at least `grants` (type, pattern, permission)."""
    roles = admin.call("GET", "/api/3.0/mlflow/roles/list", workspace=WORKSPACE).get("roles", [])
    role = next((r for r in roles if r["name"] == name), None)
    if role is None:
        body = {"workspace": WORKSPACE, "name": name, "description": description}
        role = admin.call("POST", "/api/3.0/mlflow/roles/create", body)["role"]
    have = {(p["resource_type"], p["resource_pattern"]): p for p in role.get("permissions") or []}
    for resource_type, pattern, permission in grants:
        existing = have.get((resource_type, pattern))
        if existing is None:
            body = {
                "role_id": role["id"],
                "resource_type": resource_type,
                "resource_pattern": pattern,
                "permission": permission,
            }
            admin.call("POST", "/api/3.0/mlflow/roles/permissions/add", body)
        elif existing["permission"] != permission:
            body = {"role_permission_id": existing["id"], "permission": permission}
            admin.call("PATCH", "/api/3.0/mlflow/roles/permissions/update", body)
    return int(role["id"])


def ensure_assigned(admin: Admin, username: str, role_id: int) -> None:
    roles = admin.call("GET", "/api/3.0/mlflow/users/roles/list", username=username).get("roles", [])
    if not any(int(r["id"]) == role_id for r in roles):
        admin.call("POST", "/api/3.0/mlflow/roles/assign", {"username": username, "role_id": role_id})


def approver_grants(env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    patterns = [p.strip() for p in (env.get("LOCKGATE_MLFLOW_APPROVER_MODELS") or "*").split(",") if p.strip()]
    return [("registered_model", p, "EDIT") for p in patterns]


def bootstrap(admin: Admin, env: Mapping[str, str]) -> list[str]:
    service_user = env.get("LOCKGATE_MLFLOW_USERNAME") or "lockgate"
    service_password = env.get("LOCKGATE_MLFLOW_PASSWORD")
    if not service_password:
        raise SystemExit("LOCKGATE_MLFLOW_PASSWORD is not set")
    done = [f"user {service_user}: {ensure_user(admin, service_user, service_password)}"]
    service_role = ensure_role(
        admin,
        SERVICE_ROLE,
        "lockgate's service account: moves aliases and writes lockgate.* tags on every registered model",
        [("registered_model", "*", "EDIT")],
    )
    ensure_assigned(admin, service_user, service_role)
    done.append(f"role {SERVICE_ROLE} (EDIT on every registered model) assigned to {service_user}")
    ensure_role(
        admin,
        APPROVER_ROLE,
        "may set lockgate.approval / lockgate.approved_by on the registered models it names",
        approver_grants(env),
    )
    done.append(f"role {APPROVER_ROLE} ready (assign approvers with: add-user NAME --approver)")
    return done


def _role_id(admin: Admin, name: str) -> int:
    roles = admin.call("GET", "/api/3.0/mlflow/roles/list", workspace=WORKSPACE).get("roles", [])
    for role in roles:
        if role["name"] == name:
            return int(role["id"])
    raise SystemExit(f"role {name!r} does not exist yet: run `bootstrap` first")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("bootstrap", help="service account and roles (idempotent)")
    add = sub.add_parser("add-user", help="create a user (password from NEW_USER_PASSWORD or a prompt)")
    add.add_argument("name")
    add.add_argument("--approver", action="store_true", help=f"assign the role {APPROVER_ROLE}")
    grant = sub.add_parser("grant", help="give a user a permission on one registered model")
    grant.add_argument("name")
    grant.add_argument("model")
    grant.add_argument("permission", choices=PERMISSIONS)
    args = parser.parse_args(argv)

    admin = Admin.from_env(env)
    wait_until_ready(admin)
    if args.command == "bootstrap":
        for line in bootstrap(admin, env):
            print(line)
    elif args.command == "add-user":
        password = env.get("NEW_USER_PASSWORD") or getpass.getpass(f"password for {args.name}: ")
        if not password:
            raise SystemExit("empty password")
        print(f"user {args.name}: {ensure_user(admin, args.name, password)}")
        if args.approver:
            ensure_assigned(admin, args.name, _role_id(admin, APPROVER_ROLE))
            print(f"{args.name} is an approver ({APPROVER_ROLE})")
    else:
        body = {
            "username": args.name,
            "resource_type": "registered_model",
            "resource_id": args.model,
            "permission": args.permission,
        }
        admin.call("POST", "/api/3.0/mlflow/users/permissions/grant", body)
        print(f"{args.name}: {args.permission} on registered model {args.model}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AuthError as exc:
        print(f"mlflow_auth: {exc}", file=sys.stderr)
        sys.exit(1)
