"""The live job's per-hour rollups on the real PostgreSQL: what they give equals what reading the windows
gives (counts exactly, percentiles within the sketch's accuracy), a rerun reads only what it has not
seen, and a stored hour whose rows changed is aggregated again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lockgate.live import rollups, sketch
from lockgate.logs import aggregates
from lockgate.logs.db import make_engine
from lockgate.logs.sampling import Window
from lockgate.logs.schema import create_schema
from lockgate.policy.schema import LogsConfig

pytestmark = [pytest.mark.postgres]

T0 = datetime(2026, 6, 1, tzinfo=UTC)
MODEL = "roll-m"
CUTS = [[60.0, 120.0, 300.0], [100.0]]


@pytest.fixture
def engines(pg_url: str, tmp_path: Path):
    logs = make_engine(pg_url)
    with logs.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS inference_logs"))
    create_schema(logs)
    with logs.begin() as conn:
        conn.execute(sa.text("SELECT setseed(0.42)"))
        # 12 hours, 3 versions, every kind of row: errors, timeouts, empty answers, feedback, cached tokens
        # in the metadata, and rows that break the contract (quarantined by reason).
        conn.execute(
            sa.text(
                """
                INSERT INTO inference_logs
                SELECT 'q-' || g, :t0 + (g * 6.1) * interval '1 second', :m,
                       CASE WHEN g % 10 < 6 THEN '1' WHEN g % 10 < 9 THEN '2' ELSE '3' END,
                       CASE WHEN g % 211 = 0 THEN '  ' ELSE 'prompt ' || g END,
                       CASE WHEN g % 53 = 0 THEN '' ELSE 'answer ' || g END,
                       NULL,
                       CASE WHEN g % 307 = 0 THEN -5 ELSE 200 + 900 * random() * random() END,
                       CASE WHEN g % 17 = 0 THEN NULL ELSE 20 + 150 * random() END,
                       (20 + 400 * random())::int, (1 + 60 * random())::int,
                       CASE WHEN g % 41 = 0 THEN 'error' WHEN g % 67 = 0 THEN 'timeout'
                            WHEN g % 401 = 0 THEN 'exploded' ELSE 'ok' END,
                       CASE WHEN g % 5 = 0 THEN -1 WHEN g % 7 = 0 THEN 1 END,
                       jsonb_build_object('usage', jsonb_build_object('prompt_tokens_details',
                           jsonb_build_object('cached_tokens', (g % 50))))
                FROM generate_series(0, 7000) AS g
                """
            ),
            {"t0": T0, "m": MODEL},
        )
    state = make_engine(f"sqlite:///{tmp_path / 'state.db'}")  # lockgate's own database may be another one
    yield logs, state
    logs.dispose()
    state.dispose()


def _window() -> Window:
    # partial first and last hours, ten whole hours between
    return Window(T0 + timedelta(minutes=25), T0 + timedelta(hours=11, minutes=40))


def _aggregate(logs, state, *, now: datetime, settle: float = 2):
    cfg = LogsConfig()
    spec = aggregates.resolve_cached_tokens(logs, cfg, aggregates.physical_columns(logs, cfg))
    return rollups.aggregate_window(logs, state, MODEL, _window(), cfg, spec, now=now, settle_hours=settle)


def _exact(logs):
    cfg = LogsConfig()
    spec = aggregates.resolve_cached_tokens(logs, cfg, aggregates.physical_columns(logs, cfg))
    counts = aggregates.window_counts(logs, MODEL, _window(), CUTS, cfg, spec)
    return counts, aggregates.window_quantiles(logs, MODEL, _window(), ["1", "2", "3"], cfg)


def _assert_same(counts, quantiles, exact_counts, exact_quantiles) -> None:
    assert counts.rows_by_version == exact_counts.rows_by_version
    assert counts.quarantined == exact_counts.quarantined and sum(counts.quarantined.values()) > 0
    assert counts.by_cutoffs == exact_counts.by_cutoffs  # every stratum's counts, exactly
    assert set(quantiles) == set(exact_quantiles)
    for version, values in exact_quantiles.items():
        assert set(values) == set(quantiles[version])
        for name, exact in values.items():
            assert quantiles[version][name] == pytest.approx(exact, rel=sketch.RELATIVE_ACCURACY), (version, name)


def test_rollups_give_the_counts_of_the_rows_and_their_percentiles_within_the_accuracy(engines) -> None:
    logs, state = engines
    now = T0 + timedelta(hours=12)
    hours, use = _aggregate(logs, state, now=now)
    # whole hours 1..10 of the window; those ending 2 hours before `now` (1..9) are stored
    assert (use.hours_stored, use.hours_reused, use.hours_changed) == (9, 0, 0)
    assert use.hours_fresh == 3  # hour 10 (not settled) and the two partial hours
    exact_counts, exact_q = _exact(logs)
    _assert_same(
        rollups.window_counts(hours, CUTS), rollups.window_quantiles(hours, ["1", "2", "3"]), exact_counts, exact_q
    )

    again, use = _aggregate(logs, state, now=now)
    assert (use.hours_stored, use.hours_reused, use.hours_changed) == (0, 9, 0)
    _assert_same(
        rollups.window_counts(again, CUTS), rollups.window_quantiles(again, ["1", "2", "3"]), exact_counts, exact_q
    )
    with state.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM lockgate_live_rollups")).scalar_one()
    assert stored == 9


def test_a_stored_hour_whose_rows_changed_is_aggregated_again(engines) -> None:
    logs, state = engines
    now = T0 + timedelta(hours=12)
    _aggregate(logs, state, now=now)
    with logs.begin() as conn:  # a late row into hour 3 and two rows deleted from hour 5
        conn.execute(
            sa.text(
                "INSERT INTO inference_logs (request_id, ts, model_name, model_version, prompt, response, "
                "latency_ms, ttft_ms, prompt_tokens, completion_tokens, status) VALUES "
                "('late-1', :ts, :m, '2', 'late prompt', 'late answer', 99999, 10, 77, 5, 'error')"
            ),
            {"ts": T0 + timedelta(hours=3, minutes=10), "m": MODEL},
        )
        conn.execute(
            sa.text(
                "DELETE FROM inference_logs WHERE request_id IN "
                "(SELECT request_id FROM inference_logs WHERE ts >= :a AND ts < :b ORDER BY ts LIMIT 2)"
            ),
            {"a": T0 + timedelta(hours=5), "b": T0 + timedelta(hours=6)},
        )
    hours, use = _aggregate(logs, state, now=now)
    assert use.hours_changed == 2 and use.hours_reused == 7
    exact_counts, exact_q = _exact(logs)
    _assert_same(
        rollups.window_counts(hours, CUTS), rollups.window_quantiles(hours, ["1", "2", "3"]), exact_counts, exact_q
    )


def test_a_different_quarantine_rule_does_not_reuse_the_rollups(engines) -> None:
    logs, state = engines
    now = T0 + timedelta(hours=12)
    _aggregate(logs, state, now=now)
    cfg = LogsConfig(max_latency_ms=800)  # rows above 800 ms are now quarantined
    spec = aggregates.resolve_cached_tokens(logs, cfg, aggregates.physical_columns(logs, cfg))
    hours, use = rollups.aggregate_window(logs, state, MODEL, _window(), cfg, spec, now=now, settle_hours=2)
    assert use.hours_reused == 0 and use.hours_stored == 9
    counts = rollups.window_counts(hours, CUTS)
    assert counts.quarantined == aggregates.window_counts(logs, MODEL, _window(), CUTS, cfg, spec).quarantined
    assert counts.quarantined.get("invalid_latency", 0) > 100


def test_logs_rewritten_with_the_same_counts_need_forget_rollups(engines) -> None:
    """Rows deleted and re-inserted with the same count per hour (a re-import, the demo's reseeding) look
    unchanged to the row-count check: `forget_rollups` (and `lockgate logs forget-rollups`) makes the next
    run aggregate those hours again."""
    logs, state = engines
    now = T0 + timedelta(hours=12)
    _aggregate(logs, state, now=now)
    with logs.begin() as conn:  # every row of version 3 becomes version 2: same rows per hour
        conn.execute(sa.text("UPDATE inference_logs SET model_version = '2' WHERE model_version = '3'"))
    hours, use = _aggregate(logs, state, now=now)
    assert use.hours_reused == 9  # unseen, as documented
    assert "3" in rollups.window_counts(hours, CUTS).rows_by_version

    assert rollups.forget_rollups(state, MODEL, since=T0 + timedelta(hours=5)) == 5  # hours 5..9
    hours, use = _aggregate(logs, state, now=now)
    assert (use.hours_reused, use.hours_stored) == (4, 5)
    assert rollups.forget_rollups(state, MODEL) == 9
    hours, use = _aggregate(logs, state, now=now)
    assert (use.hours_reused, use.hours_stored) == (0, 9)
    exact_counts, exact_q = _exact(logs)
    assert "3" not in exact_counts.rows_by_version
    _assert_same(
        rollups.window_counts(hours, CUTS), rollups.window_quantiles(hours, ["1", "2", "3"]), exact_counts, exact_q
    )
