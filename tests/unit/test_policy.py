"""The pure decision engine: every gate branch, every decision branch, the approval rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence
from lockgate.policy import (
    ApprovalRecord,
    PromotionInputs,
    assess_evidence,
    check_approval,
    decide_promotion,
    evaluate_gate,
    evidence_hash,
    gate_kinds,
    limit_of,
)
from lockgate.policy.schema import Gate, WatchedModel, load_policy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODEL = "m"


def est(value: float, lo: float | None = None, hi: float | None = None, conf: float | None = 0.95, n: int = 100):
    if lo is None:
        return Estimate(value=value, n=n)
    return Estimate(value=value, ci_low=lo, ci_high=hi, confidence=conf, n=n)


def summary(kind: str, metrics: dict[str, MetricEvidence], **kw) -> EvidenceSummary:
    base = {
        "kind": kind,
        "model_name": MODEL,
        "challenger_version": "2",
        "champion_version": "1",
        "created_at": NOW - timedelta(hours=1),
        "metrics": metrics,
        "report_path": f"/reports/{kind}/index.html",
    }
    base.update(kw)
    return EvidenceSummary.model_validate(base)


def gate(**kw) -> Gate:
    base = {"name": "g", "metric": "benchmark.ttft_ms_p50", "threshold": 0.1}
    base.update(kw)
    return Gate.model_validate(base)


def verdict_of(g: Gate, s: EvidenceSummary | None, challenger="2", champion="1", now=NOW, max_age=48.0):
    ref = assess_evidence(g.kind, s, now, max_age, MODEL)
    return evaluate_gate(g, s, ref, challenger, champion)


# --------------------------------------------------------------------------- single gates

RATIO = {"comparison": "ratio", "confidence": 0.95}


@pytest.mark.parametrize(
    ("gate_kw", "metric", "status", "compared"),
    [
        # ratio, lower is better: the upper bound must be <= 1 + threshold
        (RATIO, MetricEvidence(ratio=est(1.0, 0.95, 1.08)), "pass", 1.08),
        (RATIO, MetricEvidence(ratio=est(1.0, 0.95, 1.10)), "pass", 1.10),  # on the limit passes
        # point value within the limit but the interval is not: compared by the bound, so it fails
        (RATIO, MetricEvidence(ratio=est(1.05, 0.98, 1.15)), "fail", 1.15),
        # ratio, higher is better: the lower bound must be >= 1 - threshold
        ({**RATIO, "direction": "higher_is_better"}, MetricEvidence(ratio=est(1.0, 0.92, 1.1)), "pass", 0.92),
        ({**RATIO, "direction": "higher_is_better"}, MetricEvidence(ratio=est(0.95, 0.85, 1.0)), "fail", 0.85),
        # difference, higher is better: lower bound >= -threshold
        (
            {"comparison": "difference", "direction": "higher_is_better", "threshold": 0.05, "confidence": 0.95},
            MetricEvidence(difference=est(-0.01, -0.04, 0.02)),
            "pass",
            -0.04,
        ),
        (
            {"comparison": "difference", "direction": "higher_is_better", "threshold": 0.05, "confidence": 0.95},
            MetricEvidence(difference=est(-0.01, -0.08, 0.06)),
            "fail",
            -0.08,
        ),
        # difference, lower is better: upper bound <= threshold
        (
            {"comparison": "difference", "threshold": 0.02},
            MetricEvidence(difference=est(0.0, -0.01, 0.01)),
            "pass",
            0.01,
        ),
        (
            {"comparison": "difference", "threshold": 0.02},
            MetricEvidence(difference=est(0.0, -0.01, 0.03)),
            "fail",
            0.03,
        ),
        # absolute on a point value (no interval, none required)
        ({"threshold": 50.0}, MetricEvidence(challenger=est(40.0)), "pass", 40.0),
        ({"threshold": 50.0}, MetricEvidence(challenger=est(60.0)), "fail", 60.0),
        # absolute with an interval though none is required: still the unfavourable bound
        ({"threshold": 50.0}, MetricEvidence(challenger=est(45.0, 40.0, 55.0)), "fail", 55.0),
        ({"threshold": 0.8, "direction": "higher_is_better"}, MetricEvidence(challenger=est(0.9)), "pass", 0.9),
        (
            {"threshold": 0.8, "direction": "higher_is_better"},
            MetricEvidence(challenger=est(0.85, 0.75, 0.95)),
            "fail",
            0.75,
        ),
    ],
)
def test_gate_compares_the_unfavourable_bound(gate_kw, metric, status, compared):
    g = gate(**gate_kw)
    v = verdict_of(g, summary("benchmark", {"ttft_ms_p50": metric}))
    assert v.status == status, v.reason
    assert v.compared == pytest.approx(compared)
    assert v.limit == pytest.approx(limit_of(g))


@pytest.mark.parametrize(
    ("metric", "reason_part"),
    [
        (MetricEvidence(ratio=est(1.0)), "has none"),  # no interval, one required
        (MetricEvidence(ratio=est(1.0, 0.9, 1.05, conf=0.8)), "80%"),  # interval below the required level
        (MetricEvidence(challenger=est(1.0)), "no ratio estimate"),
        (MetricEvidence(ratio=est(float("nan"), 0.9, 1.0)), "not a finite number"),
        (MetricEvidence(ratio=est(1.0, 0.9, float("inf"))), "not a finite number"),
    ],
)
def test_gate_missing_when_the_estimate_cannot_be_trusted(metric, reason_part):
    v = verdict_of(gate(**RATIO), summary("benchmark", {"ttft_ms_p50": metric}))
    assert v.status == "missing"
    assert reason_part in v.reason


def test_gate_accepts_a_higher_confidence_than_required():
    v = verdict_of(gate(**RATIO), summary("benchmark", {"ttft_ms_p50": MetricEvidence(ratio=est(1, 0.99, 1.01, 0.99))}))
    assert v.status == "pass"
    assert v.confidence == 0.99 and v.required_confidence == 0.95


GOOD = {"ttft_ms_p50": MetricEvidence(ratio=est(1.0, 0.95, 1.05))}


@pytest.mark.parametrize(
    ("s", "challenger", "champion", "reason_part"),
    [
        (None, "2", "1", "no benchmark evidence"),
        (summary("benchmark", GOOD, created_at=NOW - timedelta(hours=49)), "2", "1", "stale"),
        (summary("benchmark", GOOD, valid=False, status="invalid", message="cv 0.4"), "2", "1", "invalid: cv 0.4"),
        (summary("benchmark", GOOD, status="insufficient_data"), "2", "1", "insufficient_data"),
        (summary("benchmark", GOOD, model_name="other"), "2", "1", "about model 'other'"),
        (summary("drift", GOOD), "2", "1", "is a drift summary"),
        (summary("benchmark", GOOD), "3", "1", "challenger '2', the challenger is '3'"),
        (summary("benchmark", GOOD), "2", "5", "champion '1', the champion is '5'"),
        (summary("benchmark", GOOD), "2", None, "no champion to compare with"),
        (summary("benchmark", GOOD, challenger_version=None), "2", "1", "challenger None"),
        (summary("benchmark", {}), "2", "1", "no metric 'ttft_ms_p50'"),
    ],
)
def test_missing_or_stale_evidence_never_passes(s, challenger, champion, reason_part):
    v = verdict_of(gate(**RATIO), s, challenger=challenger, champion=champion)
    assert v.status == "missing"
    assert reason_part in v.reason


def test_summary_without_zone_is_read_as_utc():
    s = summary("benchmark", GOOD, created_at=(NOW - timedelta(hours=2)).replace(tzinfo=None))
    ref = assess_evidence("benchmark", s, NOW, 48, MODEL)
    assert ref.usable and ref.age_hours == pytest.approx(2.0)


def test_read_error_is_the_reason():
    ref = assess_evidence("quality", None, NOW, 48, MODEL, error="malformed evidence summary")
    assert not ref.usable and ref.reason == "malformed evidence summary"


@pytest.mark.parametrize(
    ("subject", "recorded_champion", "champion", "status"),
    [
        ("champion", "1", "1", "fail"),
        ("champion", "1", "2", "missing"),
        ("model", "1", "1", "fail"),
        ("model", None, "1", "fail"),  # a model-wide summary need not name versions
        ("model", "1", "2", "missing"),  # but one naming another champion is about older traffic
    ],
)
def test_champion_and_model_subjects(subject, recorded_champion, champion, status):
    g = gate(metric="drift.error_rate", subject=subject, threshold=0.1, action="rollback")
    s = summary(
        "drift",
        {"error_rate": MetricEvidence(champion=est(0.3), model=est(0.3))},
        champion_version=recorded_champion,
        challenger_version=None,
    )
    assert verdict_of(g, s, challenger=None, champion=champion).status == status


# --------------------------------------------------------------------------- approval


def watched(**kw) -> WatchedModel:
    base = {
        "name": MODEL,
        "approvers": ["alice", "bob"],
        "approval_expiry_hours": 24,
        "gates": [
            {"name": "ttft_regression", "metric": "benchmark.ttft_ms_p50", "comparison": "ratio",
             "threshold": 0.1, "confidence": 0.95},
            {"name": "relevance_regression", "metric": "quality.embedding_relevance", "comparison": "difference",
             "direction": "higher_is_better", "threshold": 0.05, "confidence": 0.95},
            {"name": "grounding", "metric": "quality.embedding_grounding", "comparison": "difference",
             "direction": "higher_is_better", "threshold": 0.05, "action": "warn"},
            {"name": "input_drift", "metric": "drift.drift_share", "subject": "model", "threshold": 0.3},
            {"name": "champion_error_rate", "metric": "quality.error_rate", "subject": "champion",
             "threshold": 0.2, "action": "rollback"},
        ],
    }  # fmt: skip
    base.update(kw)
    return WatchedModel.model_validate(base)


@pytest.mark.parametrize(
    ("record", "status"),
    [
        (None, "none"),
        (ApprovalRecord(value="  "), "none"),
        (ApprovalRecord(value="yes", by="alice", evidence_hash="H"), "invalid"),
        (ApprovalRecord(value="approved", evidence_hash="H"), "unlisted"),
        (ApprovalRecord(value="approved", by="mallory", evidence_hash="H"), "unlisted"),
        (ApprovalRecord(value="approved", by="Alice", evidence_hash="H"), "unlisted"),  # names are exact
        (ApprovalRecord(value="approved", by="alice", evidence_hash="OLD"), "stale"),
        (ApprovalRecord(value="approved", by="alice"), "stale"),  # given before any evidence
        (ApprovalRecord(value="approved", by="alice", evidence_hash="H", at=NOW - timedelta(hours=25)), "expired"),
        (ApprovalRecord(value="approved", by="alice", evidence_hash="H", at=NOW - timedelta(hours=23)), "approved"),
        (ApprovalRecord(value=" Approved ", by=" bob ", evidence_hash="H"), "approved"),
        (ApprovalRecord(value="rejected", by="bob", evidence_hash="H"), "rejected"),
        (ApprovalRecord(value="rejected", by="mallory", evidence_hash="H"), "unlisted"),
        # a time that can never expire never counts
        (ApprovalRecord(value="approved", by="alice", evidence_hash="H", at=NOW.replace(year=2099)), "invalid"),
        (ApprovalRecord(value="approved", by="alice", evidence_hash="H", at=NOW + timedelta(hours=1)), "invalid"),
        (ApprovalRecord(value="rejected", by="bob", evidence_hash="H", at=NOW + timedelta(days=1)), "invalid"),
        (ApprovalRecord(value="approved", by="alice", evidence_hash="H", at_text="next tuesday"), "invalid"),
        (ApprovalRecord(value="approved", by="alice", evidence_hash="OLD", at_text="2099-13-45"), "invalid"),
        # two machines' clocks differ by a little: a few minutes ahead still counts
        (ApprovalRecord(value="approved", by="alice", evidence_hash="H", at=NOW + timedelta(minutes=4)), "approved"),
        (ApprovalRecord(value="approved", by="alice", evidence_hash="H", at=NOW, at_text=NOW.isoformat()), "approved"),
    ],
)
def test_check_approval(record, status):
    assert check_approval(record, watched(), "H", NOW).status == status


@pytest.mark.parametrize(
    "name",
    [
        "\u0430lice",  # Cyrillic a
        "alic\u0435",  # Cyrillic e
        "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth
        "ali\u200bce",  # a zero-width space inside
        "alice\u200b",  # a zero-width space after (str.strip keeps it)
        "a\u0301lice",  # a combining accent
        "ALICE",
        "alice.",
    ],
)
def test_a_look_alike_of_a_listed_approver_is_unlisted(name):
    """Names are compared exactly: a homoglyph, an invisible character or another case is someone else."""
    check = check_approval(ApprovalRecord(value="approved", by=name, evidence_hash="H"), watched(), "H", NOW)
    assert check.status == "unlisted" and not check.authenticated
    listed = ApprovalRecord(value="approved", by="alice", evidence_hash="H")
    assert check_approval(listed, watched(), "H", NOW).status == "approved"


@pytest.mark.parametrize(
    ("tags", "status", "reason"),
    [
        ({"lockgate.approved_at": "2099-01-01T00:00:00+00:00"}, "invalid", "later than the decision time"),
        ({"lockgate.approved_at": "yesterday"}, "invalid", "'yesterday', which is not an ISO time"),
        ({"lockgate.approved_at": ""}, "approved", "approved by alice"),
        ({}, "approved", "approved by alice"),
    ],
)
def test_approved_at_from_the_registry_tags(tags, status, reason):
    """The adapter keeps the tag's text, so an unparseable time is refused, not read as "no time"."""
    from lockgate.registry.adapter import approval_record

    base = {"lockgate.approval": "approved", "lockgate.approved_by": "alice", "lockgate.approval_evidence": "H"}
    check = check_approval(approval_record({**base, **tags}), watched(), "H", NOW)
    assert check.status == status and reason in check.reason


def test_an_asserted_name_is_marked_unauthenticated():
    asserted = check_approval(ApprovalRecord(value="approved", by="alice", evidence_hash="H"), watched(), "H", NOW)
    assert asserted.status == "approved" and not asserted.authenticated
    assert asserted.auth_label == "unauthenticated" and "unauthenticated" in asserted.reason
    vouched = ApprovalRecord(value="approved", by="alice", evidence_hash="H", authenticated_as="alice")
    check = check_approval(vouched, watched(), "H", NOW)
    assert check.authenticated and check.auth_label == "authenticated" and check.reason == "approved by alice"
    # an authenticated user approving under another listed name is not vouched for
    other = ApprovalRecord(value="approved", by="bob", evidence_hash="H", authenticated_as="alice")
    assert check_approval(other, watched(), "H", NOW).auth_label == "unauthenticated"


def test_approval_not_required():
    wm = watched(require_approval=False, approvers=[])
    assert check_approval(None, wm, "H", NOW).status == "not_required"


# --------------------------------------------------------------------------- decisions


def all_good_evidence(**overrides) -> dict[str, EvidenceSummary | None]:
    ev: dict[str, EvidenceSummary | None] = {
        "benchmark": summary("benchmark", {"ttft_ms_p50": MetricEvidence(ratio=est(1.0, 0.95, 1.05))}),
        "quality": summary(
            "quality",
            {
                "embedding_relevance": MetricEvidence(difference=est(0.0, -0.02, 0.02)),
                "embedding_grounding": MetricEvidence(difference=est(0.0, -0.02, 0.02)),
                "error_rate": MetricEvidence(champion=est(0.01), challenger=est(0.01)),
            },
        ),
        "drift": summary("drift", {"drift_share": MetricEvidence(model=est(0.1))}),
    }
    ev.update(overrides)
    return ev


def inputs(approval=None, champion="1", challenger="2", previous=None, **ev) -> PromotionInputs:
    return PromotionInputs(
        model_name=MODEL,
        champion=champion,
        challenger=challenger,
        previous_champion=previous,
        evidence=all_good_evidence(**ev),
        approval=approval,
        policy_hash="P",
    )


def approved_on(inp: PromotionInputs, by="alice", value="approved") -> PromotionInputs:
    h = evidence_hash(inp, gate_kinds(watched().gates))
    return inp.model_copy(update={"approval": ApprovalRecord(value=value, by=by, evidence_hash=h, at=NOW)})


def test_all_gates_pass_awaits_approval():
    d = decide_promotion(inputs(), watched(), NOW)
    assert d.action == "await_approval"
    assert d.subject_version == "2" and d.subject_status == "awaiting_approval"
    assert {v.gate: v.status for v in d.verdicts} == {
        "ttft_regression": "pass",
        "relevance_regression": "pass",
        "grounding": "pass",
        "input_drift": "pass",
        "champion_error_rate": "pass",
    }
    assert d.approval is not None and d.approval.status == "none"
    assert d.policy_hash == "P" and len(d.evidence_hash) == 16
    assert d.decided_at == NOW
    assert all(ref.usable for ref in d.evidence.values())


def test_listed_approval_on_current_evidence_promotes():
    d = decide_promotion(approved_on(inputs()), watched(), NOW)
    assert d.action == "promote" and d.target == "2" and d.subject_status == "promoted"
    assert d.moves


def test_unlisted_approval_keeps_waiting():
    d = decide_promotion(approved_on(inputs(), by="mallory"), watched(), NOW)
    assert d.action == "await_approval"
    assert d.approval is not None and d.approval.status == "unlisted" and d.approval.by == "mallory"


def test_listed_rejection_holds():
    d = decide_promotion(approved_on(inputs(), by="bob", value="rejected"), watched(), NOW)
    assert d.action == "hold" and d.subject_status == "rejected"


def test_new_evidence_asks_again():
    before = approved_on(inputs())
    newer = summary("drift", {"drift_share": MetricEvidence(model=est(0.12))})
    after = before.model_copy(update={"evidence": {**before.evidence, "drift": newer}})
    d = decide_promotion(after, watched(), NOW)
    assert d.action == "await_approval"
    assert d.approval is not None and d.approval.status == "stale"
    assert d.evidence_hash != before.approval.evidence_hash


@pytest.mark.parametrize(
    "change",
    [
        {"champion": "9"},
        {"challenger": "3"},
        {"policy_hash": "Q"},
    ],
)
def test_evidence_hash_covers_versions_and_policy(change):
    inp = inputs()
    kinds = gate_kinds(watched().gates)
    assert evidence_hash(inp, kinds) != evidence_hash(inp.model_copy(update=change), kinds)
    assert evidence_hash(inp, kinds) == evidence_hash(inputs(), kinds)  # deterministic


def test_no_approval_required_promotes():
    d = decide_promotion(inputs(), watched(require_approval=False, approvers=[]), NOW)
    assert d.action == "promote" and d.approval is not None and d.approval.status == "not_required"


@pytest.mark.parametrize(
    ("ev", "gate_name"),
    [
        ({"benchmark": summary("benchmark", {"ttft_ms_p50": MetricEvidence(ratio=est(1.2, 1.15, 1.3))})},
         "ttft_regression"),
        ({"benchmark": None}, "ttft_regression"),
        ({"quality": summary("quality", {"embedding_relevance": MetricEvidence(difference=est(-0.1, -0.15, -0.05)),
                                         "embedding_grounding": MetricEvidence(difference=est(0, -0.01, 0.01))})},
         "relevance_regression"),
        ({"drift": summary("drift", {"drift_share": MetricEvidence(model=est(0.5))})}, "input_drift"),
        ({"drift": summary("drift", {"drift_share": MetricEvidence(model=est(0.1))},
                           created_at=NOW - timedelta(days=3))}, "input_drift"),
    ],
)  # fmt: skip
def test_failing_or_missing_blocking_gate_holds(ev, gate_name):
    d = decide_promotion(approved_on(inputs(**ev)), watched(), NOW)
    assert d.action == "hold" and d.subject_status == "gates_failed"
    v = d.verdict(gate_name)
    assert v is not None and v.status in ("fail", "missing") and v.blocks
    assert any(r.startswith(f"blocked: {gate_name}") for r in d.reasons)
    assert d.approval is None  # not even looked at


def test_warn_gate_is_reported_but_does_not_block():
    q = summary(
        "quality",
        {
            "embedding_relevance": MetricEvidence(difference=est(0.0, -0.02, 0.02)),
            "embedding_grounding": MetricEvidence(difference=est(-0.2, -0.3, -0.1)),
            "error_rate": MetricEvidence(champion=est(0.01)),
        },
    )
    d = decide_promotion(approved_on(inputs(quality=q)), watched(), NOW)
    assert d.action == "promote"
    v = d.verdict("grounding")
    assert v is not None and v.status == "fail" and not v.blocks
    assert any(r.startswith("warning: grounding") for r in d.reasons)


BAD_CHAMPION = summary(
    "quality",
    {
        "embedding_relevance": MetricEvidence(difference=est(0.0, -0.02, 0.02)),
        "embedding_grounding": MetricEvidence(difference=est(0.0, -0.02, 0.02)),
        "error_rate": MetricEvidence(champion=est(0.5)),
    },
)


def test_champion_breaching_rollback_gate_rolls_back():
    d = decide_promotion(inputs(previous="0", quality=BAD_CHAMPION), watched(), NOW)
    assert d.action == "rollback" and d.target == "0"
    assert d.subject_version == "1" and d.subject_status == "rolled_back"
    assert [v.gate for v in d.verdicts] == ["champion_error_rate"]


def test_rollback_wins_over_an_approved_challenger():
    d = decide_promotion(approved_on(inputs(previous="0", quality=BAD_CHAMPION)), watched(), NOW)
    assert d.action == "rollback"


def test_breach_without_previous_champion_and_no_challenger_holds():
    d = decide_promotion(inputs(challenger=None, quality=BAD_CHAMPION), watched(), NOW)
    assert d.action == "hold" and d.target is None
    assert "no previous_champion" in d.reasons[0]


def test_breach_without_previous_champion_holds_with_an_alert_and_still_evaluates_the_challenger():
    d = decide_promotion(inputs(quality=BAD_CHAMPION), watched(), NOW)
    # a canary compared with a degraded champion clears a lowered bar: hold, say why, show its verdicts
    assert d.action == "hold"
    assert any("ALERT" in r and "no rollback target" in r and "quality.error_rate" in r for r in d.reasons)
    assert d.verdict("champion_error_rate").status == "fail"
    assert any(v.action == "block_promotion" for v in d.verdicts)


def test_missing_rollback_evidence_never_rolls_back():
    d = decide_promotion(inputs(challenger=None, previous="0", quality=None), watched(), NOW)
    assert d.action == "no_op"
    v = d.verdict("champion_error_rate")
    assert v is not None and v.status == "missing"


def test_previous_equal_to_champion_is_no_target():
    d = decide_promotion(inputs(challenger=None, previous="1", quality=BAD_CHAMPION), watched(), NOW)
    assert d.action == "hold"


@pytest.mark.parametrize(("challenger", "why"), [(None, "no challenger"), ("1", "already is the champion")])
def test_nothing_to_promote_is_no_op(challenger, why):
    d = decide_promotion(inputs(challenger=challenger), watched(), NOW)
    assert d.action == "no_op" and not d.moves
    assert why in d.reasons[-1]


def test_no_champion_rollback_gates_are_missing_and_comparisons_hold():
    d = decide_promotion(inputs(champion=None), watched(), NOW)
    assert d.verdict("champion_error_rate").status == "missing"
    assert d.verdict("ttft_regression").status == "missing"
    assert d.action == "hold"


def test_policy_for_another_model_is_refused():
    with pytest.raises(ValueError, match="applied to"):
        decide_promotion(inputs(), watched(name="other"), NOW)


def test_decision_round_trips_through_json():
    d = decide_promotion(approved_on(inputs()), watched(), NOW)
    from lockgate.policy import Decision

    assert Decision.model_validate_json(d.model_dump_json()) == d


def test_default_policy_gates_are_decidable():
    """The shipped policy keeps the gate names the demo scenarios refer to."""
    policy = load_policy()
    wm = policy.model("lockgate-demo")
    names = {g.name for g in wm.gates}
    assert {"ttft_regression", "relevance_regression", "input_drift"} <= names
    d = decide_promotion(
        PromotionInputs(model_name="lockgate-demo", champion="1", challenger="2", policy_hash=policy.policy_hash),
        wm,
        NOW,
    )
    assert d.action == "hold"  # no evidence at all never passes
    assert all(v.status == "missing" for v in d.verdicts)


# --------------------------------------------------------------------------- a version number used again


def test_evidence_made_before_the_version_was_registered_is_about_an_earlier_version_with_that_number() -> None:
    """A model deleted and registered again numbers its versions from 1 again: the summaries of the
    earlier "2" and "1" match the numbers but were made before those versions existed."""
    g = gate(**RATIO)
    s = summary("benchmark", {"ttft_ms_p50": MetricEvidence(ratio=est(1.0, 0.95, 1.05))})  # made an hour ago
    ref = assess_evidence(g.kind, s, NOW, 48.0, MODEL)
    assert evaluate_gate(g, s, ref, "2", "1", {"2": NOW - timedelta(hours=2), "1": NOW - timedelta(days=9)}).status == (
        "pass"
    )
    for registered in ({"2": NOW - timedelta(minutes=30)}, {"1": NOW - timedelta(minutes=10)}):
        v = evaluate_gate(g, s, ref, "2", "1", registered)
        role = "challenger" if "2" in registered else "champion"
        assert v.status == "missing", registered
        assert f"predates the registration of {role}" in v.reason and "an earlier version numbered" in v.reason
    # the registry's and the job's clocks may differ by minutes
    assert evaluate_gate(g, s, ref, "2", "1", {"2": NOW - timedelta(minutes=58)}).status == "pass"
    # a model-wide estimate (drift) is about the champion's traffic
    drift = gate(name="d", metric="drift.drift_share", comparison="absolute", subject="model", threshold=0.3)
    d = summary("drift", {"drift_share": MetricEvidence(model=est(0.1))})
    d_ref = assess_evidence(drift.kind, d, NOW, 48.0, MODEL)
    assert evaluate_gate(drift, d, d_ref, "2", "1", {"1": NOW - timedelta(minutes=5)}).status == "missing"
    assert evaluate_gate(drift, d, d_ref, "2", "1", {"2": NOW - timedelta(minutes=5)}).status == "pass"


def test_a_decision_never_promotes_on_evidence_of_an_earlier_version_with_the_same_number() -> None:
    fresh = decide_promotion(inputs(), watched(), NOW)
    assert fresh.action == "await_approval" and all(v.status == "pass" for v in fresh.verdicts), fresh.reasons
    again = inputs().model_copy(update={"registered_at": {"2": NOW - timedelta(minutes=20)}})
    decision = decide_promotion(again, watched(), NOW)
    assert decision.action == "hold"
    assert any("predates the registration of challenger '2'" in v.reason for v in decision.verdicts)
