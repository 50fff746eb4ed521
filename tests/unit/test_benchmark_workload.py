"""The benchmark workload: synthetic lengths, batches, interleaving, windows (no database here)."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest

from lockgate.benchmark import workload
from lockgate.policy.schema import DataIntervalWindow, FixedWindow


def test_synthetic_lengths_are_fixed_and_chat_like() -> None:
    a = workload.synthetic_lengths(200, seed=0)
    assert a == workload.synthetic_lengths(200, seed=0)
    assert a != workload.synthetic_lengths(200, seed=1)
    lo, hi = workload.SYNTHETIC_RANGE
    assert all(lo <= n <= hi for n in a)
    assert 35 <= statistics.median(a) <= 65


def test_requests_are_full_batches_wrapping_around() -> None:
    reqs = workload.build_requests([5, 6, 7, 8, 9], 2)
    assert [r.prompts for r in reqs] == [(0, 1), (2, 3), (4, 0)]
    assert [r.lengths for r in reqs] == [(5, 6), (7, 8), (9, 5)]
    assert reqs[2].padded_len == 9 and reqs[2].prompt_tokens == 14 and reqs[2].padded
    single = workload.build_requests([5, 6], 1)
    assert [r.batch_size for r in single] == [1, 1] and not single[0].padded
    with pytest.raises(ValueError):
        workload.build_requests([], 1)


def test_interleaving_alternates_who_goes_first() -> None:
    roles = ["challenger", "champion"]
    orders = [workload.interleaved_order(roles, rep, req)[0] for rep in range(2) for req in range(2)]
    assert orders == ["challenger", "champion", "champion", "challenger"]
    assert workload.interleaved_order(["challenger"], 1, 0) == ["challenger"]


def test_prompt_tokens_are_seeded_and_in_vocab() -> None:
    t = workload.PromptTokens.generate([3, 7], vocab_size=100, seed=3)
    assert [len(x) for x in t.ids] == [3, 7]
    assert all(8 <= i < 100 for ids in t.ids for i in ids)
    assert t.ids == workload.PromptTokens.generate([3, 7], vocab_size=100, seed=3).ids


def test_fit_to_context_counts_what_it_cuts() -> None:
    p = workload.PromptSet((10, 500, 3000), "logs", "x")
    fitted = workload.fit_to_context(p, 1000)
    assert fitted.lengths == (10, 500, 1000) and fitted.truncated == 1
    assert workload.fit_to_context(p, 5000) is p


def test_benchmark_window() -> None:
    end = datetime(2026, 3, 2, tzinfo=UTC)
    interval = (end - timedelta(days=1), end)
    assert workload.benchmark_window(DataIntervalWindow(min_hours=24), interval) == interval
    # A manual run's empty interval is widened back to min_hours.
    assert workload.benchmark_window(DataIntervalWindow(min_hours=6), (end, end)) == (end - timedelta(hours=6), end)
    assert workload.benchmark_window(DataIntervalWindow(min_hours=2), None, now=end) == (end - timedelta(hours=2), end)
    fixed = FixedWindow(start=end - timedelta(days=3), end=end)
    assert workload.benchmark_window(fixed, interval) == (fixed.start, fixed.end)


def test_fixed_window_without_a_zone_is_read_as_utc() -> None:
    # The policy validates it; the benchmark's window query then compares it with a timestamptz.
    fixed = FixedWindow.model_validate({"start": "2026-03-01T00:00:00", "end": "2026-03-02T00:00:00"})
    assert workload.benchmark_window(fixed, None) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 2, tzinfo=UTC),
    )
