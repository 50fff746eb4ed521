"""Approvals under MLflow authentication, against a real `mlflow server --app-name lockgate-auth`.

One server for the module (MLflow's basic-auth with lockgate's attestations), an admin that plays
lockgate's own MLflow user, and three users: alice and bob with EDIT on each test's model, carol
with no grant (the server's default_permission, READ).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import sys
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from mlflow.exceptions import MlflowException

from lockgate.devtools.testing.registry import (
    passing_evidence,
    policy_for,
    register_stub_version,
    sqlite_mlflow_store,
    write_evidence,
)
from lockgate.devtools.testing.servers import free_port, running_server
from lockgate.jobs.context import RunContext
from lockgate.jobs.promotion import run_promotion
from lockgate.policy.schema import ApprovalsConfig, Policy
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry, RegistryState
from lockgate.registry.attestation import parse_attestation
from lockgate.registry.audit import list_audit, state_engine
from lockgate.registry.commands import ApprovalError, approve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = "lockgate-auth"
PASSWORDS = {"admin": "admin-password-0123", "alice": "alice-password-0123", "bob": "bob-password-0123"}
PASSWORDS["carol"] = "carol-password-0123"


def _entry_point_path(root: Path) -> list[str]:
    """A folder that declares pyproject.toml's `mlflow.app` entry points, where the installed lockgate
    predates them (an editable install made before they were added); none when it has them."""
    if any(ep.name == APP for ep in md.entry_points(group="mlflow.app")):
        return []
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["mlflow.app"]
    dist = root / "ep" / "lockgate_mlflow_apps-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lockgate-mlflow-apps\nVersion: 0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in declared.items())
    (dist / "entry_points.txt").write_text(f"[mlflow.app]\n{lines}")
    return [str(root / "ep")]


@dataclass(frozen=True)
class Server:
    url: str
    backend: str


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`mlflow server --app-name lockgate-auth` on a free port, with the users created."""
    root = tmp_path_factory.mktemp("mlflow_auth")
    backend = sqlite_mlflow_store(root / "mlflow.db")
    ini = root / "auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # each request's password check costs ~0.3 s of PBKDF2 on a small CPU: once per user here
        "auth_cache_ttl_seconds = 600\n"
    )
    port = free_port()
    python_path = [*_entry_point_path(root), str(ROOT / "include"), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "DO_NOT_TRACK": "true",
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORDS["admin"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
        "PYTHONPATH": os.pathsep.join(p for p in python_path if p),
    }
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key, None)
    args = [str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", APP]
    args += ["--backend-store-uri", backend, "--default-artifact-root", (root / "artifacts").as_uri()]
    args += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with running_server(args, env, root / "server.log", f"http://127.0.0.1:{port}") as url:
        for user in ("alice", "bob", "carol"):
            resp = httpx.post(
                f"{url}/api/2.0/mlflow/users/create",
                json={"username": user, "password": PASSWORDS[user]},
                auth=("admin", PASSWORDS["admin"]),
                timeout=30,
            )
            assert resp.status_code == 200, resp.text
        yield Server(url, backend)


@dataclass
class Story:
    url: str
    name: str
    champion: str
    challenger: str
    policy: Policy
    state_url: str
    reports: Path
    monkeypatch: pytest.MonkeyPatch

    def as_user(self, user: str) -> ModelRegistry:
        """The registry as `user` sees it (the MLflow client reads the credentials from the environment)."""
        self.monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        self.monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS[user])
        return ModelRegistry(self.url)

    def promote(self, run_key: str):  # noqa: ANN201 - a Decision
        """A promotion run with lockgate's own MLflow user (the admin here)."""
        registry = self.as_user("admin")
        return run_promotion(
            RunContext(self.name, run_key=run_key),
            policy=self.policy,
            registry=registry,
            state_url=self.state_url,
            reports_dir=self.reports,
        )

    def post(self, user: str, path: str, body: dict[str, object], method: str = "POST") -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", json=body, auth=(user, PASSWORDS[user]), timeout=30)

    def attestation(self) -> dict[str, object]:
        tags = self.as_user("admin").version_tags(self.name, self.challenger)
        found = parse_attestation(tags.get(T.APPROVAL_ATTESTATION))
        assert found is not None, tags
        return {"user": found.user, "permission": found.permission, "tags": found.tags}


@pytest.fixture
def story(auth_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Story:
    """A model awaiting approval under `approvals.mlflow_auth`: alice and bob hold EDIT on it."""
    url = auth_server.url
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["admin"])
    name = f"auth-{uuid.uuid4().hex[:8]}"
    v1 = register_stub_version(name, url, alias="champion")
    v2 = register_stub_version(name, url, alias="challenger")
    for user in ("alice", "bob"):
        resp = httpx.post(
            f"{url}/api/3.0/mlflow/users/permissions/grant",
            json={"username": user, "resource_type": "registered_model", "resource_id": name, "permission": "EDIT"},
            auth=("admin", PASSWORDS["admin"]),
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
    policy = policy_for(name, approvers=("alice", "bob", "carol"))
    policy = policy.model_copy(update={"approvals": ApprovalsConfig(mlflow_auth=True)})
    reports = tmp_path / "reports"
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    write_evidence(reports, passing_evidence(name, v2, v1, datetime.now(UTC)), state_url)
    s = Story(url, name, v1, v2, policy, state_url, reports, monkeypatch)
    assert s.promote("r1").action == "await_approval"
    return s


def _approval_rows(s: Story, kind: str = "approval") -> list[tuple[str, str | None]]:
    return [(a.actor, a.approval_auth) for a in list_audit(state_engine(s.state_url), s.name, kind=kind)]


def test_alice_approving_as_herself_with_the_cli_counts_as_authenticated(story: Story) -> None:
    s = story
    registry = s.as_user("alice")
    with pytest.raises(ApprovalError, match="not the MLflow user 'alice'"):
        approve(s.name, s.challenger, "bob", policy=s.policy, registry=registry, state_url=s.state_url)
    tags = approve(s.name, s.challenger, None, policy=s.policy, registry=registry, state_url=s.state_url)
    assert tags[T.APPROVED_BY] == "alice"
    assert s.attestation()["user"] == "alice" and s.attestation()["permission"] == "EDIT"
    assert _approval_rows(s) == [("alice", "authenticated (MLflow: alice)")]

    decision = s.promote("r2")
    assert decision.action == "promote" and decision.outcome == "moved"
    assert decision.approval is not None and decision.approval.auth_label == "authenticated (MLflow: alice)"
    assert s.as_user("admin").state(s.name) == RegistryState(champion=s.challenger, previous_champion=s.champion)
    moves = [a for a in list_audit(state_engine(s.state_url), s.name, kind="alias_move") if a.alias == "champion"]
    assert moves[0].approved_by == "alice" and moves[0].approval_auth == "authenticated (MLflow: alice)"


def test_an_approval_set_in_the_mlflow_ui_counts_with_the_servers_evidence_and_time(story: Story) -> None:
    s = story
    evidence = s.as_user("admin").version_tags(s.name, s.challenger)[T.EVIDENCE]
    for key, value in ((T.APPROVAL, "approved"), (T.APPROVED_BY, "alice")):  # the UI's path: /ajax-api/
        body = {"name": s.name, "version": s.challenger, "key": key, "value": value}
        resp = s.post("alice", "/ajax-api/2.0/mlflow/model-versions/set-tag", body)
        assert resp.status_code == 200, resp.text
    assert s.attestation()["tags"] == {T.APPROVAL: "approved", T.APPROVED_BY: "alice"}

    decision = s.promote("r2")
    assert decision.action == "promote", decision.reasons
    assert decision.approval is not None and decision.approval.auth_label == "authenticated (MLflow: alice)"
    # lockgate pinned nothing (a write by its own user would have made it the approval's last writer)
    tags = s.as_user("admin").version_tags(s.name, s.challenger)
    assert T.APPROVAL_EVIDENCE not in tags and T.APPROVED_AT not in tags
    assert decision.evidence_hash == evidence


def test_bob_writing_alices_name_does_not_count(story: Story) -> None:
    s = story
    bob = s.as_user("bob")
    evidence = bob.version_tags(s.name, s.challenger)[T.EVIDENCE]
    now = datetime.now(UTC).isoformat()
    bob.set_tags(
        s.name,
        s.challenger,
        {T.APPROVAL: "approved", T.APPROVED_BY: "alice", T.APPROVAL_EVIDENCE: evidence, T.APPROVED_AT: now},
    )
    assert s.attestation()["user"] == "bob"

    decision = s.promote("r2")
    assert decision.action == "await_approval"
    assert decision.approval is not None and decision.approval.status == "invalid"
    assert "was written by the MLflow user 'bob'" in decision.approval.reason
    assert s.as_user("admin").state(s.name).champion == s.champion
    refused = list_audit(state_engine(s.state_url), s.name, kind="approval_refused")
    assert refused and "MLflow user 'bob'" in (refused[0].message or "")
    # the refused tags are cleared, so a person is asked again
    assert T.APPROVAL not in s.as_user("admin").version_tags(s.name, s.challenger)


def test_a_user_without_permission_on_the_model_cannot_approve(story: Story) -> None:
    s = story
    body = {"name": s.name, "version": s.challenger, "key": T.APPROVAL, "value": "approved"}
    assert s.post("carol", "/api/2.0/mlflow/model-versions/set-tag", body).status_code == 403
    with pytest.raises(MlflowException, match="error code 403"):  # refused, not "not reachable"
        approve(s.name, s.challenger, None, policy=s.policy, registry=s.as_user("carol"), state_url=s.state_url)
    assert T.APPROVAL not in s.as_user("admin").version_tags(s.name, s.challenger)
    assert s.promote("r2").action == "await_approval"


def test_no_client_may_write_the_attestation(story: Story) -> None:
    s = story
    forged = json.dumps({"format": 1, "user": "alice"})
    for user in ("alice", "admin"):
        for prefix in ("/api/2.0", "/ajax-api/2.0"):
            body = {"name": s.name, "version": s.challenger, "key": T.APPROVAL_ATTESTATION, "value": forged}
            resp = s.post(user, f"{prefix}/mlflow/model-versions/set-tag", body)
            assert resp.status_code == 403 and "written by the MLflow server only" in resp.text
            body = {"name": s.name, "version": s.challenger, "key": T.APPROVAL_ATTESTATION}
            assert s.post(user, f"{prefix}/mlflow/model-versions/delete-tag", body, method="DELETE").status_code == 403
    create = {
        "name": s.name,
        "source": "runs:/0/model",
        "tags": [{"key": T.APPROVAL, "value": "approved"}, {"key": T.APPROVAL_ATTESTATION, "value": forged}],
    }
    assert s.post("admin", "/api/2.0/mlflow/model-versions/create", create).status_code == 403
    assert T.APPROVAL_ATTESTATION not in s.as_user("admin").version_tags(s.name, s.challenger)


def test_approval_tags_changed_around_the_server_do_not_count(story: Story, auth_server: Server) -> None:
    s = story
    approve(
        s.name, s.challenger, None, reject=True, policy=s.policy, registry=s.as_user("alice"), state_url=s.state_url
    )
    # alice's rejection turned into an approval straight in the server's database: no write to attest
    import sqlalchemy as sa

    engine = sa.create_engine(auth_server.backend)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE model_version_tags SET value = 'approved' WHERE name = :n AND version = :v AND key = :k"),
            {"n": s.name, "v": int(s.challenger), "k": T.APPROVAL},
        )
    engine.dispose()
    decision = s.promote("r2")
    assert decision.action == "await_approval" and decision.approval is not None
    assert decision.approval.status == "invalid"
    assert "changed after the write the MLflow server attested (by alice)" in decision.approval.reason
