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
def simple_auth_manager(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The local stack's auth manager, where the API server's start-up (`init_auth_manager`) puts it."""
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    manager = SimpleAuthManager()
    monkeypatch.setattr(api_app._AuthManagerState, "instance", manager)
    return manager


ClientAs = Callable[..., TestClient]


@pytest.fixture
def client_as(plugin, simple_auth_manager: Any) -> Iterator[ClientAs]:  # noqa: ANN001
    """`client_as(role)`: a client logged in as a SimpleAuthManager user with that role (None: no role)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
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

    from lockgate.policy.model import Decision
    from lockgate.registry.audit import AuditEntry, record_audit, record_decision, state_engine
    from lockgate.registry.testing import passing_evidence
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
