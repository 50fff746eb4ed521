"""The MLflow image's scripts: the auth config its entrypoint writes (read back with MLflow's own
reader), and the idempotence of the account bootstrap.

MLflow's basic-auth server cannot start here (its Flask-WTF extra is not in the lock), so
mlflow_auth.py runs against a small stand-in of the REST endpoints it calls, with the request
and response shapes of MLflow 3.17 (checked against a real basic-auth server on PostgreSQL, see
docs/deployment.md). The stand-in records state so the test can assert what a second run changes.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import stat
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from .conftest import DOCKER

ADMIN_PASSWORD = "admin-test-pw"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def entrypoint() -> ModuleType:
    return _load(DOCKER / "mlflow" / "entrypoint.py", "lockgate_mlflow_entrypoint")


@pytest.fixture(scope="module")
def mlflow_auth() -> ModuleType:
    return _load(DOCKER / "mlflow" / "mlflow_auth.py", "lockgate_mlflow_auth")


def _mlflow_read_auth_config() -> Any:
    # mlflow.server.auth's package __init__ needs Flask-WTF; its config module does not.
    import mlflow

    module = _load(Path(mlflow.__file__).parent / "server" / "auth" / "config.py", "mlflow_auth_config_probe")
    return module.read_auth_config


def test_auth_config_reads_back_with_mlflows_reader(
    entrypoint: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = "postgresql+psycopg2://mlflow:p%40ss%25word@postgres:5432/mlflow_auth"
    env = {
        "MLFLOW_AUTH_DATABASE_URI": uri,
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret",
    }
    path = entrypoint.write_auth_config(env, tmp_path / "auth" / "basic_auth.ini")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a database password
    assert ADMIN_PASSWORD not in path.read_text()  # MLflow reads the admin password from the env
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_USERNAME", raising=False)
    config = _mlflow_read_auth_config()()
    assert config.database_uri == uri  # the % survived MLflow's interpolating parser
    assert config.default_permission == "READ"
    assert config.admin_username == "admin"
    assert config.admin_password == ADMIN_PASSWORD
    assert config.authorization_function == "mlflow.server.auth:authenticate_request_basic_auth"


def test_auth_config_refuses_an_incomplete_environment(entrypoint: ModuleType) -> None:
    with pytest.raises(entrypoint.ConfigurationError, match="MLFLOW_FLASK_SERVER_SECRET_KEY"):
        entrypoint.render_auth_config({"MLFLOW_AUTH_DATABASE_URI": "x", "MLFLOW_AUTH_ADMIN_PASSWORD": "y"})
    complete = {
        "MLFLOW_AUTH_DATABASE_URI": "x",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "y",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "z",
    }
    with pytest.raises(entrypoint.ConfigurationError, match="MLFLOW_AUTH_DEFAULT_PERMISSION"):
        entrypoint.render_auth_config({**complete, "MLFLOW_AUTH_DEFAULT_PERMISSION": "ALL"})


def test_entrypoint_execs_mlflow_server_with_the_config(
    entrypoint: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(entrypoint.os, "execvp", lambda file, args: calls.append((file, args)))
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / "a.ini"))
    monkeypatch.setenv("MLFLOW_AUTH_DATABASE_URI", "sqlite:///auth.db")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "k")
    assert entrypoint.main(["--app-name", "basic-auth", "--port", "5000"]) == 0
    assert calls == [("mlflow", ["mlflow", "server", "--app-name", "basic-auth", "--port", "5000"])]
    assert os.environ["MLFLOW_AUTH_CONFIG_PATH"] == str(tmp_path / "a.ini")
    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY")
    assert entrypoint.main([]) == 2  # refuses, does not start a half-configured server


class FakeMlflowAuth:
    """State behind the stand-in endpoints: users, roles (with permissions), assignments, grants."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}
        self.roles: dict[int, dict[str, Any]] = {}
        self.assignments: set[tuple[str, int]] = set()
        self.grants: list[dict[str, str]] = []
        self.calls: list[str] = []

    def handle(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        self.calls.append(f"{method} {path}")
        if path == "/api/2.0/mlflow/users/get":
            name = query["username"]
            if name not in self.users:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST"}
            return 200, {"user": {"username": name}}
        if path == "/api/2.0/mlflow/users/create":
            if body["username"] in self.users:
                return 400, {"error_code": "RESOURCE_ALREADY_EXISTS"}
            self.users[body["username"]] = body["password"]
            return 200, {"user": {"username": body["username"]}}
        if path == "/api/2.0/mlflow/users/update-password" and method == "PATCH":
            self.users[body["username"]] = body["password"]
            return 200, {}
        if path == "/api/3.0/mlflow/roles/list":
            return 200, {"roles": [r for r in self.roles.values() if r["workspace"] == query["workspace"]]}
        if path == "/api/3.0/mlflow/roles/create":
            role_id = len(self.roles) + 1
            self.roles[role_id] = {**body, "id": role_id, "permissions": []}
            return 200, {"role": self.roles[role_id]}
        if path == "/api/3.0/mlflow/roles/permissions/add":
            perms = self.roles[body["role_id"]]["permissions"]
            perms.append({**body, "id": 100 + len(perms)})
            return 200, {"role_permission": perms[-1]}
        if path == "/api/3.0/mlflow/users/roles/list":
            ids = [rid for user, rid in self.assignments if user == query["username"]]
            return 200, {"roles": [self.roles[i] for i in ids]}
        if path == "/api/3.0/mlflow/roles/assign":
            if body["username"] not in self.users:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST"}
            self.assignments.add((body["username"], body["role_id"]))
            return 200, {"assignment": body}
        if path == "/api/3.0/mlflow/users/permissions/grant":
            self.grants.append(body)
            return 200, {}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "path": path}


@pytest.fixture
def fake_server() -> Iterator[tuple[str, FakeMlflowAuth]]:
    state = FakeMlflowAuth()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlparse(self.path)
            if url.path == "/health":
                self._reply(200, "OK")
                return
            expected = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._reply(401, {"error_code": "UNAUTHENTICATED"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            self._reply(*state.handle(self.command, url.path, query, body))

        def _reply(self, status: int, payload: Any) -> None:
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve  # noqa: N815 - http.server's naming

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def test_bootstrap_is_idempotent(mlflow_auth: ModuleType, fake_server: tuple[str, FakeMlflowAuth]) -> None:
    url, state = fake_server
    env = {
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "LOCKGATE_MLFLOW_PASSWORD": "svc-1",
        "LOCKGATE_MLFLOW_APPROVER_MODELS": "chat-model, summariser",
    }
    assert mlflow_auth.main(["bootstrap"], env) == 0
    assert mlflow_auth.main(["bootstrap"], {**env, "LOCKGATE_MLFLOW_PASSWORD": "svc-2"}) == 0  # rotation
    assert state.users == {"lockgate": "svc-2"}
    by_name = {r["name"]: r for r in state.roles.values()}
    assert set(by_name) == {"lockgate-service", "lockgate-approvers"}  # created once
    service = by_name["lockgate-service"]
    assert [(p["resource_type"], p["resource_pattern"], p["permission"]) for p in service["permissions"]] == [
        ("registered_model", "*", "EDIT")
    ]
    approvers = by_name["lockgate-approvers"]
    assert {p["resource_pattern"] for p in approvers["permissions"]} == {"chat-model", "summariser"}
    assert all(p["permission"] == "EDIT" for p in approvers["permissions"])
    assert state.assignments == {("lockgate", service["id"])}
    assert all(r["workspace"] == "default" for r in state.roles.values())


def test_add_approver_and_grant(mlflow_auth: ModuleType, fake_server: tuple[str, FakeMlflowAuth]) -> None:
    url, state = fake_server
    env = {"MLFLOW_TRACKING_URI": url, "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "LOCKGATE_MLFLOW_PASSWORD": "s"}
    mlflow_auth.main(["bootstrap"], env)
    assert mlflow_auth.main(["add-user", "alice", "--approver"], {**env, "NEW_USER_PASSWORD": "alice-pw"}) == 0
    assert mlflow_auth.main(["grant", "bob", "chat-model", "READ"], env) == 0
    approver_role = next(r["id"] for r in state.roles.values() if r["name"] == "lockgate-approvers")
    assert ("alice", approver_role) in state.assignments
    assert state.grants == [
        {"username": "bob", "resource_type": "registered_model", "resource_id": "chat-model", "permission": "READ"}
    ]


def test_wrong_admin_password_is_an_error(mlflow_auth: ModuleType, fake_server: tuple[str, FakeMlflowAuth]) -> None:
    url, _ = fake_server
    env = {"MLFLOW_TRACKING_URI": url, "MLFLOW_AUTH_ADMIN_PASSWORD": "wrong", "LOCKGATE_MLFLOW_PASSWORD": "s"}
    with pytest.raises(mlflow_auth.AuthError, match="HTTP 401"):
        mlflow_auth.main(["bootstrap"], env)
