"""Statistics of benchmark measurements: distributions, coefficient of variation, paired bootstrap.

Measurements of one version in one cell (serving configuration x batch size) are arrays
shaped `[repetitions, requests, ...]`: every repetition replays the same requests, so
the request axis carries the spread of the production-shaped workload and the
repetition axis the noise of the machine.

Intervals come from a two-way paired bootstrap: each resample draws repetitions and
requests with replacement and applies the *same* draw to the challenger and the
champion. Their measurements of one (repetition, request) were taken back to back
(interleaved A B / B A), so drift of the machine and the length of the prompt affect
both sides of a ratio alike and cancel in it.

For medians the ratio is estimated from the pairs themselves: the median over
(repetition, request) of challenger / champion. Its interval is narrower than that of
the ratio of the two pooled medians (several times narrower on a shared CPU: see
docs/benchmarks.md), because each pair shares the machine's state and the prompt. Tail percentiles and throughputs
keep the ratio of the two statistics: a tail is a property of each distribution.

Only numpy here: no torch, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Arrays = Mapping[str, FloatArray]
# A statistic maps arrays shaped [resamples, repetitions, requests, ...] to one value per resample.
Statistic = Callable[[Arrays], FloatArray]

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Distribution:
    """Summary of a sample: count, mean, standard deviation and percentiles."""

    n: int
    mean: float
    std: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def describe(values: Sequence[float] | FloatArray) -> Distribution:
    """Mean, std (ddof=1), p50/p90/p99, min and max of the finite values; NaN when there are none."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        nan = float("nan")
        return Distribution(0, nan, nan, nan, nan, nan, nan, nan)
    p50, p90, p99 = (float(v) for v in np.percentile(x, PERCENTILES))
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return Distribution(int(x.size), float(np.mean(x)), std, p50, p90, p99, float(np.min(x)), float(np.max(x)))


def coefficient_of_variation(values: Sequence[float] | FloatArray) -> float:
    """std (ddof=1) / |mean|; NaN for fewer than two values or a zero mean."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan")
    mean = float(np.mean(x))
    if mean == 0:
        return float("nan")
    return float(np.std(x, ddof=1) / abs(mean))


# --------------------------------------------------------------------------- statistics


def quantile_rows(x: FloatArray, q: float) -> FloatArray:
    """The q-th percentile of each row (numpy's default linear interpolation).

    Two-point `np.partition` instead of `np.percentile`: the same numbers, 1.6-3x faster on
    the [resamples, values] blocks of a bootstrap.
    """
    n = x.shape[1]
    pos = q / 100 * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    part = np.partition(x, [lo, hi] if hi != lo else [lo], axis=1)
    return np.asarray(part[:, lo] * (1 - frac) + part[:, hi] * frac, dtype=np.float64)


def percentile_stat(key: str, q: float) -> Statistic:
    """The q-th percentile of all values of `key` in each resample."""

    def stat(arrays: Arrays) -> FloatArray:
        x = arrays[key]
        return quantile_rows(x.reshape(x.shape[0], -1), q)

    return stat


def max_stat(key: str) -> Statistic:
    """The largest value of `key` in each resample (peak memory)."""

    def stat(arrays: Arrays) -> FloatArray:
        x = arrays[key]
        return np.asarray(np.max(x.reshape(x.shape[0], -1), axis=1), dtype=np.float64)

    return stat


def ratio_of_sums_stat(numerator: str, denominator: str, scale: float = 1.0) -> Statistic:
    """scale * sum(numerator) / sum(denominator): throughput as total tokens over total time."""

    def stat(arrays: Arrays) -> FloatArray:
        num = arrays[numerator]
        den = arrays[denominator]
        n = num.reshape(num.shape[0], -1).sum(axis=1)
        d = den.reshape(den.shape[0], -1).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(scale * n / d, dtype=np.float64)

    return stat


def apply(stat: Statistic, arrays: Arrays) -> float:
    """The statistic of the full (not resampled) arrays."""
    return float(stat({k: v[np.newaxis, ...] for k, v in arrays.items()})[0])


def per_repetition(stat: Statistic, arrays: Arrays) -> FloatArray:
    """The statistic of each repetition on its own: its spread is the noise of the machine."""
    reps = _shape(arrays)[0]
    return np.array([apply(stat, {k: v[r : r + 1] for k, v in arrays.items()}) for r in range(reps)])


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Interval:
    """A point value and its bootstrap percentile interval."""

    value: float
    low: float | None
    high: float | None
    confidence: float
    n: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """A statistic of the challenger (`a`), of the champion (`b`) and of their ratio a / b."""

    a: Interval
    b: Interval | None
    ratio: Interval | None


def _shape(arrays: Arrays) -> tuple[int, int]:
    shapes = {v.shape[:2] for v in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(f"arrays disagree on [repetitions, requests]: {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) < 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"arrays need at least one repetition and one request, got shape {shape}")
    return shape[0], shape[1]


def _gather(arrays: Arrays, rep_idx: npt.NDArray[np.intp], req_idx: npt.NDArray[np.intp]) -> dict[str, FloatArray]:
    # x[rep_idx[:, :, None], req_idx[:, None, :]] has shape [resamples, reps, requests, ...].
    return {k: v[rep_idx[:, :, None], req_idx[:, None, :]] for k, v in arrays.items()}


def _interval(value: float, draws: FloatArray, confidence: float, n: int) -> Interval:
    finite = draws[np.isfinite(draws)]
    if not math.isfinite(value) or finite.size < max(10, draws.size // 2):
        # Too many undefined resamples (a zero denominator): no honest interval.
        return Interval(value, None, None, confidence, n)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return Interval(value, float(low), float(high), confidence, n)


def paired_bootstrap(
    stat: Statistic,
    a: Arrays,
    b: Arrays | None = None,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    paired_ratio: bool = False,
    max_elements: int = 4_000_000,
) -> Comparison:
    """Percentile bootstrap intervals of `stat` for `a`, for `b` and for the ratio a / b.

    Args:
        stat: the statistic (see `percentile_stat`, `max_stat`, `ratio_of_sums_stat`).
        a: the challenger's arrays, each shaped [repetitions, requests, ...].
        b: the champion's arrays, same shapes, measured interleaved with `a`; None for one version.
        resamples: bootstrap resamples.
        confidence: level of the intervals.
        seed: the resampling seed (same seed and data, same intervals).
        paired_ratio: the ratio is `stat` of the element-wise ratios a / b (each pair measured back
            to back on the same prompt) instead of stat(a) / stat(b). For a median this is the
            typical slowdown of a request; drift of the machine and the prompt mix cancel pair by
            pair, which makes it several times tighter on a noisy machine.
        max_elements: resamples are drawn in chunks holding at most this many values per array.

    Returns:
        The three intervals; `n` of each is the number of repetitions.
    """
    reps, reqs = _shape(a)
    if b is not None and _shape(b) != (reps, reqs):
        raise ValueError(f"paired arrays need equal shapes, got {(reps, reqs)} and {_shape(b)}")
    rng = np.random.default_rng(seed)
    per_draw = max(int(np.prod(v.shape)) for v in a.values())
    chunk = max(1, min(resamples, max_elements // max(1, per_draw)))
    pairs: dict[str, FloatArray] | None = None
    if b is not None and paired_ratio:
        with np.errstate(divide="ignore", invalid="ignore"):
            pairs = {k: a[k] / b[k] for k in a}
    draws_a: list[FloatArray] = []
    draws_b: list[FloatArray] = []
    draws_pairs: list[FloatArray] = []
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        rep_idx = rng.integers(0, reps, size=(size, reps))
        req_idx = rng.integers(0, reqs, size=(size, reqs))
        draws_a.append(stat(_gather(a, rep_idx, req_idx)))
        if b is not None:
            draws_b.append(stat(_gather(b, rep_idx, req_idx)))
        if pairs is not None:
            draws_pairs.append(stat(_gather(pairs, rep_idx, req_idx)))
        done += size
    da = np.concatenate(draws_a)
    value_a = apply(stat, a)
    ia = _interval(value_a, da, confidence, reps)
    if b is None:
        return Comparison(ia, None, None)
    db = np.concatenate(draws_b)
    value_b = apply(stat, b)
    ib = _interval(value_b, db, confidence, reps)
    if pairs is not None:
        ratio_draws = np.concatenate(draws_pairs)
        ratio_value = apply(stat, pairs)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_draws = da / db
            ratio_value = value_a / value_b if value_b != 0 else float("nan")
    return Comparison(ia, ib, _interval(float(ratio_value), ratio_draws, confidence, reps))


def paired_cv(stat: Statistic, a: Arrays, b: Arrays) -> float:
    """CV across repetitions of `stat` of the element-wise ratios a / b: the noise of the comparison itself."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pairs = {k: a[k] / b[k] for k in a}
    return coefficient_of_variation(per_repetition(stat, pairs))
