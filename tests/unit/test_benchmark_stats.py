"""Benchmark statistics: distributions, CV, and the paired two-way bootstrap of ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lockgate.benchmark import stats


def test_describe_matches_numpy() -> None:
    x = np.arange(1, 101, dtype=float)
    d = stats.describe(x)
    assert d.n == 100
    assert d.mean == pytest.approx(50.5)
    assert d.std == pytest.approx(np.std(x, ddof=1))
    assert (d.p50, d.p90, d.p99) == pytest.approx(tuple(np.percentile(x, [50, 90, 99])))
    assert (d.min, d.max) == (1.0, 100.0)


def test_describe_ignores_non_finite_and_handles_empty() -> None:
    assert stats.describe([1.0, float("nan"), 3.0]).n == 2
    empty = stats.describe([])
    assert empty.n == 0 and math.isnan(empty.p50)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([2.0, 2.0, 2.0], 0.0), ([1.0, 3.0], math.sqrt(2) / 2), ([5.0], float("nan")), ([-1.0, 1.0], float("nan"))],
)
def test_coefficient_of_variation(values: list[float], expected: float) -> None:
    cv = stats.coefficient_of_variation(values)
    if math.isnan(expected):
        assert math.isnan(cv)
    else:
        assert cv == pytest.approx(expected)


def test_statistics_over_resample_axis() -> None:
    x = np.arange(24, dtype=float).reshape(2, 3, 4)  # [resamples, reps, requests]
    assert stats.percentile_stat("x", 50)({"x": x}).tolist() == [5.5, 17.5]
    assert stats.max_stat("x")({"x": x}).tolist() == [11.0, 23.0]
    tokens = np.ones((2, 3, 4)) * 10
    seconds = np.ones((2, 3, 4)) * 0.5
    assert stats.ratio_of_sums_stat("n", "s")({"n": tokens, "s": seconds}).tolist() == [20.0, 20.0]


def test_per_repetition_applies_the_statistic_to_each_repetition() -> None:
    x = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    assert stats.per_repetition(stats.percentile_stat("x", 50), {"x": x}).tolist() == [2.0, 20.0]


def _drifting_pair(ratio: float, reps: int = 10, reqs: int = 16, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Champion and challenger latencies sharing a strong per-repetition drift and per-prompt cost."""
    rng = np.random.default_rng(seed)
    drift = rng.lognormal(0, 0.3, size=(reps, 1))  # the machine speeds up and slows down
    prompt = rng.uniform(1, 5, size=(1, reqs))  # long and short prompts
    champion = drift * prompt * rng.lognormal(0, 0.03, size=(reps, reqs))
    challenger = ratio * drift * prompt * rng.lognormal(0, 0.03, size=(reps, reqs))
    return challenger, champion


def test_identical_arrays_give_a_ratio_of_exactly_one() -> None:
    a, _ = _drifting_pair(1.0)
    for paired in (False, True):
        cmp = stats.paired_bootstrap(stats.percentile_stat("x", 50), {"x": a}, {"x": a.copy()}, paired_ratio=paired)
        assert cmp.ratio is not None
        assert (cmp.ratio.value, cmp.ratio.low, cmp.ratio.high) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("true_ratio", [1.0, 1.5])
def test_paired_ratio_interval_covers_the_truth_and_is_tighter(true_ratio: float) -> None:
    a, b = _drifting_pair(true_ratio)
    median = stats.percentile_stat("x", 50)
    paired = stats.paired_bootstrap(median, {"x": a}, {"x": b}, paired_ratio=True, resamples=1000)
    pooled = stats.paired_bootstrap(median, {"x": a}, {"x": b}, paired_ratio=False, resamples=1000)
    assert paired.ratio is not None and pooled.ratio is not None
    assert paired.ratio.low is not None and paired.ratio.high is not None
    assert pooled.ratio.low is not None and pooled.ratio.high is not None
    assert paired.ratio.low <= true_ratio <= paired.ratio.high
    assert paired.ratio.high - paired.ratio.low < (pooled.ratio.high - pooled.ratio.low) / 2
    assert paired.ratio.n == 10 and paired.ratio.confidence == 0.95
    if true_ratio > 1:
        assert paired.ratio.low > 1.1  # a 50% regression is detected against a 10% tolerance


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    a, b = _drifting_pair(1.2)
    run = [
        stats.paired_bootstrap(stats.percentile_stat("x", 90), {"x": a}, {"x": b}, seed=7, resamples=500)
        for _ in range(2)
    ]
    assert run[0] == run[1]


def test_one_version_has_no_ratio() -> None:
    a, _ = _drifting_pair(1.0)
    cmp = stats.paired_bootstrap(stats.percentile_stat("x", 50), {"x": a}, None)
    assert cmp.b is None and cmp.ratio is None
    assert cmp.a.low is not None and cmp.a.low <= cmp.a.value <= (cmp.a.high or 0)


def test_extra_dimensions_are_kept_whole() -> None:
    a = np.ones((4, 3, 5))  # [reps, requests, decode steps]
    cmp = stats.paired_bootstrap(stats.percentile_stat("x", 50), {"x": a * 2}, {"x": a}, resamples=200)
    assert cmp.ratio is not None and cmp.ratio.value == 2.0


def test_chunked_resampling_agrees_with_one_chunk() -> None:
    a, b = _drifting_pair(1.3)
    stat = stats.percentile_stat("x", 50)
    big = stats.paired_bootstrap(stat, {"x": a}, {"x": b}, paired_ratio=True, resamples=2000)
    small = stats.paired_bootstrap(stat, {"x": a}, {"x": b}, paired_ratio=True, resamples=2000, max_elements=500)
    assert big.ratio is not None and small.ratio is not None
    assert small.ratio.low == pytest.approx(big.ratio.low, rel=0.02)
    assert small.ratio.high == pytest.approx(big.ratio.high, rel=0.02)


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="equal shapes"):
        stats.paired_bootstrap(stats.max_stat("x"), {"x": np.ones((3, 4))}, {"x": np.ones((3, 5))})
    with pytest.raises(ValueError, match="disagree"):
        stats.paired_bootstrap(stats.ratio_of_sums_stat("n", "s"), {"n": np.ones((3, 4)), "s": np.ones((2, 4))})


def test_zero_denominator_gives_no_interval() -> None:
    cmp = stats.paired_bootstrap(stats.max_stat("x"), {"x": np.ones((3, 3))}, {"x": np.zeros((3, 3))})
    assert cmp.ratio is not None and cmp.ratio.low is None and cmp.ratio.high is None


def test_paired_cv_cancels_the_machine_drift() -> None:
    a, b = _drifting_pair(1.0)
    median = stats.percentile_stat("x", 50)
    own = stats.coefficient_of_variation(stats.per_repetition(median, {"x": a}))
    paired = stats.paired_cv(median, {"x": a}, {"x": b})
    assert own > 0.15
    assert paired < 0.05


@pytest.mark.parametrize("q", [0, 37.5, 50, 90, 99, 100])
def test_quantile_rows_matches_numpy(q: float) -> None:
    x = np.random.default_rng(0).lognormal(size=(7, 101))
    assert stats.quantile_rows(x, q) == pytest.approx(np.percentile(x, q, axis=1))
