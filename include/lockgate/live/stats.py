"""Estimators of the production evidence: pure functions over numpy arrays and counts.

Two groups of requests are compared (a canary against the champion in the same hours, or
the champion against its own baseline window). A canary can get a different mix of prompt
lengths, and time to first token grows with the prompt, so every estimate exists twice:

* raw: the group's own requests as they came;
* stratified (direct standardisation): strata are the quantiles of `prompt_tokens` in the
  pooled sample of both groups, and each group's statistic is computed as if its requests
  had the pooled mix (each request weighs `w_s / n_gs`, `w_s` the pooled share of its
  stratum). The gates read the stratified estimate.

Quantiles, means and ratios of sums get percentile-bootstrap intervals (resampling within
each stratum, so the mix stays fixed); rates get Wilson intervals (with Kish's effective
sample size when stratified) and differences of rates Newcombe's hybrid score interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

StatKind = Literal["mean", "ratio_of_sums"]


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int


def z_value(confidence: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(0.5 + confidence / 2))


# --------------------------------------------------------------------------- strata


def stratum_cutoffs(pooled_prompt_tokens: Sequence[float] | FloatArray, strata: int) -> list[float]:
    """Inner cut points of `strata` equal-count strata of the pooled prompt lengths (ties merged).

    A request with `prompt_tokens <= cut[0]` is in stratum 0, `<= cut[1]` in stratum 1, and so on.
    """
    values = np.asarray(pooled_prompt_tokens, dtype=np.float64)
    values = values[np.isfinite(values)]
    if strata <= 1 or values.size == 0:
        return []
    qs = np.linspace(0, 1, strata + 1)[1:-1]
    cuts = sorted({float(c) for c in np.quantile(values, qs, method="lower")})
    # A cut at the maximum would leave an empty top stratum.
    return [c for c in cuts if c < float(values.max())]


def assign_strata(prompt_tokens: Sequence[float] | FloatArray, cutoffs: Sequence[float]) -> IntArray:
    """Stratum index of each request (missing lengths go to stratum 0)."""
    x = np.nan_to_num(np.asarray(prompt_tokens, dtype=np.float64), nan=0.0)
    return np.searchsorted(np.asarray(cutoffs, dtype=np.float64), x, side="left").astype(np.int64)


def pooled_weights(counts_a: Mapping[int, int], counts_b: Mapping[int, int], min_cell: int = 1) -> dict[int, float]:
    """Pooled share of each stratum, over the strata both groups populate (at least `min_cell` each)."""
    strata = set(counts_a) | set(counts_b)
    common = [s for s in strata if counts_a.get(s, 0) >= min_cell and counts_b.get(s, 0) >= min_cell]
    total = sum(counts_a[s] + counts_b[s] for s in common)
    if total == 0:
        return {}
    return {s: (counts_a[s] + counts_b[s]) / total for s in sorted(common)}


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Cells:
    """One group's values of a variable, split by stratum, with the weight each stratum gets."""

    values: list[FloatArray]  # per stratum
    denominators: list[FloatArray] | None  # for ratio_of_sums
    weights: list[float]  # per stratum, summing to 1

    @property
    def n(self) -> int:
        return int(sum(v.size for v in self.values))


def make_cells(
    values: FloatArray,
    strata: IntArray,
    weights: Mapping[int, float],
    denominators: FloatArray | None = None,
) -> Cells:
    """Split a variable's finite values by stratum; strata without a weight are left out."""
    ok = np.isfinite(values)
    if denominators is not None:
        ok &= np.isfinite(denominators)
    vals, dens, ws = [], [], []
    for s, w in weights.items():
        mask = ok & (strata == s)
        if not mask.any():
            continue
        vals.append(values[mask])
        if denominators is not None:
            dens.append(denominators[mask])
        ws.append(w)
    total = sum(ws)
    return Cells(vals, dens if denominators is not None else None, [w / total for w in ws] if total else ws)


def _statistic(kind: StatKind, values: FloatArray, weights: FloatArray, denominators: FloatArray | None) -> FloatArray:
    """The statistic of each row of `values` (rows: bootstrap draws; columns: requests)."""
    if kind == "mean":
        return np.asarray((values * weights).sum(axis=1) / weights.sum(), dtype=np.float64)
    assert denominators is not None  # ratio_of_sums
    den = (denominators * weights).sum(axis=1)
    num = (values * weights).sum(axis=1)
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


def bootstrap(cells: Cells, kind: StatKind, resamples: int, rng: np.random.Generator) -> tuple[float, FloatArray]:
    """The statistic on the cells as observed, and `resamples` draws resampled within each stratum."""
    if cells.n == 0:
        return math.nan, np.full(resamples, np.nan)
    per_obs_w = np.concatenate([np.full(v.size, w / v.size) for v, w in zip(cells.values, cells.weights, strict=True)])
    observed = np.concatenate(cells.values)[None, :]
    obs_den = np.concatenate(cells.denominators)[None, :] if cells.denominators is not None else None
    point = float(_statistic(kind, observed, per_obs_w, obs_den)[0])
    draws_v, draws_d = [], []
    for i, v in enumerate(cells.values):
        idx = rng.integers(0, v.size, size=(resamples, v.size))
        draws_v.append(v[idx])
        if cells.denominators is not None:
            draws_d.append(cells.denominators[i][idx])
    values = np.concatenate(draws_v, axis=1)
    den = np.concatenate(draws_d, axis=1) if draws_d else None
    return point, _statistic(kind, values, per_obs_w, den)


def _quantiles_of_rows(values: FloatArray, weights: FloatArray, qs: Sequence[float]) -> FloatArray:
    """Weighted quantiles of each row, (len(qs), rows); one sort serves every q."""
    rows = np.arange(values.shape[0])[:, None]
    uniform = bool(np.all(weights == weights[0]))
    if uniform:
        sorted_vals = np.sort(values, axis=1)
        cum = np.cumsum(np.broadcast_to(weights, values.shape[1:]))[None, :]
    else:
        order = np.argsort(values, axis=1)
        sorted_vals = values[rows, order]
        cum = np.cumsum(weights[order], axis=1)
    total = cum[:, -1:]
    out = np.empty((len(qs), values.shape[0]), dtype=np.float64)
    for i, q in enumerate(qs):
        idx = np.minimum((cum < q * total).sum(axis=1), values.shape[1] - 1)
        out[i] = sorted_vals[np.arange(values.shape[0]), idx]
    return out


def bootstrap_quantiles(
    cells: Cells, qs: Sequence[float], resamples: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Weighted quantiles as observed (len(qs),) and their within-stratum bootstrap draws (len(qs), resamples)."""
    if cells.n == 0:
        return np.full(len(qs), np.nan), np.full((len(qs), resamples), np.nan)
    per_obs_w = np.concatenate([np.full(v.size, w / v.size) for v, w in zip(cells.values, cells.weights, strict=True)])
    observed = np.concatenate(cells.values)[None, :]
    points = _quantiles_of_rows(observed, per_obs_w, qs)[:, 0]
    # float32 draws: half the memory and faster sorts; latencies need no more precision than that.
    draws = np.concatenate(
        [v.astype(np.float32)[rng.integers(0, v.size, size=(resamples, v.size))] for v in cells.values], axis=1
    )
    return points, _quantiles_of_rows(draws, per_obs_w, qs)


def compare_quantiles(
    a: Cells, b: Cells, qs: Sequence[float], resamples: int, confidence: float, seed: int
) -> list[tuple[Interval, Interval, Interval]]:
    """For each q: group a's quantile, group b's, and a / b, with percentile-bootstrap intervals."""
    rng = np.random.default_rng(seed)
    pa, da = bootstrap_quantiles(a, qs, resamples, rng)
    pb, db = bootstrap_quantiles(b, qs, resamples, rng)
    out = []
    for i in range(len(qs)):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_draws = np.where(db[i] > 0, da[i] / db[i], np.nan)
            ratio_point = float(pa[i] / pb[i]) if pb[i] > 0 else math.nan
        out.append(
            (
                percentile_interval(float(pa[i]), da[i], confidence, a.n),
                percentile_interval(float(pb[i]), db[i], confidence, b.n),
                percentile_interval(ratio_point, ratio_draws, confidence, a.n),
            )
        )
    return out


def percentile_interval(point: float, draws: FloatArray, confidence: float, n: int) -> Interval:
    finite = draws[np.isfinite(draws)]
    if finite.size < max(10, draws.size // 2) or not math.isfinite(point):
        return Interval(point, math.nan, math.nan, n)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    return Interval(point, float(lo), float(hi), n)


def compare_bootstrap(
    a: Cells, b: Cells, kind: StatKind, resamples: int, confidence: float, seed: int
) -> tuple[Interval, Interval, Interval, Interval]:
    """Estimates of group a, group b, a / b and a - b, with percentile-bootstrap intervals.

    The groups are independent samples, so each is resampled on its own and draw i of a is
    compared with draw i of b.
    """
    rng = np.random.default_rng(seed)
    pa, da = bootstrap(a, kind, resamples, rng)
    pb, db = bootstrap(b, kind, resamples, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_draws = np.where(db > 0, da / db, np.nan)
        ratio_point = pa / pb if pb > 0 else math.nan
    return (
        percentile_interval(pa, da, confidence, a.n),
        percentile_interval(pb, db, confidence, b.n),
        percentile_interval(ratio_point, ratio_draws, confidence, a.n),
        percentile_interval(pa - pb, da - db, confidence, a.n),
    )


# --------------------------------------------------------------------------- rates


def wilson(successes: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion; `n` may be an effective (non-integer) size."""
    if n <= 0:
        return math.nan, math.nan
    z = z_value(confidence)
    p = min(1.0, max(0.0, successes / n))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if p <= 0 else max(0.0, centre - half)
    hi = 1.0 if p >= 1 else min(1.0, centre + half)
    return lo, hi


@dataclass(frozen=True)
class Rate:
    value: float
    low: float
    high: float
    n: int  # requests behind it
    n_effective: float


def standardized_rate(
    successes: Mapping[int, int], totals: Mapping[int, int], weights: Mapping[int, float], confidence: float
) -> Rate:
    """Directly standardised rate sum_s w_s p_s, Wilson interval at Kish's effective size.

    With one stratum of weight 1 this is the plain rate and the plain Wilson interval.
    """
    used = {s: w for s, w in weights.items() if totals.get(s, 0) > 0}
    wsum = sum(used.values())
    n = int(sum(totals.get(s, 0) for s in used))
    if not used or wsum <= 0:
        return Rate(math.nan, math.nan, math.nan, n, 0.0)
    w = {s: v / wsum for s, v in used.items()}
    p = sum(w[s] * successes.get(s, 0) / totals[s] for s in w)
    n_eff = 1.0 / sum(w[s] ** 2 / totals[s] for s in w)
    lo, hi = wilson(p * n_eff, n_eff, confidence)
    return Rate(p, lo, hi, n, n_eff)


def newcombe_difference(a: Rate, b: Rate) -> tuple[float, float, float]:
    """Newcombe's hybrid score interval of a - b from the two Wilson intervals (method 10)."""
    d = a.value - b.value
    if not all(math.isfinite(x) for x in (a.value, a.low, a.high, b.value, b.low, b.high)):
        return d, math.nan, math.nan
    lower = d - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    upper = d + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return d, lower, upper


# --------------------------------------------------------------------------- sample size


def requests_needed(
    value: float, low: float, high: float, n: int, limit: float, comparison: Literal["ratio", "difference"]
) -> int | None:
    """How many requests (of the group the interval's width shrinks with) resolve `limit`.

    The half-width of an interval shrinks as 1/sqrt(n); the threshold is resolved once the
    interval no longer straddles it. A ratio is handled on the log scale. None when the point
    estimate sits on the limit (no sample size resolves it) or the interval is unusable.
    """
    if n <= 0 or not all(math.isfinite(x) for x in (value, low, high, limit)):
        return None
    if comparison == "ratio":
        if min(value, low, high, limit) <= 0:
            return None
        half, gap = (math.log(high) - math.log(low)) / 2, abs(math.log(limit) - math.log(value))
    else:
        half, gap = (high - low) / 2, abs(limit - value)
    if gap <= 0 or half <= 0:
        return None
    return max(n, math.ceil(n * (half / gap) ** 2))
