"""Approval attestations (lockgate.registry.attestation) and how the engine judges them: pure, no MLflow."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lockgate.policy import ApprovalRecord, check_approval
from lockgate.policy.schema import load_policy
from lockgate.registry import tags as T
from lockgate.registry.adapter import approval_record
from lockgate.registry.attestation import (
    Attestation,
    matching_attestation,
    parse_attestation,
    require_mlflow_authentication,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WRITTEN = NOW - timedelta(hours=1)
MODEL, VERSION = "m", "2"
SKEW = timedelta(minutes=4)


def watched():  # noqa: ANN201
    wm = load_policy().models[0]
    return wm.model_copy(update={"name": MODEL, "approvers": ["alice", "bob"], "approval_expiry_hours": 24.0})


def version_tags(
    approval: dict[str, str], *, user: str = "alice", permission: str = "EDIT", **attested: object
) -> dict[str, str]:
    """A version's tags: `approval` and the attestation the server would write after it (overridable)."""
    fields: dict[str, object] = {
        "model": MODEL,
        "version": VERSION,
        "user": user,
        "permission": permission,
        "at": WRITTEN,
        "tags": dict(approval),
        "evidence": "H",
        **attested,
    }
    att = Attestation(**fields)  # type: ignore[arg-type]
    return {T.EVIDENCE: "H", **approval, T.APPROVAL_ATTESTATION: att.to_json()}


APPROVED_BY_ALICE = {T.APPROVAL: "approved", T.APPROVED_BY: "alice"}


def judged(tags: dict[str, str]) -> ApprovalRecord | None:
    return require_mlflow_authentication(approval_record(tags), tags, MODEL, VERSION)


def test_an_attestation_round_trips_and_anything_else_is_none() -> None:
    att = Attestation(MODEL, VERSION, "alice", "EDIT", WRITTEN, dict(APPROVED_BY_ALICE), "H")
    assert parse_attestation(att.to_json()) == att
    good = json.loads(att.to_json())
    for bad in (
        None,
        "",
        "alice|2026-03-01|2026-03-01",
        "[]",
        json.dumps({**good, "format": 2}),
        json.dumps({k: v for k, v in good.items() if k != "user"}),
        json.dumps({**good, "at": "2026-03-01T11:00:00"}),  # a server writes UTC: a naive time is not its
        json.dumps({**good, "at": "yesterday"}),
        json.dumps({**good, "tags": ["lockgate.approval"]}),
    ):
        assert parse_attestation(bad) is None, bad


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ({**APPROVED_BY_ALICE}, "no lockgate.approval_attestation tag"),
        ({**APPROVED_BY_ALICE, T.APPROVAL_ATTESTATION: "alice"}, "not an attestation"),
        (version_tags(APPROVED_BY_ALICE, version="3"), "attests m version 3, not this version"),
        (version_tags(APPROVED_BY_ALICE, model="other"), "attests other version 2"),
        # a rejection turned into an approval, an approver's name retyped, a time added: not through the server
        ({**version_tags({**APPROVED_BY_ALICE, T.APPROVAL: "rejected"}), T.APPROVAL: "approved"}, "changed after"),
        ({**version_tags(APPROVED_BY_ALICE), T.APPROVED_BY: "bob"}, "changed after the write"),
        ({**version_tags(APPROVED_BY_ALICE), T.APPROVED_AT: NOW.isoformat()}, "changed after the write"),
    ],
)
def test_an_attestation_vouches_only_for_the_tags_it_recorded(tags: dict[str, str], problem: str) -> None:
    found, why = matching_attestation(tags, MODEL, VERSION)
    assert found is None and problem in why
    record = judged(tags)
    assert record is not None and record.authenticated_as is None
    assert record.unverified_reason is not None and problem in record.unverified_reason


@pytest.mark.parametrize(
    ("tags", "authenticated_as", "reason"),
    [
        (version_tags(APPROVED_BY_ALICE), "alice", None),
        (version_tags(APPROVED_BY_ALICE, permission="MANAGE"), "alice", None),
        (version_tags(APPROVED_BY_ALICE, permission="admin"), "alice", None),
        (version_tags(APPROVED_BY_ALICE, user="bob"), None, "'alice' was written by the MLflow user 'bob'"),
        (version_tags(APPROVED_BY_ALICE, permission="READ"), None, "had READ permission on m"),
        (version_tags(APPROVED_BY_ALICE, permission="USE"), None, "had USE permission"),
        (version_tags(APPROVED_BY_ALICE, permission="NO_PERMISSIONS"), None, "EDIT, MANAGE, admin counts"),
        # a time the approver typed later than the server saw the write (a clock five minutes off is fine)
        (
            version_tags({**APPROVED_BY_ALICE, T.APPROVED_AT: (WRITTEN + timedelta(hours=2)).isoformat()}),
            None,
            "later than the MLflow server's time of the write",
        ),
        (
            version_tags({**APPROVED_BY_ALICE, T.APPROVED_AT: (WRITTEN + timedelta(minutes=4)).isoformat()}),
            "alice",
            None,
        ),
    ],
)
def test_only_the_approver_with_edit_or_more_counts(
    tags: dict[str, str], authenticated_as: str | None, reason: str | None
) -> None:
    record = judged(tags)
    assert record is not None and record.authenticated_as == authenticated_as
    if reason is None:
        assert record.unverified_reason is None and record.authenticated_via == "MLflow"
    else:
        assert record.unverified_reason is not None and reason in record.unverified_reason


def test_an_approval_airflow_vouched_for_is_left_alone() -> None:
    """The inbox writes the tags with lockgate's own MLflow user; lockgate's state database vouches for them."""
    tags = version_tags(APPROVED_BY_ALICE, user="lockgate")
    record = approval_record(tags)
    assert record is not None
    vouched = record.model_copy(update={"authenticated_as": "alice"})
    assert require_mlflow_authentication(vouched, tags, MODEL, VERSION) == vouched
    assert require_mlflow_authentication(None, tags, MODEL, VERSION) is None


def test_the_server_supplies_the_evidence_and_time_an_mlflow_ui_approval_lacks() -> None:
    tags = version_tags(APPROVED_BY_ALICE, evidence="SEEN")
    record = approval_record({**tags, T.EVIDENCE: "LATER"})  # lockgate.evidence moved on since the approval
    assert record is not None
    assert (record.evidence_hash, record.at, record.attested_by) == ("SEEN", WRITTEN, "alice")
    # without a matching attestation: the current evidence, no time (lockgate pins both on first sight)
    plain = approval_record({**APPROVED_BY_ALICE, T.EVIDENCE: "LATER"})
    assert plain is not None and (plain.evidence_hash, plain.at, plain.attested_by) == ("LATER", None, None)
    # the tags' own evidence and time win over the server's
    given = {**APPROVED_BY_ALICE, T.APPROVAL_EVIDENCE: "GIVEN", T.APPROVED_AT: "2026-03-01T10:00:00+00:00"}
    record = approval_record(version_tags(given))
    assert record is not None and record.evidence_hash == "GIVEN" and record.at == NOW - timedelta(hours=2)


def test_the_engine_counts_an_attested_approval_as_authenticated_by_mlflow() -> None:
    check = check_approval(judged(version_tags(APPROVED_BY_ALICE)), watched(), "H", NOW)
    assert check.status == "approved" and check.authenticated and check.authenticated_via == "MLflow"
    assert check.auth_label == "authenticated (MLflow: alice)"
    assert check.reason == "approved by alice: authenticated (MLflow: alice)"


@pytest.mark.parametrize(
    ("tags", "status", "reason"),
    [
        (version_tags(APPROVED_BY_ALICE, user="bob"), "invalid", "not counted: lockgate.approved_by 'alice' was"),
        ({**APPROVED_BY_ALICE, T.EVIDENCE: "H"}, "invalid", "MLflow authentication is on and no lockgate.approval"),
        # the other rules still hold for an attested approval
        (version_tags(APPROVED_BY_ALICE, evidence="OLD"), "stale", "on evidence OLD"),
        (version_tags(APPROVED_BY_ALICE, at=NOW - timedelta(hours=25)), "expired", "older than 24 h"),
        (version_tags({**APPROVED_BY_ALICE, T.APPROVED_AT: "soon"}), "invalid", "not an ISO time"),
        (version_tags({T.APPROVAL: "approved", T.APPROVED_BY: "mallory"}, user="mallory"), "unlisted", "approver"),
    ],
)
def test_the_engine_refuses_what_mlflow_does_not_vouch_for(tags: dict[str, str], status: str, reason: str) -> None:
    check = check_approval(judged(tags), watched(), "H", NOW)
    assert check.status == status and reason in check.reason and not check.authenticated


def test_a_future_approved_at_never_counts_even_attested() -> None:
    """The server's time bounds an attested approved_at; a server whose clock runs ahead is still refused."""
    ahead = NOW + timedelta(days=1)
    tags = version_tags({**APPROVED_BY_ALICE, T.APPROVED_AT: ahead.isoformat()}, at=ahead)
    check = check_approval(judged(tags), watched(), "H", NOW)
    assert check.status == "invalid" and "later than the decision time" in check.reason


def test_the_cli_needs_the_callers_own_mlflow_credentials_when_mlflow_auth_is_on(tmp_path, monkeypatch) -> None:
    from lockgate.policy.schema import ApprovalsConfig
    from lockgate.registry.commands import ApprovalError, approve, mlflow_user

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    policy = load_policy()
    policy = policy.model_copy(update={"approvals": ApprovalsConfig(mlflow_auth=True)})
    model = policy.models[0].name
    with pytest.raises(ApprovalError, match="approve with your own MLflow credentials"):
        approve(model, "2", "alice", policy=policy)  # refused before any registry call
    # MLflow's credentials file counts, as the MLflow client reads it
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_username = alice\n")
    assert mlflow_user() == "alice"
    with pytest.raises(ApprovalError, match="--by 'bob' is not the MLflow user 'alice'"):
        approve(model, "2", "bob", policy=policy)
