"""The Lockgate plugin's routes: index, report files, DAG-run links, history pages, traversal, and auth.

Authorization is decided by Airflow's SimpleAuthManager (the local stack's) or, where a permission on
one DAG only is needed, which SimpleAuthManager cannot express, by a subclass of it. The user is put
in place of `get_user`'s answer (resolving a real JWT needs Airflow's migrated metadata database).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi.testclient import TestClient

from lockgate.reports.html import report_dir
from lockgate.reports.index import ReportEntry, record_report

ROOT = Path(__file__).resolve().parents[2]
DAG_OF_KIND = {
    "benchmark": "lockgate_benchmark",
    "drift": "lockgate_drift",
    "quality": "lockgate_quality",
    "live": "lockgate_live",
    "decision": "lockgate_promotion",
}


@pytest.fixture
def plugin(lockgate_env: Path):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("lockgate_plugin_under_test", ROOT / "plugins" / "lockgate_plugin.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def simple_auth_manager(monkeypatch: pytest.MonkeyPatch) -> SimpleAuthManager:
    """The local stack's auth manager, where the API server's start-up (`init_auth_manager`) puts it."""
    from airflow.api_fastapi import app as api_app

    manager = SimpleAuthManager()
    monkeypatch.setattr(api_app._AuthManagerState, "instance", manager)
    return manager


ClientAs = Callable[..., TestClient]


@pytest.fixture
def client_as(plugin, simple_auth_manager: SimpleAuthManager) -> Iterator[ClientAs]:  # noqa: ANN001
    """`client_as(role)`: a client logged in as a SimpleAuthManager user with that role (None: no role)."""
    from airflow.api_fastapi.core_api.security import get_user

    def make(role: str | None, username: str = "someone") -> TestClient:
        user = SimpleAuthManagerUser(username=username, role=role)
        plugin.app.dependency_overrides[get_user] = lambda: user
        return TestClient(plugin.app)

    yield make
    plugin.app.dependency_overrides.clear()


@pytest.fixture
def authed(client_as: ClientAs) -> TestClient:
    return client_as("admin", "admin")


def _write_report(kind: str, run_id: str, title: str, dag_id: str | None = "") -> Path:
    """A report in the index; `dag_id` "" means the DAG of its kind, None a CLI run (no DAG)."""
    d = report_dir(kind, "lockgate-demo", run_id)
    (d / "report.html").write_text(f"<html><title>{title}</title><body>{title}</body></html>")
    record_report(
        ReportEntry(
            kind=kind,
            model_name="lockgate-demo",
            run_key=run_id,
            status="ok",
            title=f"{title} <script>alert(1)</script>",
            path=str(d / "report.html"),
            model_version="2",
            dag_id=DAG_OF_KIND[kind] if dag_id == "" else dag_id,
            run_id=run_id,
        )
    )
    return d / "report.html"


def test_requests_without_a_token_are_refused(plugin) -> None:  # noqa: ANN001
    client = TestClient(plugin.app)
    for path in ("/", "/api/reports", "/reports/drift/x/report.html", "/runs/lockgate_drift/r1", "/history?model=m"):
        assert client.get(path).status_code in (401, 403), path


def test_index_lists_reports_escaped(authed: TestClient) -> None:
    _write_report("drift", "manual__2026-01-01", "Drift report")
    page = authed.get("/")
    assert page.status_code == 200
    assert "/lockgate/reports/drift/lockgate-demo/manual__2026-01-01/report.html" in page.text
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
    data = authed.get("/api/reports").json()
    assert data[0]["kind"] == "drift" and data[0]["href"].endswith("report.html")


def test_report_file_and_run_link(authed: TestClient) -> None:
    _write_report("benchmark", "scheduled__2026-01-02", "Benchmark report")
    r = authed.get("/reports/benchmark/lockgate-demo/scheduled__2026-01-02/report.html")
    assert r.status_code == 200 and "Benchmark report" in r.text
    link = authed.get("/runs/lockgate_benchmark/scheduled__2026-01-02", follow_redirects=False)
    assert link.status_code == 307 and link.headers["location"].endswith("report.html")
    missing = authed.get("/runs/lockgate_benchmark/nope")
    assert missing.status_code == 404 and "has not written a report" in missing.text


@pytest.mark.parametrize(
    "path",
    [
        "/reports/../../../../etc/passwd",
        "/reports/%2e%2e/%2e%2e/etc/passwd",
        "/reports/..%2f..%2fsecrets.json",
        "/reports/drift/../../secrets.json",
        "/reports/lockgate.db",
    ],
)
def test_no_path_traversal(authed: TestClient, lockgate_env: Path, path: str) -> None:
    (lockgate_env / "secrets.json").write_text('{"admin_password": "s3cret"}')
    r = authed.get(path)
    assert r.status_code == 404
    assert "s3cret" not in r.text and "root:" not in r.text


def test_plugin_registers_menu_and_run_view(plugin) -> None:  # noqa: ANN001
    views = {v["url_route"]: v for v in plugin.LockgatePlugin.external_views}
    assert views["lockgate"]["destination"] == "nav"
    assert views["lockgate_run_report"]["destination"] == "dag_run"
    assert "{DAG_ID}" in views["lockgate_run_report"]["href"] and "{RUN_ID}" in views["lockgate_run_report"]["href"]


def _seed_history(model: str) -> None:
    """Two evidence runs of every kind and a promotion, in the state database the plugin reads."""
    from datetime import UTC, datetime, timedelta

    from lockgate.devtools.testing.registry import passing_evidence
    from lockgate.policy.model import Decision
    from lockgate.registry.audit import AuditEntry, record_audit, record_decision, state_engine
    from lockgate.reports.history import record_evidence

    now = datetime.now(UTC)
    for i, at in enumerate((now - timedelta(days=3), now - timedelta(hours=2))):
        for kind, summary in passing_evidence(model, "2", "1", at, ttft_ratio=1.0 + i / 10).items():
            record_evidence(summary, f"{kind}-{i}")
    engine = state_engine()
    decision = Decision(
        model_name=model, action="promote", champion="1", challenger="2", target="2", evidence_hash="e" * 16,
        policy_hash="p" * 16, decided_at=now - timedelta(hours=1), run_key="promote-1", outcome="moved",
    )  # fmt: skip
    with engine.begin() as conn:
        record_decision(conn, decision)
        record_audit(
            conn,
            AuditEntry(model_name=model, kind="alias_move", actor="lockgate", alias="champion", from_version="1",
                       to_version="2", at=now - timedelta(hours=1), dedupe_key=f"{model}-move"),
        )  # fmt: skip
    engine.dispose()


def test_history_page_per_model_linked_from_the_index(authed: TestClient) -> None:
    _seed_history("lockgate-demo")
    index = authed.get("/")
    assert index.status_code == 200 and 'href="/lockgate/history?model=lockgate-demo"' in index.text
    page = authed.get("/history", params={"model": "lockgate-demo", "days": "7"})
    assert page.status_code == 200
    assert "History of lockgate-demo" in page.text and "<strong>last 7 days</strong>" in page.text
    for chart in ("benchmark-ttft", "live-ttft", "drift-share", "quality-relevance"):
        assert f"id='{chart}'" in page.text
    assert page.text.count("<svg") >= 4
    assert ">promote 2</text>" in page.text and ">champion 1→2</text>" in page.text
    assert 'href="/lockgate/history?model=lockgate-demo&amp;days=90"' in page.text
    # 30 days is the default period; without a model the page lists the models.
    assert "<strong>last 30 days</strong>" in authed.get("/history?model=lockgate-demo").text
    listing = authed.get("/history")
    assert listing.status_code == 200 and 'href="/lockgate/history?model=lockgate-demo"' in listing.text


def test_history_rejects_a_bad_period_and_names_an_unknown_model(authed: TestClient, plugin) -> None:  # noqa: ANN001
    for days in ("8", "abc", "-7", "30.0", "1e9", "０7", "07"):
        r = authed.get("/history", params={"model": "lockgate-demo", "days": days})
        assert r.status_code == 400 and "days must be one of 7, 30, 90" in r.text, days
    hostile = "<script>alert(1)</script>"
    r = authed.get("/history", params={"model": hostile})
    assert r.status_code == 404 and "Unknown model" in r.text
    assert "<script>" not in r.text and "&lt;script&gt;" in r.text
    # A model the policy watches with nothing recorded yet has no evidence, it is not unknown.
    watched = plugin._watched_models()[0][0]
    r = authed.get("/history", params={"model": watched, "days": "7"})
    assert r.status_code == 200 and "No evidence in the last 7 days" in r.text


# --------------------------------------------------------------------------- authorization


def _seed_every_kind() -> dict[str, str]:
    """A report of each kind, written by its DAG, and the model's history; kind -> the run id."""
    runs = {kind: f"scheduled__2026-01-0{i + 1}" for i, kind in enumerate(DAG_OF_KIND)}
    for kind, run in runs.items():
        _write_report(kind, run, f"{kind.title()} report")
    _seed_history("lockgate-demo")
    return runs


def _report_url(kind: str, run: str) -> str:
    return f"/reports/{kind}/lockgate-demo/{run}/report.html"


@pytest.mark.parametrize("role", ["admin", "viewer", "user", "op"])
def test_every_role_of_the_local_stack_reads_every_page(client_as: ClientAs, role: str) -> None:
    runs = _seed_every_kind()
    client = client_as(role)
    index = client.get("/")
    assert index.status_code == 200
    for kind, run in runs.items():
        assert f"/lockgate{_report_url(kind, run)}" in index.text
        page = client.get(_report_url(kind, run))
        assert page.status_code == 200 and f"{kind.title()} report" in page.text
        link = client.get(f"/runs/{DAG_OF_KIND[kind]}/{run}", follow_redirects=False)
        assert link.status_code == 307 and link.headers["location"].endswith(_report_url(kind, run))
    api = client.get("/api/reports")
    assert api.status_code == 200 and sorted(e["kind"] for e in api.json()) == sorted(DAG_OF_KIND)
    history = client.get("/history", params={"model": "lockgate-demo", "days": "7"})
    assert history.status_code == 200
    for kind in ("benchmark", "drift", "quality", "live"):
        assert f"run {kind}-0" in history.text, kind
    assert "champion 1, challenger 2" in history.text and "champion 1→2" in history.text  # decision, alias move
    assert client.get("/history").status_code == 200


# "nobody:" in `simple_auth_manager_users` gives a user whose role is "", who can log in and
# whom Airflow's own API refuses everything; a user built without a role has None.
@pytest.mark.parametrize("role", ["", None])
def test_a_user_without_a_role_is_refused_everywhere(
    client_as: ClientAs, simple_auth_manager: SimpleAuthManager, role: str | None
) -> None:
    runs = _seed_every_kind()
    user = SimpleAuthManagerUser(username="nobody", role=role)
    # What Airflow's `GET /api/v2/dags/{dag_id}/dagRuns` asks before it answers 403.
    assert not simple_auth_manager.is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id="lockgate_drift"), user=user
    )
    client = client_as(role, "nobody")
    paths = ["/", "/api/reports", "/api/reports?kind=drift", "/history", "/history?model=lockgate-demo&days=7"]
    for kind, run in runs.items():
        paths += [_report_url(kind, run), f"/runs/{DAG_OF_KIND[kind]}/{run}"]
    # Under a known kind, a report that does not exist is refused too: 404 would say which exist.
    paths += [_report_url("drift", "no-such-run"), "/runs/lockgate_drift/no-such-run"]
    for path in paths:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 403, path
        assert "report</title>" not in r.text and "lockgate-demo" not in r.text, path
    assert "may not read the runs of any lockgate DAG" in client.get("/").json()["detail"]
    # Outside the reports' kinds nothing is served to anyone, as before.
    assert client.get("/reports/lockgate.db").status_code == 404
    assert client.get("/reports/other/lockgate-demo/r/report.html").status_code == 404


class _DagRunsAuthManager(SimpleAuthManager):
    """SimpleAuthManager cannot grant one DAG and not another (its roles cover every DAG), as a FAB
    role with per-DAG permissions or Keycloak can: this one lets everybody read the runs of the
    DAGs it is given, and nothing else, and records what it was asked."""

    def __init__(self, readable: set[str]) -> None:
        super().__init__()
        self.readable = readable
        self.asked: list[tuple[str, DagAccessEntity | None, str | None]] = []

    def is_authorized_dag(
        self,
        *,
        method: Any,
        user: SimpleAuthManagerUser,
        access_entity: DagAccessEntity | None = None,
        details: DagDetails | None = None,
    ) -> bool:
        dag_id = details.id if details is not None else None
        self.asked.append((method, access_entity, dag_id))
        return method == "GET" and access_entity == DagAccessEntity.RUN and dag_id in self.readable


@pytest.fixture
def client_reading(plugin, client_as: ClientAs) -> Callable[[set[str]], tuple[TestClient, _DagRunsAuthManager]]:  # noqa: ANN001
    """`client_reading({dag ids})`: a logged-in user who may read the runs of those DAGs only."""
    from lockgate import report_access

    def make(readable: set[str]) -> tuple[TestClient, _DagRunsAuthManager]:
        manager = _DagRunsAuthManager(readable)
        client = client_as("viewer")
        plugin.app.dependency_overrides[report_access.auth_manager] = lambda: manager
        return client, manager

    return make


def test_a_user_allowed_on_one_dag_sees_only_its_reports(client_reading: Callable[..., Any]) -> None:
    runs = _seed_every_kind()
    client, manager = client_reading({"lockgate_drift"})
    index = client.get("/")
    assert index.status_code == 200 and "1 reports" in index.text
    assert f"/lockgate{_report_url('drift', runs['drift'])}" in index.text
    for kind in ("benchmark", "quality", "live", "decision"):
        assert f"/lockgate/reports/{kind}/" not in index.text, kind
    assert [e["kind"] for e in client.get("/api/reports").json()] == ["drift"]
    assert client.get("/api/reports", params={"kind": "benchmark"}).json() == []
    assert client.get(_report_url("drift", runs["drift"])).status_code == 200
    assert client.get(_report_url("benchmark", runs["benchmark"])).status_code == 403
    assert client.get(f"/runs/lockgate_drift/{runs['drift']}", follow_redirects=False).status_code == 307
    assert client.get(f"/runs/lockgate_promotion/{runs['decision']}", follow_redirects=False).status_code == 403
    # The history shows the drift evidence only: no other kind's points, no decisions or alias moves.
    history = client.get("/history", params={"model": "lockgate-demo", "days": "7"})
    assert history.status_code == 200 and "run drift-0" in history.text
    for kind in ("benchmark", "quality", "live"):
        assert f"run {kind}-0" not in history.text, kind
    assert "champion 1, challenger 2" not in history.text and "champion 1→2" not in history.text
    # Asked about the runs of DAGs, by name, never about a DAG as a whole.
    assert {(m, e) for m, e, _ in manager.asked} == {("GET", DagAccessEntity.RUN)}
    assert {d for _, _, d in manager.asked} == set(DAG_OF_KIND.values())


def test_the_promotion_dag_guards_decisions_and_alias_moves(client_reading: Callable[..., Any]) -> None:
    runs = _seed_every_kind()
    client, _ = client_reading({"lockgate_promotion"})
    assert [e["kind"] for e in client.get("/api/reports").json()] == ["decision"]
    assert client.get(_report_url("decision", runs["decision"])).status_code == 200
    history = client.get("/history", params={"model": "lockgate-demo", "days": "7"})
    assert history.status_code == 200 and "run drift-0" not in history.text
    assert "champion 1, challenger 2" in history.text and "champion 1→2" in history.text


def test_a_report_needs_the_dag_that_wrote_it(client_reading: Callable[..., Any]) -> None:
    _write_report("drift", "scheduled__2026-02-01", "Lockgate's drift", dag_id="lockgate_drift")
    _write_report("drift", "scheduled__2026-02-02", "Team drift", dag_id="team_drift")
    _write_report("quality", "cli-2026-02-03", "CLI quality", dag_id=None)  # `lockgate run quality`

    def titles(readable: set[str]) -> list[str]:
        client, _ = client_reading(readable)
        return sorted(e["title"].split(" <")[0] for e in client.get("/api/reports").json())

    # A CLI report (no DAG) goes with its kind's DAG; one written by another DAG needs that DAG too.
    assert titles({"lockgate_drift", "lockgate_quality"}) == ["CLI quality", "Lockgate's drift"]
    assert titles({"lockgate_drift", "team_drift"}) == ["Lockgate's drift", "Team drift"]
    client, _ = client_reading({"team_drift"})
    assert client.get("/api/reports").status_code == 403  # none of the lockgate DAGs
    assert client.get("/runs/team_drift/scheduled__2026-02-02", follow_redirects=False).status_code == 307


def test_in_multi_team_mode_the_dag_team_is_checked(
    monkeypatch: pytest.MonkeyPatch, simple_auth_manager: SimpleAuthManager
) -> None:
    from airflow.models.dag import DagModel

    from lockgate.report_access import ReportAccess

    # Which team owns a DAG comes from Airflow's metadata database (its bundles' teams).
    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
    monkeypatch.setattr(DagModel, "get_team_name", staticmethod(lambda dag_id: f"team-of-{dag_id}"))
    own = SimpleAuthManagerUser(username="ann", role="viewer", teams=["team-of-lockgate_drift"])
    access = ReportAccess(own, simple_auth_manager)
    assert access.readable_kinds() == ["drift"]
    assert access.may_read_report("drift", None) and not access.may_read_report("drift", "lockgate_live")
