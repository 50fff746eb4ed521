"""The decision page: gates with their intervals and evidence links, approval instructions, history; all escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence
from lockgate.policy import ApprovalRecord, PromotionInputs, decide_promotion
from lockgate.policy.schema import WatchedModel
from lockgate.registry.audit import AuditEntry, DecisionRow
from lockgate.reports.decision import render_decision_page

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"


def decision(tmp_path, approval=None):
    report = tmp_path / "reports" / "benchmark" / "m" / "run1" / "index.html"
    summary = EvidenceSummary(
        kind="benchmark",
        model_name="m",
        challenger_version="2",
        champion_version="1",
        created_at=NOW - timedelta(hours=1),
        metrics={"ttft_ms_p50": MetricEvidence(ratio=Estimate(value=1.0, ci_low=0.9, ci_high=1.05, confidence=0.95))},
        report_path=str(report),
    )
    wm = WatchedModel(
        name="m",
        approvers=["alice"],
        gates=[
            {"name": "ttft_regression", "metric": "benchmark.ttft_ms_p50", "comparison": "ratio",
             "threshold": 0.1, "confidence": 0.95},
        ],
    )  # fmt: skip
    inputs = PromotionInputs(
        model_name="m",
        champion="1",
        challenger="2",
        evidence={"benchmark": summary},
        policy_hash="P",
        approval=approval,
    )
    return decide_promotion(inputs, wm, NOW).model_copy(update={"run_key": "run-1", "outcome": "tagged"})


def render(tmp_path, d, **kw):
    page_dir = tmp_path / "reports" / "decision" / "m" / "run-1"
    return render_decision_page(d, page_dir=page_dir, reports_dir=tmp_path / "reports", approvers=["alice"], **kw)


def test_page_shows_gates_evidence_and_how_to_approve(tmp_path):
    d = decision(tmp_path)
    html = render(tmp_path, d)
    assert "ttft_regression" in html and "[0.9, 1.05] @ 95%" in html and "challenger / champion ≤ 1.1" in html
    assert 'href="../../../benchmark/m/run1/index.html"' in html  # relative link to the evidence report
    assert "lockgate.approval=approved" in html and "lockgate.approved_by=&lt;your name&gt;" in html
    assert "lockgate approve m 2 --by YOUR_NAME" in html
    assert d.evidence_hash in html and "await_approval" in html


def test_everything_from_data_is_escaped(tmp_path):
    d = decision(tmp_path, approval=ApprovalRecord(value="approved", by=EVIL, evidence_hash="x"))
    d = d.model_copy(update={"reasons": [*d.reasons, EVIL]})
    evidence = {k: v.model_copy(update={"report_path": "javascript:alert(1)"}) for k, v in d.evidence.items()}
    d = d.model_copy(update={"evidence": evidence})
    history = [
        DecisionRow(
            model_name="m",
            run_key=EVIL,
            decided_at=NOW,
            action="hold",
            outcome=EVIL,
            dry_run=False,
            champion="1",
            challenger="2",
            target=None,
            evidence_hash="e",
            policy_hash="p",
            report_path=None,
            reasons=[],
        )
    ]
    audit = [AuditEntry(model_name="m", kind="approval_refused", actor=EVIL, message=EVIL, at=NOW)]
    html = render(tmp_path, d, history=history, audit=audit)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="javascript' not in html


def test_no_approval_section_without_a_challenger(tmp_path):
    d = decision(tmp_path).model_copy(update={"challenger": None, "action": "no_op"})
    html = render(tmp_path, d)
    assert "lockgate approve" not in html


def test_page_puts_benchmark_and_canary_side_by_side_and_says_where_they_disagree(tmp_path):
    bench = EvidenceSummary(
        kind="benchmark", model_name="m", challenger_version="2", champion_version="1",
        created_at=NOW - timedelta(hours=1),
        metrics={"ttft_ms_p50": MetricEvidence(ratio=Estimate(value=1.01, ci_low=0.97, ci_high=1.05, confidence=0.95))},
    )  # fmt: skip
    live_report = tmp_path / "reports" / "live" / "m" / "run1" / "report.html"
    live = EvidenceSummary(
        kind="live", model_name="m", challenger_version="2", champion_version="1",
        created_at=NOW - timedelta(hours=1), report_path=str(live_report),
        metrics={"ttft_ms_p90": MetricEvidence(ratio=Estimate(value=1.38, ci_low=1.31, ci_high=1.45, confidence=0.95))},
    )  # fmt: skip
    wm = WatchedModel(
        name="m", approvers=["alice"],
        gates=[
            {"name": "ttft_regression", "metric": "benchmark.ttft_ms_p50", "comparison": "ratio",
             "threshold": 0.1, "confidence": 0.95},
            {"name": "live_ttft_regression", "metric": "live.ttft_ms_p90", "comparison": "ratio",
             "threshold": 0.1, "confidence": 0.95},
        ],
    )  # fmt: skip
    inputs = PromotionInputs(
        model_name="m", champion="1", challenger="2", evidence={"benchmark": bench, "live": live}, policy_hash="P"
    )
    d = decide_promotion(inputs, wm, NOW).model_copy(update={"run_key": "run-1", "outcome": "tagged"})
    assert d.action == "hold"
    html = render(tmp_path, d)
    assert "Benchmark and production canary" in html
    assert "benchmark: no difference (ttft p50 +1.0% [-3.0%, +5.0%]); canary: ttft p90 +38.0% [+31.0%, +45.0%]" in html
    # the sentence comes before the gates table
    assert html.index("canary: ttft p90") < html.index("<h2>Gates</h2>")
    assert 'href="../../../live/m/run1/report.html"' in html


def test_page_draws_each_gate_against_its_limit_above_the_table(tmp_path):
    d = decision(tmp_path)
    missing = d.verdicts[0].model_copy(
        update={"gate": EVIL, "metric": "live.error_rate", "comparison": "difference", "status": "missing",
                "value": None, "ci_low": None, "ci_high": None, "limit": 0.01}
    )  # fmt: skip
    warned = d.verdicts[0].model_copy(update={"gate": "tps_warning", "action": "warn", "status": "fail"})
    d = d.model_copy(update={"verdicts": [*d.verdicts, missing, warned]})
    html = render(tmp_path, d)
    plot = html[html.index('<svg xmlns="http://www.w3.org/2000/svg" class="chart forest-plot"') :]
    plot = plot[: plot.index("</svg>")]
    assert html.index("chart forest-plot") < html.index("<table", html.index("<h2>Gates</h2>"))
    assert [c for c in ("status-pass", "status-missing", "status-warn") if c in plot] == [
        "status-pass",
        "status-missing",
        "status-warn",
    ]
    assert plot.count('class="forest-row') == 3 and plot.count('class="limit"') == 3
    assert "ttft_regression · benchmark.ttft_ms_p50: 1 [0.9, 1.05]; limit ≤ 1.1; pass" in plot
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; · live.error_rate: no value" in plot


def test_page_names_who_mlflow_authenticated(tmp_path):
    evidence = decision(tmp_path).evidence_hash
    attested = ApprovalRecord(
        value="approved", by="alice", evidence_hash=evidence, authenticated_as="alice", authenticated_via="MLflow"
    )
    html = render(tmp_path, decision(tmp_path, approval=attested))
    assert "approved by alice: authenticated (MLflow: alice)" in html
    refused = ApprovalRecord(
        value="approved", by="alice", evidence_hash=evidence, unverified_reason="written by the MLflow user 'bob'"
    )
    html = render(tmp_path, decision(tmp_path, approval=refused))
    assert "not counted: written by the MLflow user &#39;bob&#39;" in html


def test_page_tells_how_to_approve_with_mlflow_authentication(tmp_path):
    html = render(tmp_path, decision(tmp_path), mlflow_auth=True)
    assert "lockgate approve m 2\n" in html or "lockgate approve m 2<" in html
    assert "--by YOUR_NAME" not in html and "your own MLflow credentials" in html
    assert "authenticated (MLflow: &lt;you&gt;)" in html and "recorded as unauthenticated" not in html
