"""Real Pushgateway, real Prometheus: a promotion decision through lockgate's code path, read back with PromQL.

Debian's `prometheus` and `prometheus-pushgateway` run on free ports with a temporary config
(scrape every second, `honor_labels` as in docker/prometheus/prometheus.yml). The decisions come from
`run_promotion` on an MLflow SQLite registry with hand-made evidence (`lockgate.devtools.testing.registry`).
"""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lockgate.devtools.testing.registry import (
    passing_evidence,
    policy_for,
    register_stub_version,
    sqlite_mlflow_store,
    write_evidence,
)
from lockgate.jobs.context import RunContext
from lockgate.jobs.promotion import run_promotion
from lockgate.observability.prometheus import METRIC_NAMES, export_evidence
from lockgate.policy import Decision
from lockgate.registry.adapter import ModelRegistry
from lockgate.registry.audit import list_decisions, state_engine

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own local servers
        return bytes(resp.read())


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prom_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        uri = sqlite_mlflow_store(home / "mlflow.db")
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


@dataclass
class Story:
    name: str
    reports: Path
    state_url: str
    registry: ModelRegistry

    def decide(self, run_key: str, **evidence_kw: Any) -> Decision:
        v1 = register_stub_version(self.name, self.registry.uri, alias="champion")
        v2 = register_stub_version(self.name, self.registry.uri, alias="challenger")
        # made after the versions were registered, as a job makes it (the gates check it)
        summaries = passing_evidence(self.name, v2, v1, datetime.now(UTC).replace(microsecond=0), **evidence_kw)
        write_evidence(self.reports, summaries, self.state_url)
        return run_promotion(
            RunContext(self.name, run_key=run_key, now=NOW),
            policy=policy_for(self.name),
            registry=self.registry,
            state_url=self.state_url,
            reports_dir=self.reports,
        )


@pytest.fixture
def story(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str) -> Any:
    monkeypatch.setenv("LOCKGATE_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"

    def make() -> Story:
        return Story(f"m-{uuid.uuid4().hex[:8]}", tmp_path / "reports", state_url, ModelRegistry(mlflow_uri))

    return make


def test_decision_gates_read_back_with_promql(monitoring: Any, story: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_PUSHGATEWAY_URL", monitoring.pushgateway)
    held, waiting = story(), story()
    decision = held.decide("run-1", ttft_ratio=1.5)  # the benchmark TTFT gate fails: hold
    other = waiting.decide("run-1")  # every gate passes: await approval
    assert (decision.action, other.action) == ("hold", "await_approval")

    judged = [v for v in decision.verdicts if v.status != "missing"]
    assert judged and len(judged) == len(decision.verdicts)
    m = f'model="{held.name}"'
    passed = monitoring.wait_for(f"lockgate_gate_passed{{{m}}}", len(judged))
    got = {r["metric"]["gate"]: float(r["value"][1]) for r in passed}
    assert got == {v.gate: (1.0 if v.status == "pass" else 0.0) for v in judged}
    assert got["ttft_regression"] == 0.0
    for name, attr in (("value", "value"), ("lower", "ci_low"), ("upper", "ci_high")):
        series = monitoring.query(f"lockgate_gate_{name}{{{m}}}")
        expected = {v.gate: getattr(v, attr) for v in judged if getattr(v, attr) is not None}
        assert {r["metric"]["gate"]: pytest.approx(float(r["value"][1])) for r in series} == expected, name
    limits = {r["metric"]["gate"]: float(r["value"][1]) for r in monitoring.query(f"lockgate_gate_threshold{{{m}}}")}
    assert limits == pytest.approx({v.gate: v.limit for v in decision.verdicts})
    ttft = monitoring.query(f'lockgate_gate_value{{{m},gate="ttft_regression"}}')[0]["metric"]
    assert ttft["job"] == "lockgate_promotion"  # honor_labels: the pushed job label, not the scrape job's
    assert (ttft["version"], ttft["metric"], ttft["gate_action"]) == (
        decision.challenger,
        "benchmark.ttft_ms_p50",
        "block_promotion",
    )

    actions = monitoring.query(f"lockgate_decision{{{m}}} == 1")
    assert [r["metric"]["action"] for r in actions] == ["hold"]
    stamp = monitoring.query(f"lockgate_decision_timestamp_seconds{{{m}}}")
    assert float(stamp[0]["value"][1]) == NOW.timestamp()
    # the other model's push did not replace this one's group, and its wait is visible
    pending = monitoring.wait_for(f'lockgate_approval_pending_since_seconds{{model="{waiting.name}"}}', 1)
    assert pending[0]["metric"]["version"] == other.challenger and float(pending[0]["value"][1]) == NOW.timestamp()
    assert monitoring.query(f'lockgate_decision{{model="{waiting.name}",action="await_approval"}} == 1')

    # the next decision for the same model replaces its group (PUT): once the gate passes, the 0 is gone
    again = held.decide("run-2")
    assert again.action == "await_approval"
    deadline = time.monotonic() + 30
    while monitoring.query(f'lockgate_gate_passed{{{m},gate="ttft_regression"}} == 0') and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not monitoring.query(f'lockgate_gate_passed{{{m},gate="ttft_regression"}} == 0')
    assert [r["metric"]["action"] for r in monitoring.query(f"lockgate_decision{{{m}}} == 1")] == ["await_approval"]


def test_evidence_and_dashboard_queries(monitoring: Any) -> None:
    """What the evidence jobs push after writing their latest summary; every dashboard query on a real Prometheus."""
    model = f"m-{uuid.uuid4().hex[:8]}"
    summaries = passing_evidence(model, "2", "1", NOW - timedelta(hours=1), drift_share=0.2)
    for summary in summaries.values():
        assert export_evidence(summary, monitoring.pushgateway)
    ttft = monitoring.wait_for(f'lockgate_live_ttft_p90_ms{{model="{model}"}}', 3)
    assert {(r["metric"]["role"], r["metric"]["version"]) for r in ttft} == {
        ("challenger", "2"),
        ("champion", "1"),
        ("baseline", "1"),
    }
    assert {r["metric"]["job"] for r in ttft} == {"lockgate_live"}
    share = monitoring.wait_for(f'lockgate_drift_share{{model="{model}"}}', 1)
    assert float(share[0]["value"][1]) == 0.2
    ages = monitoring.wait_for(f'lockgate_evidence_timestamp_seconds{{model="{model}"}}', 4)
    assert {r["metric"]["kind"]: float(r["value"][1]) for r in ages} == {
        k: (NOW - timedelta(hours=1)).timestamp() for k in summaries
    }
    # every query of the provisioned dashboard is valid PromQL for this Prometheus
    board = json.loads((ROOT / "docker" / "grafana" / "dashboards" / "lockgate.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]] + [
        a["expr"] for a in board["annotations"]["list"]
    ]
    for expr in exprs:
        monitoring.query(expr.replace("$model", ".+"))
    # and the gateway serves only catalogue metrics under lockgate_
    text = _get(f"{monitoring.pushgateway}/metrics").decode()
    pushed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("lockgate_")}
    assert pushed and pushed <= set(METRIC_NAMES)


def test_a_gateway_that_is_down_never_fails_the_decision(
    story: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LOCKGATE_PUSHGATEWAY_URL", f"http://127.0.0.1:{_free_port()}")
    s = story()
    with caplog.at_level(logging.WARNING):
        decision = s.decide("run-down")
    assert decision.action == "await_approval" and decision.outcome
    assert [d.run_key for d in list_decisions(state_engine(s.state_url), s.name)] == ["run-down"]
    assert Path(decision.report_path or "").is_file()
    assert any("could not push" in r.message and r.levelno == logging.WARNING for r in caplog.records)
