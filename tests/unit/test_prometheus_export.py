"""The Prometheus exporter without a Prometheus: the catalogue, the samples built from a real decision and
real evidence summaries, and what a push sends (to an in-process HTTP server standing in for the gateway)."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lockgate.devtools.testing.registry import passing_evidence, policy_for
from lockgate.observability import prometheus as P
from lockgate.policy import PromotionInputs, decide_promotion

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODEL = "m-prom"


def decision_with(**evidence_kw: Any):
    """A real decision from the engine on the shipped gates: champion 1, challenger 2."""
    policy = policy_for(MODEL)
    evidence: dict[str, Any] = dict(passing_evidence(MODEL, "2", "1", NOW - timedelta(hours=1), **evidence_kw))
    inputs = PromotionInputs(
        model_name=MODEL, champion="1", challenger="2", previous_champion=None, evidence=evidence, policy_hash="p"
    )
    return decide_promotion(inputs, policy.model(MODEL), NOW)


def samples(points: list[P.Point], name: str) -> dict[str, float]:
    """gate (or action / role / kind) -> value for one metric."""
    out = {}
    for p in points:
        if p.name == name:
            key = p.labels.get("gate") or p.labels.get("action") or p.labels.get("role") or p.labels.get("kind") or ""
            out[key] = p.value
    return out


# --------------------------------------------------------------------------- the catalogue


def test_catalogue_names_are_valid_and_unique() -> None:
    assert len(P.METRIC_NAMES) == len(set(P.METRIC_NAMES)) >= 15
    for name in P.METRIC_NAMES:
        assert re.fullmatch(r"lockgate_[a-z0-9_]+", name), name
        spec = P.METRICS[name]
        assert spec.help and "model" in spec.labels
        assert "job" not in spec.labels and "instance" not in spec.labels  # the gateway's grouping labels
    for required in (
        "lockgate_gate_value",
        "lockgate_gate_lower",
        "lockgate_gate_upper",
        "lockgate_gate_threshold",
        "lockgate_gate_passed",
        "lockgate_gate_missing",
        "lockgate_decision",
        "lockgate_decision_timestamp_seconds",
        "lockgate_evidence_timestamp_seconds",
        "lockgate_live_ttft_p90_ms",
        "lockgate_live_tpot_p50_ms",
        "lockgate_live_error_rate",
        "lockgate_drift_share",
        "lockgate_quality_relevance",
        "lockgate_approval_pending_since_seconds",
    ):
        assert required in P.METRICS


def test_a_point_outside_the_catalogue_is_refused() -> None:
    with pytest.raises(ValueError, match="not in the metric catalogue"):
        P.Point("lockgate_nope", {"model": "m"}, 1.0)
    with pytest.raises(ValueError, match="takes labels"):
        P.Point("lockgate_drift_share", {"model": "m", "version": "1"}, 1.0)


# --------------------------------------------------------------------------- decisions


def test_gate_samples_equal_the_decision_verdicts() -> None:
    decision = decision_with(ttft_ratio=1.5)  # the benchmark TTFT gate fails
    assert decision.action == "hold"
    points = P.decision_points(decision)
    values, lows, highs = (samples(points, f"lockgate_gate_{n}") for n in ("value", "lower", "upper"))
    passed, missing, limits = (samples(points, f"lockgate_gate_{n}") for n in ("passed", "missing", "threshold"))
    assert set(missing) == {v.gate for v in decision.verdicts}
    for v in decision.verdicts:
        assert missing[v.gate] == 0.0
        assert passed[v.gate] == (1.0 if v.status == "pass" else 0.0)
        assert values[v.gate] == pytest.approx(v.value)
        if v.ci_low is not None:
            assert (lows[v.gate], highs[v.gate]) == pytest.approx((v.ci_low, v.ci_high))
        assert limits[v.gate] == pytest.approx(v.limit if v.limit is not None else v.threshold)
    assert passed["ttft_regression"] == 0.0 and values["ttft_regression"] == pytest.approx(1.5)
    assert limits["ttft_regression"] == pytest.approx(1.25)  # the ratio gate's 25% as the compared limit
    assert samples(points, "lockgate_decision") == {
        "promote": 0.0,
        "await_approval": 0.0,
        "hold": 1.0,
        "rollback": 0.0,
        "no_op": 0.0,
    }
    labels = next(p.labels for p in points if p.name == "lockgate_gate_value" and p.labels["gate"] == "ttft_regression")
    assert labels == {
        "model": MODEL,
        "version": "2",
        "gate": "ttft_regression",
        "metric": "benchmark.ttft_ms_p50",
        "subject": "challenger",
        "gate_action": "block_promotion",
    }
    drift = next(p.labels for p in points if p.name == "lockgate_gate_value" and p.labels["gate"] == "input_drift")
    assert drift["version"] == "" and drift["subject"] == "model"  # model-wide gate
    assert samples(points, "lockgate_decision_timestamp_seconds") == {"": NOW.timestamp()}
    assert samples(points, "lockgate_evidence_timestamp_seconds") == {
        k: (NOW - timedelta(hours=1)).timestamp() for k in ("benchmark", "drift", "quality", "live")
    }
    assert not samples(points, "lockgate_approval_pending_since_seconds")  # not waiting


def test_missing_evidence_has_no_value_and_a_missing_flag() -> None:
    policy = policy_for(MODEL)
    evidence: dict[str, Any] = dict(passing_evidence(MODEL, "2", "1", NOW - timedelta(hours=1)))
    evidence["live"] = None
    inputs = PromotionInputs(model_name=MODEL, champion="1", challenger="2", evidence=evidence, policy_hash="p")
    decision = decide_promotion(inputs, policy.model(MODEL), NOW)
    live_gates = {v.gate for v in decision.verdicts if v.kind == "live"}
    assert live_gates and all(decision.verdict(g).status == "missing" for g in live_gates)  # type: ignore[union-attr]
    points = P.decision_points(decision)
    for name in ("lockgate_gate_value", "lockgate_gate_lower", "lockgate_gate_upper", "lockgate_gate_passed"):
        assert not live_gates & set(samples(points, name)), name
    missing = samples(points, "lockgate_gate_missing")
    assert {g for g, v in missing.items() if v == 1.0} == live_gates
    assert live_gates <= set(samples(points, "lockgate_gate_threshold"))  # the bound is known all the same
    assert "live" not in samples(points, "lockgate_evidence_timestamp_seconds")


@dataclass(frozen=True)
class Row:
    decided_at: datetime
    action: str
    challenger: str | None
    dry_run: bool = False


def test_approval_pending_since_is_the_start_of_the_unbroken_wait() -> None:
    decision = decision_with()
    assert decision.action == "await_approval"
    h = timedelta(hours=1)
    history = [
        Row(NOW, "await_approval", "2"),  # this decision's own row
        Row(NOW - 2 * h, "await_approval", "2", dry_run=True),  # skipped
        Row(NOW - 3 * h, "await_approval", "2"),  # new evidence asked again: still the same wait
        Row(NOW - 5 * h, "await_approval", "2"),
        Row(NOW - 6 * h, "hold", "2"),  # the wait began after this
        Row(NOW - 9 * h, "await_approval", "2"),
    ]
    since = P.approval_pending_since(decision, history)
    assert since == NOW - 5 * h
    points = P.decision_points(decision, approval_pending_since=since)
    pending = [p for p in points if p.name == "lockgate_approval_pending_since_seconds"]
    assert [(p.labels, p.value) for p in pending] == [({"model": MODEL, "version": "2"}, (NOW - 5 * h).timestamp())]
    assert P.approval_pending_since(decision, []) == NOW
    assert P.approval_pending_since(decision, [Row(NOW - h, "await_approval", "3")]) == NOW  # another challenger


# --------------------------------------------------------------------------- evidence


def test_evidence_samples_per_kind() -> None:
    ev = passing_evidence(MODEL, "2", "1", NOW - timedelta(hours=2), drift_share=0.2)
    created = (NOW - timedelta(hours=2)).timestamp()
    live = P.evidence_points(ev["live"])
    ttft = {(p.labels["role"], p.labels["version"]): p.value for p in live if p.name == "lockgate_live_ttft_p90_ms"}
    assert ttft == {("challenger", "2"): 80.0, ("champion", "1"): 80.0, ("baseline", "1"): 80.0}
    assert samples(live, "lockgate_evidence_timestamp_seconds") == {"live": created}
    assert samples(live, "lockgate_evidence_valid") == {"live": 1.0}
    drift = P.evidence_points(ev["drift"])
    assert samples(drift, "lockgate_drift_share") == {"": 0.2}
    quality = P.evidence_points(ev["quality"])
    assert samples(quality, "lockgate_quality_relevance") == {"challenger": pytest.approx(0.6), "champion": 0.6}
    bench = P.evidence_points(ev["benchmark"])
    assert samples(bench, "lockgate_benchmark_ttft_p50_ms") == {"challenger": 2.0, "champion": 2.0}
    invalid = ev["drift"].model_copy(update={"valid": False, "status": "insufficient_data"})
    assert samples(P.evidence_points(invalid), "lockgate_evidence_valid") == {"drift": 0.0}
    push = P.evidence_push(ev["live"])
    assert (push.job, push.model) == ("lockgate_live", MODEL)


def test_exposition_round_trip() -> None:
    points = P.decision_points(decision_with())
    text = generate_latest(P.to_registry(points)).decode()  # type: ignore[arg-type]
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == {p.name for p in points}
    value = next(s for s in families["lockgate_gate_value"].samples if s.labels["gate"] == "relevance_regression")
    assert value.value == pytest.approx(0.0) and value.labels["version"] == "2"


# --------------------------------------------------------------------------- pushing


class _Gateway(BaseHTTPRequestHandler):
    received: list[tuple[str, str, str]] = []

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_PUT = do_POST = _record  # noqa: N815 - http.server's naming

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Any:
    _Gateway.received = []
    server = HTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Gateway.received
    server.shutdown()
    server.server_close()


def test_a_push_replaces_the_job_and_model_group(gateway: Any) -> None:
    url, received = gateway
    decision = decision_with()
    assert P.export_decision(decision, url) is True
    method, path, body = received[-1]
    assert method == "PUT"  # push, not pushadd: the group holds exactly this decision
    assert path == f"/metrics/job/lockgate_promotion/model/{MODEL}"
    families = {f.name for f in text_string_to_metric_families(body)}
    assert "lockgate_gate_passed" in families and "lockgate_decision" in families
    # a model name with a slash is base64-encoded in the path, so it stays one group of its own
    ev = passing_evidence("team/model", "2", "1", NOW)["drift"]
    assert P.export_evidence(ev, url) is True
    assert received[-1][1] == "/metrics/job/lockgate_drift/model@base64/dGVhbS9tb2RlbA=="


def test_no_gateway_configured_exports_nothing(monkeypatch: pytest.MonkeyPatch, caplog: Any, gateway: Any) -> None:
    _, received = gateway
    monkeypatch.delenv("LOCKGATE_PUSHGATEWAY_URL", raising=False)
    with caplog.at_level(logging.DEBUG, logger=P.__name__):
        assert P.export_decision(decision_with()) is False
    assert not received
    assert any(r.levelno == logging.DEBUG and "LOCKGATE_PUSHGATEWAY_URL" in r.message for r in caplog.records)
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)


def test_a_gateway_that_is_down_is_a_warning_never_an_error(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("LOCKGATE_PUSHGATEWAY_URL", f"http://127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING, logger=P.__name__):
        assert P.export_decision(decision_with()) is False
        assert P.export_evidence(passing_evidence(MODEL, "2", "1", NOW)["live"]) is False
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("could not push" in w and str(port) in w for w in warnings)
