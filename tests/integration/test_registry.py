"""The registry adapter, approvals, moves, the audit trail and the lock, on a real MLflow registry (SQLite store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lockgate.devtools.testing.registry import (
    passing_evidence,
    policy_for,
    register_stub_version,
    sqlite_mlflow_store,
    throwaway_pg_database,
    write_evidence,
)
from lockgate.errors import ConcurrentMoveError, ServiceUnavailableError, UnknownModelVersionError
from lockgate.jobs.context import RunContext
from lockgate.jobs.promotion import gather_inputs, run_promotion
from lockgate.policy import Decision, decide_promotion
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry, RegistryState, normalise_version
from lockgate.registry.audit import (
    AuditEntry,
    audit_table,
    decisions_table,
    list_audit,
    list_decisions,
    list_intents,
    model_lock,
    record_audit,
    replay_audit,
    state_engine,
)
from lockgate.registry.commands import ApprovalError, approve, model_status
from lockgate.registry.moves import MoveContext, apply_decision, check_unchanged
from lockgate.reports.index import list_reports
from lockgate.reports.links import report_path, report_url

NOW = datetime.now(UTC).replace(microsecond=0)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> str:
    """One SQLite MLflow store for the module (creating one costs ~10 s); every test uses its own model."""
    home = tmp_path_factory.mktemp("registry_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        uri = sqlite_mlflow_store(home / "mlflow.db")
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        register_stub_version("warm-up", uri)
        yield uri


@pytest.fixture(scope="module")
def own_pg() -> str:
    """A PostgreSQL database of this module's own: its lockgate tables do not meet other tests' rows."""
    admin = os.environ.get("LOCKGATE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        with throwaway_pg_database(admin) as url:
            yield url
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed at {admin} (LOCKGATE_TEST_PG_URL): {exc}", pytrace=False)


@pytest.fixture
def registry(mlflow_uri) -> ModelRegistry:
    return ModelRegistry(mlflow_uri)


@pytest.fixture
def env(tmp_path, monkeypatch, mlflow_uri) -> Path:
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOCKGATE_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("LOCKGATE_STATE_DB_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    return tmp_path / "reports"


class Story:
    """A model with v1 as champion and v2 as challenger, and helpers to drive promotions."""

    def __init__(self, registry: ModelRegistry, reports: Path, state_url: str) -> None:
        self.registry = registry
        self.reports = reports
        self.state_url = state_url
        self.name = f"m-{uuid.uuid4().hex[:8]}"
        self.v1 = register_stub_version(self.name, registry.uri, alias="champion")
        self.v2 = register_stub_version(self.name, registry.uri, alias="challenger")
        # Evidence is made after the versions it is about were registered (the gates check it).
        self.evidence_at = datetime.now(UTC).replace(microsecond=0)
        self.policy = policy_for(self.name)

    def evidence(self, challenger=None, champion=None, **kw):
        challenger = challenger if challenger is not None else self.v2
        champion = champion if champion is not None else self.v1
        return write_evidence(
            self.reports,
            passing_evidence(self.name, challenger, champion, self.evidence_at, **kw),
            self.state_url,
        )

    def run(self, run_key: str, **kw):
        return run_promotion(
            RunContext(self.name, run_key=run_key, now=kw.pop("now", NOW)),
            policy=self.policy,
            registry=kw.pop("registry", self.registry),
            state_url=self.state_url,
            reports_dir=self.reports,
            **kw,
        )

    def approve(self, by="alice", **kw):
        kw.setdefault("version", self.v2)
        # The story's clock, as its runs use: the engine refuses an approved_at more than 5 minutes
        # ahead of the decision time, and NOW is fixed when this module is imported, minutes before
        # these tests run in a full suite.
        kw.setdefault("now", NOW)
        return approve(
            self.name, kw.pop("version"), by, policy=self.policy, registry=self.registry, state_url=self.state_url, **kw
        )

    def state(self) -> RegistryState:
        return self.registry.state(self.name)

    def tags(self, version) -> dict[str, str]:
        return self.registry.version_tags(self.name, version)

    def audit(self, kind=None):
        return list_audit(state_engine(self.state_url), self.name, kind=kind)

    def counts(self) -> tuple[int, int]:
        engine = state_engine(self.state_url)
        with engine.connect() as conn:
            a = conn.execute(sa.select(sa.func.count()).select_from(audit_table)).scalar_one()
            d = conn.execute(sa.select(sa.func.count()).select_from(decisions_table)).scalar_one()
        return a, d


@pytest.fixture
def story(registry, env, tmp_path) -> Story:
    return Story(registry, env, f"sqlite:///{tmp_path / 'state.db'}")


# --------------------------------------------------------------------------- adapter


@pytest.mark.parametrize(("raw", "expected"), [(1, "1"), ("2", "2"), (" 3 ", "3"), (None, None), ("", None)])
def test_normalise_version(raw, expected):
    assert normalise_version(raw) == expected


def test_state_and_idempotent_writes(story):
    s = story.state()
    assert s == RegistryState(champion=story.v1, challenger=story.v2, previous_champion=None)
    assert isinstance(s.champion, str)  # SQLite gives int; the adapter gives str
    assert story.registry.set_alias(story.name, "previous_champion", story.v1) is True
    assert story.registry.set_alias(story.name, "previous_champion", story.v1) is False
    assert story.registry.delete_alias(story.name, "previous_champion") is True
    assert story.registry.delete_alias(story.name, "previous_champion") is False
    assert story.registry.set_tags(story.name, story.v2, {"lockgate.x": "1", "lockgate.y": None}) == {"lockgate.x": "1"}
    assert story.registry.set_tags(story.name, story.v2, {"lockgate.x": "1"}) == {}
    assert story.registry.set_tags(story.name, story.v2, {"lockgate.x": None}) == {"lockgate.x": None}
    assert [v for v, _ in story.registry.versions_with_status(story.name, "evaluating")] == [story.v2, story.v1]


def test_unknown_model_and_version(registry):
    with pytest.raises(UnknownModelVersionError):
        registry.state("no-such-model")
    with pytest.raises(UnknownModelVersionError):
        registry.version_tags("warm-up", "999")


# --------------------------------------------------------------------------- the promotion story


def test_gates_pass_then_listed_approval_promotes(story):
    story.evidence()
    d = story.run("r1")
    assert d.action == "await_approval" and d.outcome == "tagged"
    tags = story.tags(story.v2)
    assert tags[T.STATUS] == "awaiting_approval"
    assert tags[T.EVIDENCE] == d.evidence_hash and tags[T.POLICY] == story.policy.policy_hash
    # A URL of the plugin's page (the MLflow UI is read on other machines), not a file path.
    assert tags[T.DECISION_REPORT] == report_url(d.report_path)
    assert tags[T.DECISION_REPORT].startswith("http://127.0.0.1:8080/lockgate/reports/decision/")
    assert report_path(tags[T.DECISION_REPORT]) == Path(d.report_path) and Path(d.report_path).is_file()
    saved = Decision.model_validate_json((Path(d.report_path).parent / "decision.json").read_text())
    assert saved.action == "await_approval" and saved.evidence_hash == d.evidence_hash
    assert story.state().champion == story.v1  # nothing moved without an approval

    story.approve("alice")
    d2 = story.run("r2")
    assert d2.action == "promote" and d2.outcome == "moved"
    assert story.state() == RegistryState(champion=story.v2, challenger=None, previous_champion=story.v1)
    tags = story.tags(story.v2)
    assert tags[T.STATUS] == "promoted" and tags[T.PROMOTED_BY] == "alice" and tags[T.PROMOTED_FROM] == story.v1
    assert story.tags(story.v1)[T.REPLACED_BY] == story.v2
    moves = story.audit("alias_move")
    champion_move = next(a for a in moves if a.alias == "champion")
    assert (champion_move.from_version, champion_move.to_version) == (story.v1, story.v2)
    assert champion_move.approved_by == "alice" and champion_move.actor == "lockgate"
    assert champion_move.evidence_hash == d.evidence_hash and champion_move.policy_hash == story.policy.policy_hash
    assert {a.alias for a in moves} == {"champion", "previous_champion"}
    assert [a.kind for a in story.audit("approval")] == ["approval"]  # the CLI's and the job's rows are one
    reports = list_reports(state_engine(story.state_url), kind="decision", model_name=story.name)
    assert {r.run_key for r in reports} == {"r1", "r2"}
    assert next(r for r in reports if r.run_key == "r2").status == "promote"


def test_a_champion_moved_by_hand_is_recorded_as_outside_lockgate_and_said_first(story):
    story.evidence()
    story.run("r1")
    story.approve("alice")
    assert story.run("r2").outcome == "moved"  # lockgate moved champion v1 -> v2
    # Someone clicks MLflow's "Promote model" (or calls the API): champion back to v1, no gate.
    story.registry.set_alias(story.name, "champion", story.v1)
    d = story.run("r3")
    (outside,) = [a for a in story.audit("alias_move") if a.actor == "outside lockgate"]
    assert (outside.alias, outside.from_version, outside.to_version, outside.run_key) == (
        "champion",
        story.v2,
        story.v1,
        "r3",
    )
    assert outside.approved_by is None and "no gate and no approval" in (outside.message or "")
    assert d.reasons[0].startswith(f"the champion was moved from {story.v2} to {story.v1} outside lockgate")
    page = Path(d.report_path).read_text()
    assert "outside lockgate" in page
    # The trail still replays to the registry, and a rerun records the move once.
    start = {"champion": story.v1, "challenger": story.v2, "previous_champion": None}
    assert replay_audit(story.audit(), start)["champion"] == story.state().champion == story.v1
    story.run("r3")
    story.run("r4")
    assert len([a for a in story.audit("alias_move") if a.actor == "outside lockgate"]) == 1


def test_a_model_deleted_and_registered_again_starts_anew_not_outside_lockgate(story):
    from mlflow import MlflowClient

    story.evidence()
    story.run("r1")
    story.approve("alice")
    assert story.run("r2").outcome == "moved"  # the trail leaves champion at v2
    # As the demo starts each story: the registered model deleted, then registered again.
    MlflowClient(tracking_uri=story.registry.uri, registry_uri=story.registry.uri).delete_registered_model(story.name)
    again = register_stub_version(story.name, story.registry.uri, alias="champion")
    register_stub_version(story.name, story.registry.uri, alias="challenger")
    story.evidence(challenger="2", champion=again)
    story.run("r3")
    assert [a for a in story.audit() if a.actor == "outside lockgate"] == []


def test_the_champion_found_before_lockgates_first_move_is_its_starting_point(story):
    # No audit row for the model yet: v1 was made champion by a person before lockgate watched it.
    story.evidence()
    story.run("r1")
    assert [a for a in story.audit() if a.actor == "outside lockgate"] == []


def test_repeating_a_run_changes_nothing(story):
    story.evidence()
    story.run("r1")
    story.approve("bob")
    story.run("r2")
    state, counts = story.state(), story.counts()
    page = report_path(story.tags(story.v2)[T.DECISION_REPORT]).read_text()
    for _ in range(2):
        again = story.run("r2")
        assert again.action == "no_op"
    assert story.state() == state
    assert story.counts() == counts
    assert report_path(story.tags(story.v2)[T.DECISION_REPORT]).read_text() == page  # the promotion's page is kept
    rows = list_decisions(state_engine(story.state_url), story.name)
    assert [(r.run_key, r.action) for r in rows] == [("r2", "promote"), ("r1", "await_approval")]
    # an await_approval run repeated: same tags, same single row
    other = Story(story.registry, story.reports, story.state_url)
    other.evidence()
    other.run("x")
    before = other.counts()
    assert other.run("x").outcome == "unchanged"
    assert other.counts() == before


def test_unlisted_approval_in_the_ui_is_refused_and_recorded(story):
    story.evidence()
    d = story.run("r1")
    story.registry.set_tags(story.name, story.v2, {T.APPROVAL: "approved", T.APPROVED_BY: "mallory"})
    d2 = story.run("r2")
    assert d2.action == "await_approval" and d2.approval.status == "unlisted"
    assert story.state().champion == story.v1
    refused = story.audit("approval_refused")
    assert len(refused) == 1 and refused[0].actor == "mallory" and refused[0].version == story.v2
    tags = story.tags(story.v2)
    assert T.APPROVAL not in tags and T.APPROVED_BY not in tags  # cleared: a listed approver is asked
    assert "mallory" in tags[T.PREVIOUS_APPROVAL] and tags[T.EVIDENCE] == d.evidence_hash


def test_unlisted_approval_with_the_cli_sets_nothing(story):
    story.evidence()
    story.run("r1")
    with pytest.raises(ApprovalError, match="not an approver") as info:
        story.approve("mallory")
    assert info.value.code == "approval_refused"
    assert T.APPROVAL not in story.tags(story.v2)
    assert [a.actor for a in story.audit("approval_refused")] == ["mallory"]


def test_approve_refuses_what_cannot_count(story):
    with pytest.raises(ApprovalError, match="no decision yet"):
        story.approve("alice")  # no evidence has been decided on
    with pytest.raises(ApprovalError, match="not the challenger"):
        approve(story.name, story.v1, "alice", policy=story.policy, registry=story.registry, state_url=story.state_url)
    with pytest.raises(UnknownModelVersionError):
        approve(story.name, "99", "alice", policy=story.policy, registry=story.registry, state_url=story.state_url)


def test_evidence_changed_after_approval_asks_again(story):
    story.evidence()
    d1 = story.run("r1")
    story.approve("alice")
    story.evidence(tag="newer")  # a new quality/drift/benchmark run
    d2 = story.run("r2")
    assert d2.action == "await_approval" and d2.approval.status == "stale"
    assert d2.evidence_hash != d1.evidence_hash
    assert story.state().champion == story.v1
    tags = story.tags(story.v2)
    assert T.APPROVAL not in tags and tags[T.EVIDENCE] == d2.evidence_hash
    assert tags[T.STATUS] == "awaiting_approval"
    reset = story.audit("approval_reset")
    assert len(reset) == 1 and reset[0].actor == "alice" and "asked again" in reset[0].message
    story.approve("alice")
    assert story.run("r3").action == "promote"
    assert story.state().champion == story.v2


def test_approval_in_the_ui_is_bound_to_the_evidence_shown(story):
    story.evidence()
    d1 = story.run("r1")
    story.registry.set_tags(story.name, story.v2, {T.APPROVAL: "approved", T.APPROVED_BY: "bob"})
    d2 = story.run("r2")
    assert d2.action == "promote"
    tags = story.tags(story.v2)
    assert tags[T.APPROVAL_EVIDENCE] == d1.evidence_hash and T.APPROVED_AT in tags


def test_expired_approval_asks_again(story):
    story.evidence()
    story.run("r1")
    story.approve("alice", now=NOW - timedelta(hours=100))
    d = story.run("r2")
    assert d.action == "await_approval" and d.approval.status == "expired"


def test_listed_rejection_holds_and_is_recorded(story):
    story.evidence()
    story.run("r1")
    story.approve("bob", reject=True)
    d = story.run("r2")
    assert d.action == "hold" and d.subject_status == "rejected"
    assert story.tags(story.v2)[T.STATUS] == "rejected"
    assert story.state().champion == story.v1
    assert [a.actor for a in story.audit("rejection")] == ["bob"]


def test_failing_gate_holds_with_gates_failed(story):
    story.evidence(ttft_ratio=1.5)
    d = story.run("r1")
    assert d.action == "hold" and d.verdict("ttft_regression").status == "fail"
    assert story.tags(story.v2)[T.STATUS] == "gates_failed"
    assert story.state().champion == story.v1


def test_champion_breaching_rollback_gate_is_rolled_back(story):
    story.evidence()
    story.run("r1")
    story.approve("alice")
    story.run("r2")  # v2 is champion, v1 previous
    # v2's own traffic: an error rate beyond the rollback gate
    story.evidence(challenger="", champion=story.v2, champion_error_rate=0.5)
    d = story.run("r3")
    assert d.action == "rollback" and d.target == story.v1 and d.outcome == "moved"
    assert story.state() == RegistryState(champion=story.v1, challenger=None, previous_champion=None)
    tags = story.tags(story.v2)
    assert tags[T.STATUS] == "rolled_back" and tags[T.ROLLED_BACK_TO] == story.v1
    restored = story.tags(story.v1)
    assert restored[T.STATUS] == "promoted" and T.REPLACED_BY not in restored
    move = next(a for a in story.audit("alias_move") if a.to_version == story.v1 and a.alias == "champion")
    assert move.from_version == story.v2 and move.message.startswith("rollback")
    # repeated: nothing more (the evidence is about v2, which is no longer the champion)
    counts = story.counts()
    assert story.run("r3").action == "no_op"
    assert story.state().champion == story.v1 and story.counts()[0] == counts[0]


def test_dry_run_writes_nothing_to_the_registry(story):
    story.evidence()
    before = story.tags(story.v2)
    d = story.run("dry", dry_run=True)
    assert d.action == "await_approval" and d.outcome == "dry_run" and d.dry_run
    assert story.tags(story.v2) == before
    assert story.audit() == []
    assert Path(d.report_path).is_file()


def test_move_aborted_when_the_champion_changed_after_the_decision(story):
    story.evidence()
    story.run("r1")
    story.approve("alice")
    inputs, state, tags = gather_inputs(story.name, story.policy, story.registry, story.reports)
    decision = decide_promotion(inputs, story.policy.model(story.name), NOW).model_copy(update={"run_key": "r2"})
    assert decision.action == "promote"
    # someone moves the champion in the MLflow UI between the decision and the move
    v3 = register_stub_version(story.name, story.registry.uri)
    story.registry.set_alias(story.name, "champion", v3)
    engine = state_engine(story.state_url)
    with model_lock(engine, story.name) as conn:
        ctx = MoveContext(story.registry, conn, decision, actor="t", now=NOW, run_key="r2", report_path=None)
        outcome = apply_decision(ctx, state, tags)
    assert outcome == "aborted"
    assert story.state().champion == v3 and story.state().challenger == story.v2
    assert story.state().previous_champion is None
    assert len(story.audit("move_aborted")) == 1
    with pytest.raises(ConcurrentMoveError) as info:
        check_unchanged(story.registry, story.name, state, ("champion",))
    assert info.value.code == "concurrent_move"


def test_interrupted_promotion_is_completed(story):
    story.evidence()
    story.run("r1")
    # a crash right after the champion moved: challenger still set on the new champion
    story.registry.set_alias(story.name, "previous_champion", story.v1)
    story.registry.set_alias(story.name, "champion", story.v2)
    d = story.run("r2")
    assert d.action == "no_op" and d.outcome == "repaired"
    assert story.state() == RegistryState(champion=story.v2, challenger=None, previous_champion=story.v1)
    assert story.tags(story.v2)[T.STATUS] == "promoted"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_runs_at_once_make_exactly_one_move(request, registry, env, tmp_path, backend):
    if backend == "postgres":
        state_url = request.getfixturevalue("own_pg")
    else:
        state_url = f"sqlite:///{tmp_path / 'state.db'}"
    story = Story(registry, env, state_url)
    story.evidence()
    story.run("r0")
    story.approve("alice")
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker(key):
        try:
            barrier.wait(timeout=30)
            results.append(story.run(key, actor=key))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(d.action for d in results) == ["no_op", "promote"]
    champion_moves = [a for a in story.audit("alias_move") if a.alias == "champion"]
    assert len(champion_moves) == 1
    assert story.state() == RegistryState(champion=story.v2, challenger=None, previous_champion=story.v1)


@pytest.mark.parametrize("first", ["approve", "reject"])
def test_two_approvers_answering_at_once_leave_one_whole_answer(story, first):
    """alice and bob answer the same challenger at the same moment, one approving and one rejecting.

    Their tag writes are made to interleave (bob answers while alice's first tag is written): the
    tags end as exactly one person's answer, never one person's name on the other's verdict, and
    the next run acts on that answer under that name.
    """
    story.evidence()
    story.run("r1")
    alice_rejects = first == "reject"
    bob_done = threading.Event()
    errors: list[BaseException] = []

    def bob() -> None:
        try:
            story.approve("bob", reject=not alice_rejects)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            bob_done.set()

    bob_thread = threading.Thread(target=bob)

    def hook(step: str) -> None:
        if step == f"after:set_tag:{story.v2}:{T.APPROVAL}" and not bob_thread.is_alive() and not bob_done.is_set():
            bob_thread.start()
            bob_done.wait(timeout=2)  # bob answers in the middle of alice's writes, unless he has to wait

    alice_registry = ModelRegistry(story.registry.uri, fault_hook=hook)
    approve(
        story.name,
        story.v2,
        "alice",
        reject=alice_rejects,
        policy=story.policy,
        registry=alice_registry,
        state_url=story.state_url,
        now=NOW,
    )
    bob_thread.join(timeout=150)
    assert not errors, errors
    alice_says, bob_says = ("rejected", "approved") if alice_rejects else ("approved", "rejected")
    answers = {(alice_says, "alice"), (bob_says, "bob")}
    tags = story.tags(story.v2)
    answer = (tags[T.APPROVAL], tags[T.APPROVED_BY])
    assert answer in answers, f"{answer}: one person's name on the other's answer"
    assert sorted(a.actor for a in story.audit() if a.kind in ("approval", "rejection")) == ["alice", "bob"]
    d = story.run("r2")
    if answer[0] == "approved":
        assert d.action == "promote" and story.tags(story.v2)[T.PROMOTED_BY] == answer[1]
    else:
        assert d.action == "hold" and d.subject_status == "rejected" and story.state().champion == story.v1


def test_lock_excludes_a_second_holder(tmp_path):
    engine = state_engine(f"sqlite:///{tmp_path / 'lock.db'}")
    with model_lock(engine, "m"):
        with pytest.raises(TimeoutError):
            with model_lock(engine, "m", timeout_s=0.2):
                pass


def test_pg_advisory_lock_is_per_model(own_pg):
    engine = state_engine(own_pg)
    with model_lock(engine, "a"):
        with model_lock(engine, "b", timeout_s=1):  # another model is not blocked
            pass
        with pytest.raises(TimeoutError):
            with model_lock(engine, "a", timeout_s=0.3):
                pass


def test_status_lists_aliases_pending_approvals_and_history(story, capsys):
    story.evidence()
    story.run("r1")
    text = model_status(story.name, policy=story.policy, registry=story.registry, state_url=story.state_url)
    assert f"champion           version {story.v1}" in text
    assert "pending approvals:" in text and f"version {story.v2}: evidence" in text
    assert f"lockgate approve {story.name} {story.v2} --by <name>" in text
    assert "await_approval" in text
    story.approve("alice")
    story.run("r2")
    text = model_status(story.name, policy=story.policy, registry=story.registry, state_url=story.state_url)
    assert "pending approvals:\n  none" in text
    assert f"champion: {story.v1} -> {story.v2}" in text and "approval         by alice" in text


def test_command_line(story, monkeypatch, capsys):
    """`lockgate run promotion`, `lockgate approve`, `lockgate status MODEL` as a person types them."""
    import yaml

    from lockgate.cli import main

    policy_file = story.reports.parent / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(story.policy.model_dump(mode="json")))
    monkeypatch.setenv("LOCKGATE_CONFIG", str(policy_file))
    monkeypatch.setenv("LOCKGATE_STATE_DB_URL", story.state_url)
    story.evidence()

    assert main(["run", "promotion", "--model", story.name, "--dry-run"]) == 0
    assert "await_approval (outcome: dry_run)" in capsys.readouterr().out
    assert story.tags(story.v2)[T.STATUS] == "evaluating"  # a dry run sets no tag

    assert main(["run", "promotion", "--model", story.name]) == 0
    out = capsys.readouterr().out
    assert f"lockgate approve {story.name} {story.v2} --by <name>" in out

    assert main(["approve", story.name, story.v2, "--by", "mallory"]) == 2
    assert "[approval_refused]" in capsys.readouterr().err
    assert main(["approve", story.name, story.v2, "--by", "alice"]) == 0
    assert "approved by alice" in capsys.readouterr().out

    assert main(["run", "promotion", "--model", story.name]) == 0
    assert "promote (outcome: moved)" in capsys.readouterr().out
    assert main(["status", story.name, "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert f"champion           version {story.v2}" in out and "approval_refused" in out


# --------------------------------------------------------------------------- crash consistency


class Crash(BaseException):
    """A process dying: nothing after it runs, no `except Exception` catches it."""


DEAD_MLFLOW = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


def crash_at(step: str):
    def hook(seen: str) -> None:
        if seen == step:
            raise Crash(step)

    return hook


def outage_at(registry_box: list[ModelRegistry], step: str):
    """From `step` on, the registry's MLflow server stops answering (a real refused connection)."""
    from mlflow import MlflowClient

    def hook(seen: str) -> None:
        if seen == step:
            registry_box[0].client = MlflowClient(tracking_uri=DEAD_MLFLOW, registry_uri=DEAD_MLFLOW)

    return hook


def awaiting_alice(story: Story) -> None:
    """v1 champion, v2 challenger with passing evidence, approved by alice: the next run promotes."""
    story.evidence()
    story.run("r1")
    story.approve("alice")


def assert_audit_is_the_registry(story: Story, approver: str = "alice") -> None:
    """The audit trail, replayed from the story's start, gives the registry's aliases; the approver signs every move."""
    rows = story.audit()
    start = {"champion": story.v1, "challenger": story.v2, "previous_champion": None}
    assert replay_audit(rows, start) == story.state().as_dict()
    moves = [a for a in rows if a.kind in ("alias_move", "alias_removed")]
    assert moves and all(a.approved_by == approver for a in moves), [(a.alias, a.approved_by) for a in moves]
    assert all(a.actor == "airflow:lockgate_promotion" for a in moves)  # the run that decided, not the rerun
    assert len([a for a in moves if a.alias == "champion"]) == 1
    assert story.tags(story.v2)[T.PROMOTED_BY] == approver
    assert [a.approved_by for a in story.audit("approval")] == [approver]
    promote = [d for d in list_decisions(state_engine(story.state_url), story.name) if d.action == "promote"]
    assert [(d.run_key, d.outcome) for d in promote] == [("r2", "moved")]
    assert all(i.status == "done" for i in list_intents(state_engine(story.state_url), story.name))


def test_replay_audit_needs_every_move():
    rows = [
        AuditEntry(
            model_name="m", kind="alias_move", actor="a", alias="champion", from_version="1", to_version="2", id=2
        ),
        AuditEntry(model_name="m", kind="alias_move", actor="a", alias="previous_champion", to_version="1", id=1),
        AuditEntry(model_name="m", kind="alias_removed", actor="a", alias="challenger", from_version="2", id=3),
        AuditEntry(model_name="m", kind="approval", actor="alice", version="2", id=4),
    ]
    start = {"champion": "1", "challenger": "2", "previous_champion": None}
    assert replay_audit(rows, start) == {"champion": "2", "challenger": None, "previous_champion": "1"}
    with pytest.raises(ValueError, match="champion moved from 1"):
        replay_audit(rows[:1] + rows[2:], {**start, "champion": "3"})


@pytest.mark.parametrize(
    "step",
    [
        "before:set_alias:previous_champion",
        "after:set_alias:previous_champion",
        "after:set_alias:champion",
        "after:delete_alias:challenger",
        "after:set_tag:{v2}:lockgate.status",
        "after:set_model_tag:lockgate.last_move",
    ],
)
@pytest.mark.parametrize("rerun_key", ["r2", "r3"])
def test_promotion_killed_after_any_write_is_finished_and_audited_by_the_next_run(story, step, rerun_key):
    awaiting_alice(story)
    step = step.format(v2=story.v2)
    crashing = ModelRegistry(story.registry.uri, fault_hook=crash_at(step))
    with pytest.raises(Crash):
        story.run("r2", registry=crashing, actor="airflow:lockgate_promotion")
    again = story.run(rerun_key, actor="cli:unknown")
    assert story.state() == RegistryState(champion=story.v2, challenger=None, previous_champion=story.v1)
    assert_audit_is_the_registry(story)
    if rerun_key == "r2":  # Airflow's retry of the same run: its result is the promotion, its page written
        assert (again.action, again.outcome) == ("promote", "moved")
    else:
        assert again.action == "no_op"
    assert report_path(story.tags(story.v2)[T.DECISION_REPORT]).is_file()
    assert json_of(story.registry.registered_model_tags(story.name)[T.LAST_MOVE])["by"] == "alice"
    counts = story.counts()
    story.run("r4")
    assert story.counts()[0] == counts[0]  # nothing left to finish


def json_of(text: str) -> dict:
    import json

    return json.loads(text)


def test_mlflow_outage_between_writes_is_one_line_and_the_rerun_finishes(story):
    awaiting_alice(story)
    box: list[ModelRegistry] = []
    box.append(ModelRegistry(story.registry.uri, fault_hook=outage_at(box, "after:set_alias:previous_champion")))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as info:
        story.run("r2", registry=box[0], actor="airflow:lockgate_promotion")
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "\n" not in message and DEAD_MLFLOW in message and "retries" in message, message
    assert info.value.code == "service_unavailable"
    assert elapsed < 30, f"gave up after {elapsed:.0f} s"
    assert story.state().previous_champion == story.v1 and story.state().champion == story.v1
    assert [i.done for i in list_intents(state_engine(story.state_url), story.name)] == [1]
    text = model_status(story.name, policy=story.policy, registry=story.registry, state_url=story.state_url)
    assert "unfinished moves" in text and "promote of run r2, approved by alice: 1 of 3 done" in text
    story.run("r3", actor="cli:unknown")  # MLflow is back
    assert story.state() == RegistryState(champion=story.v2, challenger=None, previous_champion=story.v1)
    assert_audit_is_the_registry(story)


def test_mlflow_retry_budget_is_bounded_unless_the_environment_sets_one(monkeypatch):
    from lockgate.registry.client import MLFLOW_RETRY_BUDGET, bound_mlflow_retries

    for key in MLFLOW_RETRY_BUDGET:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    bound_mlflow_retries()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"  # the operator's value wins


def test_unfinished_intent_is_abandoned_when_the_registry_moved_elsewhere(story):
    awaiting_alice(story)
    crashing = ModelRegistry(story.registry.uri, fault_hook=crash_at("after:set_alias:previous_champion"))
    with pytest.raises(Crash):
        story.run("r2", registry=crashing, actor="airflow:lockgate_promotion")
    v3 = register_stub_version(story.name, story.registry.uri)
    story.registry.set_alias(story.name, "champion", v3)  # someone moves the champion in the MLflow UI meanwhile
    story.run("r3", actor="cli:unknown")
    assert story.state().champion == v3  # lockgate does not overwrite it
    (intent,) = list_intents(state_engine(story.state_url), story.name)
    assert intent.status == "abandoned" and intent.approved_by == "alice"
    assert f"champion is at {v3}, not {story.v1}" in intent.reason
    aborted = story.audit("move_aborted")
    assert len(aborted) == 1 and aborted[0].message == intent.reason
    start = {"champion": v3, "challenger": story.v2, "previous_champion": None}
    assert replay_audit(story.audit(), start) == story.state().as_dict()
    decisions = list_decisions(state_engine(story.state_url), story.name)
    assert ("r2", "promote", "aborted") in [(d.run_key, d.action, d.outcome) for d in decisions]


KILLED_RUN = """
import sys, time
from datetime import datetime
from pathlib import Path
from lockgate.jobs.context import RunContext
from lockgate.jobs.promotion import run_promotion
from lockgate.registry.adapter import ModelRegistry
from lockgate.devtools.testing.registry import policy_for

name, uri, state_url, reports, marker, now = sys.argv[1:7]

def hook(step):
    if step == "before:set_alias:champion":
        Path(marker).write_text(step)
        time.sleep(300)

run_promotion(RunContext(name, run_key="r2", now=datetime.fromisoformat(now)), actor="airflow:lockgate_promotion",
              policy=policy_for(name), registry=ModelRegistry(uri, fault_hook=hook), state_url=state_url,
              reports_dir=Path(reports))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_of_a_running_promotion(request, registry, env, tmp_path, backend):
    """A real process, SIGKILLed after its first alias write was recorded; the lock dies with it, the rerun finishes."""
    state_url = request.getfixturevalue("own_pg") if backend == "postgres" else f"sqlite:///{tmp_path / 'state.db'}"
    story = Story(registry, env, state_url)
    awaiting_alice(story)
    marker = tmp_path / "first-write-done"
    child_env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    args = [story.name, story.registry.uri, state_url, str(story.reports), str(marker), NOW.isoformat()]
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, *args], env=child_env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the promotion never reached its champion write"
            time.sleep(0.1)
        (intent,) = list_intents(state_engine(state_url), story.name)
        assert intent.status == "open" and intent.done == 1  # the previous_champion write is recorded
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert story.state().previous_champion == story.v1 and story.state().champion == story.v1
    story.run("r3", actor="cli:unknown", lock_timeout_s=10)  # the dead process's lock is gone
    assert story.state() == RegistryState(champion=story.v2, challenger=None, previous_champion=story.v1)
    assert_audit_is_the_registry(story)


# --------------------------------------------------------------------------- approval identity and time


def test_approval_is_marked_unauthenticated_on_the_page_and_in_the_audit_trail(story):
    awaiting_alice(story)
    d = story.run("r2")
    assert d.action == "promote" and d.approval.auth_label == "unauthenticated"
    page = Path(d.report_path).read_text()
    assert "approved by alice (unauthenticated: the name was asserted, not verified)" in page
    assert [a.approval_auth for a in story.audit("approval")] == ["unauthenticated"]
    moves = story.audit("alias_move")
    assert moves and all(a.approval_auth == "unauthenticated" for a in moves)
    (intent,) = list_intents(state_engine(story.state_url), story.name)
    assert (intent.approved_by, intent.approval_auth) == ("alice", "unauthenticated")


def test_waiting_page_says_who_vouches_for_the_approver(story):
    story.evidence()
    story.run("r1")
    story.approve("alice", reject=True)
    d = story.run("r2")
    assert d.action == "hold"
    page = Path(d.report_path).read_text()
    assert "approver identity" in page and "unauthenticated: &#39;alice&#39; is a name set in a tag" in page


@pytest.mark.parametrize("approved_at", ["2099-01-01T00:00:00+00:00", "soon"])
def test_future_or_unparseable_approved_at_never_counts(story, approved_at):
    d1 = None
    story.evidence()
    d1 = story.run("r1")
    story.registry.set_tags(
        story.name,
        story.v2,
        {
            T.APPROVAL: "approved",
            T.APPROVED_BY: "alice",
            T.APPROVAL_EVIDENCE: d1.evidence_hash,
            T.APPROVED_AT: approved_at,
        },
    )
    d = story.run("r2")
    assert d.action == "await_approval" and d.approval.status == "invalid"
    assert story.state().champion == story.v1
    assert T.APPROVAL not in story.tags(story.v2)  # cleared: a listed approver is asked again
    (refused,) = story.audit("approval_refused")
    assert refused.actor == "alice" and "not counted" in refused.message


def test_approve_with_mlflow_credentials_approves_as_that_user(story, monkeypatch):
    story.evidence()
    story.run("r1")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    with pytest.raises(ApprovalError, match="give your name with --by"):
        story.approve(None)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    with pytest.raises(ApprovalError, match="not the MLflow user 'bob'"):
        story.approve("alice")
    assert T.APPROVAL not in story.tags(story.v2)
    tags = story.approve(None)
    assert tags[T.APPROVED_BY] == "bob"
    (row,) = story.audit("approval")
    assert row.approved_by == "bob" and "MLflow credentials of bob" in row.message
    assert row.approval_auth == "unauthenticated"  # a tag does not say who wrote it
    assert story.run("r2").action == "promote"


@pytest.mark.parametrize("step", ["after:set_alias:champion", "after:delete_alias:previous_champion"])
def test_rollback_killed_half_way_is_finished_by_the_next_run(story, step):
    awaiting_alice(story)
    story.run("r2", actor="airflow:lockgate_promotion")  # v2 champion, v1 previous
    story.evidence(challenger="", champion=story.v2, champion_error_rate=0.5)
    crashing = ModelRegistry(story.registry.uri, fault_hook=crash_at(step))
    with pytest.raises(Crash):
        story.run("r3", registry=crashing, actor="airflow:lockgate_promotion")
    story.run("r4", actor="cli:unknown")
    assert story.state() == RegistryState(champion=story.v1, challenger=None, previous_champion=None)
    start = {"champion": story.v1, "challenger": story.v2, "previous_champion": None}
    assert replay_audit(story.audit(), start) == story.state().as_dict()
    rollback_rows = [a for a in story.audit() if a.run_key == "r3" and a.kind in ("alias_move", "alias_removed")]
    assert {(a.alias, a.actor) for a in rollback_rows} == {
        ("champion", "airflow:lockgate_promotion"),
        ("previous_champion", "airflow:lockgate_promotion"),
    }
    assert story.tags(story.v2)[T.STATUS] == "rolled_back" and story.tags(story.v1)[T.STATUS] == "promoted"
    decisions = list_decisions(state_engine(story.state_url), story.name)
    assert ("r3", "rollback", "moved") in [(d.run_key, d.action, d.outcome) for d in decisions]


def test_an_older_state_database_gets_the_new_audit_column(tmp_path):
    """A database created before `approval_auth` existed keeps working: the column is added."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    with old.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE lockgate_audit (id INTEGER PRIMARY KEY, at TIMESTAMP NOT NULL, model_name TEXT NOT NULL, "
            "kind TEXT NOT NULL, version TEXT, alias TEXT, from_version TEXT, to_version TEXT, actor TEXT NOT NULL, "
            "approved_by TEXT, evidence_hash TEXT, policy_hash TEXT, run_key TEXT, message TEXT, "
            "dedupe_key TEXT UNIQUE)"
        )
    old.dispose()
    engine = state_engine(url)
    with engine.begin() as conn:
        record_audit(conn, AuditEntry(model_name="m", kind="approval", actor="alice", approval_auth="unauthenticated"))
    assert [a.approval_auth for a in list_audit(engine, "m")] == ["unauthenticated"]


def test_a_registry_answering_503_is_one_line_within_the_retry_budget():
    """A server that is up but overloaded (HTTP 503 on every API call): MLflow's retries, then one line."""
    import http.server

    class Overloaded(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path.startswith("/health") else 503)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Overloaded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        registry = ModelRegistry(uri)  # /health answers: the outage shows on the first API call
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as info:
            registry.state("any-model")
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
    message = str(info.value)
    assert "\n" not in message and uri in message and "get_registered_model" in message, message
    assert elapsed < 30, f"gave up after {elapsed:.0f} s"
