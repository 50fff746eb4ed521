"""The history's tables in lockgate's state database: what an evidence run stores, that a rerun of
its run key replaces it, and what `history_series` reads back for a period (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence
from lockgate.policy.model import Decision
from lockgate.registry.audit import AuditEntry, record_audit, record_decision
from lockgate.reports.history import (
    history_models,
    history_series,
    metrics_table,
    record_evidence,
    runs_table,
    state_engine,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    e = state_engine(url)
    yield e
    e.dispose()


@pytest.fixture
def model() -> str:
    # The PostgreSQL database is shared by the session: a model of its own keeps each test apart.
    return f"hist-{uuid.uuid4().hex[:8]}"


def _est(value: float, half: float | None = None, n: int = 200) -> Estimate:
    if half is None:
        return Estimate(value=value, n=n)
    return Estimate(value=value, ci_low=value - half, ci_high=value + half, confidence=0.95, n=n)


def benchmark(model: str, at: datetime, ttft: float, challenger: str = "2", champion: str = "1") -> EvidenceSummary:
    return EvidenceSummary(
        kind="benchmark",
        model_name=model,
        challenger_version=challenger,
        champion_version=champion,
        created_at=at,
        metrics={
            "ttft_ms_p50": MetricEvidence(
                challenger=_est(ttft, 0.1), champion=_est(2.0, 0.1), ratio=_est(ttft / 2.0, 0.05), unit="ms"
            ),
            "tpot_ms_p50": MetricEvidence(challenger=_est(0.5, 0.02), champion=_est(0.5, 0.02), unit="ms"),
            "ttft_ms_p50.bs2": MetricEvidence(challenger=_est(3.0), champion=_est(float("nan"))),
        },
    )


def drift(model: str, at: datetime, share: float, columns: list[str]) -> EvidenceSummary:
    return EvidenceSummary(
        kind="drift",
        model_name=model,
        challenger_version="2",
        champion_version="1",
        created_at=at,
        window_start=at - timedelta(days=1),
        window_end=at,
        metrics={
            "drift_share": MetricEvidence(model=_est(share, n=19), unit="share"),
            "error_rate": MetricEvidence(model=_est(0.01, 0.005), challenger=_est(0.02, 0.01)),
        },
        details={"drift": {"drifted_columns": columns, "drift_share": share}},
    )


def quality_untrusted_judge(model: str, at: datetime) -> EvidenceSummary:
    judge = MetricEvidence(challenger=_est(3.1, 0.2), champion=_est(3.0, 0.2), difference=_est(0.1, 0.2))
    return EvidenceSummary(
        kind="quality",
        model_name=model,
        challenger_version="2",
        champion_version="1",
        created_at=at,
        metrics={"embedding_relevance": MetricEvidence(challenger=_est(0.61, 0.02), champion=_est(0.6, 0.02))},
        details={"quality": {"untrusted_judge_metrics": {"judge_relevance": judge.model_dump(mode="json")}}},
    )


def _rows(engine: Engine, model: str) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(metrics_table)
            .where(metrics_table.c.model_name == model)
            .order_by(metrics_table.c.run_key, metrics_table.c.metric, metrics_table.c.role)
        ).mappings()
        return [dict(r) for r in rows]


def test_a_run_stores_each_versions_estimates_and_a_rerun_replaces_them(engine: Engine, model: str) -> None:
    assert record_evidence(benchmark(model, NOW, ttft=2.4), "run-1", engine) == 5
    rows = _rows(engine, model)
    got = {(r["metric"], r["role"]): (r["version"], r["value"], r["ci_low"], r["ci_high"]) for r in rows}
    assert got[("ttft_ms_p50", "challenger")] == ("2", 2.4, pytest.approx(2.3), pytest.approx(2.5))
    assert got[("ttft_ms_p50", "champion")][:2] == ("1", 2.0)
    assert ("ttft_ms_p50", "ratio") not in got  # comparisons stay on the report pages
    assert ("ttft_ms_p50.bs2", "champion") not in got  # NaN: nothing to plot
    assert got[("ttft_ms_p50.bs2", "challenger")] == ("2", 3.0, None, None)

    # Same run key again, other numbers: the run's rows are replaced, not added to.
    assert record_evidence(benchmark(model, NOW + timedelta(minutes=5), ttft=9.0), "run-1", engine) == 5
    rows = _rows(engine, model)
    assert len(rows) == 5
    assert next(r["value"] for r in rows if (r["metric"], r["role"]) == ("ttft_ms_p50", "challenger")) == 9.0
    with engine.connect() as conn:
        runs = conn.execute(sa.select(runs_table).where(runs_table.c.model_name == model)).mappings().all()
    assert len(runs) == 1

    # Another run key is another run.
    record_evidence(benchmark(model, NOW + timedelta(hours=1), ttft=2.0), "run-2", engine)
    assert len(_rows(engine, model)) == 10


def test_drifted_columns_and_an_uncalibrated_judges_scores_are_kept(engine: Engine, model: str) -> None:
    record_evidence(drift(model, NOW, 0.25, ["prompt_embedding", "latency_ms"]), "d1", engine)
    record_evidence(quality_untrusted_judge(model, NOW), "q1", engine)
    data = history_series(engine, model, NOW - timedelta(days=7), NOW + timedelta(hours=1))
    (run,) = [r for r in data.runs if r.kind == "drift"]
    assert run.drifted_columns == ("prompt_embedding", "latency_ms")
    assert run.window_end == NOW
    assert [p.value for p in data.points[("drift", "drift_share")]] == [0.25]
    judge = data.points[("quality", "judge_relevance")]
    assert {(p.role, p.value, p.trusted) for p in judge} == {("challenger", 3.1, False), ("champion", 3.0, False)}
    assert all(p.trusted for p in data.points[("quality", "embedding_relevance")])


def _decide(engine: Engine, model: str, at: datetime, action: str, run_key: str, **kw: object) -> None:
    decision = Decision.model_validate(
        {
            "model_name": model,
            "action": action,
            "champion": "1",
            "challenger": "2",
            "evidence_hash": "e" * 16,
            "policy_hash": "p" * 16,
            "decided_at": at,
            "run_key": run_key,
            "reasons": [f"{action} because"],
            **kw,
        }
    )
    with engine.begin() as conn:
        record_decision(conn, decision)


def _move(engine: Engine, model: str, at: datetime, alias: str, frm: str | None, to: str) -> None:
    with engine.begin() as conn:
        record_audit(
            conn,
            AuditEntry(model_name=model, kind="alias_move", actor="lockgate", alias=alias, from_version=frm,
                       to_version=to, at=at, dedupe_key=f"{model}:{alias}:{at.isoformat()}"),
        )  # fmt: skip


def test_history_series_reads_the_period_with_its_decisions_and_alias_moves(engine: Engine, model: str) -> None:
    old = NOW - timedelta(days=40)
    record_evidence(benchmark(model, old, ttft=5.0), "old", engine)
    record_evidence(benchmark(model, NOW - timedelta(days=10), ttft=2.2), "b10", engine)
    record_evidence(benchmark(model, NOW - timedelta(days=1), ttft=2.1), "b1", engine)
    record_evidence(drift(model, NOW - timedelta(days=2), 0.1, []), "d2", engine)
    _decide(engine, model, old, "promote", "old-promote", outcome="moved", target="2")
    for i, hours in enumerate((30, 29.5, 29)):  # a hold every 30 minutes: one marker
        _decide(engine, model, NOW - timedelta(hours=hours), "hold", f"hold-{i}")
    _decide(engine, model, NOW - timedelta(hours=28), "no_op", "noop")
    _decide(engine, model, NOW - timedelta(hours=27), "await_approval", "dry", dry_run=True)
    _decide(engine, model, NOW - timedelta(hours=26), "await_approval", "wait")
    _decide(engine, model, NOW - timedelta(hours=25), "promote", "go", outcome="moved", target="2")
    _move(engine, model, old, "champion", None, "1")
    _move(engine, model, NOW - timedelta(hours=25), "champion", "1", "2")
    _move(engine, model, NOW - timedelta(hours=25), "previous_champion", None, "1")

    data = history_series(engine, model, NOW - timedelta(days=30), NOW)
    assert data.known_model and not data.empty and data.days == 30
    ttft = data.points[("benchmark", "ttft_ms_p50")]
    assert [(p.run_key, p.value) for p in ttft if p.role == "challenger"] == [("b10", 2.2), ("b1", 2.1)]
    assert all(p.at >= data.since for p in ttft)
    assert ("benchmark", "ttft_ms_p50.bs2") not in data.points  # not a charted metric
    assert [r.run_key for r in data.runs] == ["b10", "d2", "b1"]

    assert [(d.action, d.repeats) for d in data.decisions] == [("hold", 3), ("await_approval", 1), ("promote", 1)]
    hold = data.decisions[0]
    assert hold.at == NOW - timedelta(hours=30) and hold.last_at == NOW - timedelta(hours=29)
    assert data.decisions[2].target == "2" and data.decisions[2].outcome == "moved"
    assert [(m.alias, m.from_version, m.to_version) for m in data.alias_moves] == [
        ("champion", "1", "2"),
        ("previous_champion", None, "1"),
    ]

    # 7 days: the 10-day-old run drops out.
    week = history_series(engine, model, NOW - timedelta(days=7), NOW)
    assert [p.run_key for p in week.points[("benchmark", "ttft_ms_p50")]] == ["b1", "b1"]

    # A model with only old records is known but has nothing in the period; a name never seen is unknown.
    quiet = history_series(engine, model, NOW - timedelta(days=30), NOW - timedelta(days=29))
    assert quiet.known_model and quiet.empty
    assert not history_series(engine, f"{model}-nope", NOW - timedelta(days=30), NOW).known_model
    assert model in history_models(engine)
