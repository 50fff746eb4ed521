"""The mergeable latency histograms of the live rollups (`lockgate.live.sketch`)."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate.live import sketch


@pytest.mark.parametrize("value", [1e-3, 0.37, 1.0, 19.99, 250.0, 1234.5, 3.6e6])
def test_a_bin_stands_for_its_values_within_the_relative_accuracy(value: float) -> None:
    represented = sketch.bin_value(sketch.bin_of(value))
    assert abs(represented - value) <= sketch.RELATIVE_ACCURACY * value * (1 + 1e-9)


def test_zero_and_negative_values_share_the_zero_bin() -> None:
    assert sketch.bin_of(0.0) == sketch.bin_of(-1.0) == sketch.ZERO_BIN
    assert sketch.bin_value(sketch.ZERO_BIN) == 0.0


def _histogram(values: np.ndarray) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in values:
        b = sketch.bin_of(float(v))
        out[b] = out.get(b, 0) + 1
    return out


@pytest.mark.parametrize("q", [0.0, 0.01, 0.5, 0.9, 0.99, 1.0])
def test_quantiles_are_within_the_accuracy_of_percentile_cont(q: float) -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(mean=5, sigma=0.8, size=5001)
    exact = float(np.quantile(values, q, method="linear"))  # PostgreSQL's percentile_cont
    estimate = sketch.quantile(_histogram(values), q)
    assert estimate is not None
    assert abs(estimate - exact) <= sketch.RELATIVE_ACCURACY * exact * (1 + 1e-9)


def test_quantile_interpolates_across_a_gap_like_percentile_cont() -> None:
    # Two clusters far apart: the median lies between them, as percentile_cont puts it.
    values = np.array([100.0] * 50 + [200.0] * 50)
    exact = float(np.quantile(values, 0.5))
    estimate = sketch.quantile(_histogram(values), 0.5)
    assert estimate is not None and abs(estimate - exact) <= sketch.RELATIVE_ACCURACY * exact


def test_merged_hours_give_the_quantiles_of_all_their_values() -> None:
    rng = np.random.default_rng(3)
    hours = [rng.gamma(2.0, 30.0, size=n) for n in (400, 1200, 7)]
    merged = sketch.merge(_histogram(h) for h in hours)
    assert merged == _histogram(np.concatenate(hours))
    bins, counts = [], []
    for h in hours:
        hist = _histogram(h)
        bins += list(hist)
        counts += list(hist.values())
    # Concatenated (bin, count) pairs of several hours, a bin repeated: the same answer.
    assert sketch.quantiles_of_bins(bins, counts, [0.5, 0.9]) == [
        sketch.quantile(merged, 0.5),
        sketch.quantile(merged, 0.9),
    ]


def test_an_empty_histogram_has_no_quantile_and_a_bad_q_is_refused() -> None:
    assert sketch.quantile({}, 0.5) is None
    assert sketch.quantiles_of_bins([], [], [0.5, 0.9]) == [None, None]
    with pytest.raises(ValueError, match="quantile must be in"):
        sketch.quantile({1: 3}, 1.5)
