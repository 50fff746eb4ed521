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
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int


def z_value(confidence: float) -> float:
    # The standard library's normal quantile: importing scipy.stats costs seconds in a fresh worker.
    return NormalDist().inv_cdf(0.5 + confidence / 2)


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


def resample_counts(
    strata: IntArray, weights: Mapping[int, float], resamples: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """How often each request is drawn in each of `resamples` bootstrap resamples, (resamples, n).

    Requests are resampled within their stratum (so the mix stays fixed); requests in a stratum
    without a weight are never drawn. One matrix serves every statistic of a group: a resample
    is a set of requests, and each statistic is computed on the same set.
    """
    n = strata.size
    columns = []
    for s in weights:
        positions = np.flatnonzero(strata == s)
        if positions.size:
            columns.append(positions[rng.integers(0, positions.size, size=(resamples, positions.size))])
    if not columns:
        return np.zeros((resamples, n), dtype=np.float32)
    drawn = np.concatenate(columns, axis=1)
    flat = (drawn + (np.arange(resamples, dtype=np.int64) * n)[:, None]).ravel()
    counts: npt.NDArray[np.float32] = np.bincount(flat, minlength=resamples * n).astype(np.float32)
    return counts.reshape(resamples, n)


def request_weights(strata: IntArray, weights: Mapping[int, float], defined: npt.NDArray[np.bool_]) -> FloatArray:
    """Each request's weight in a statistic: `w_s / n_s` over the requests the statistic is defined on."""
    out = np.zeros(strata.size, dtype=np.float64)
    for s, w in weights.items():
        mask = defined & (strata == s)
        k = int(mask.sum())
        if k:
            out[mask] = w / k
    return out


@dataclass(frozen=True)
class Resampled:
    """One group's requests and their bootstrap resamples under one stratification."""

    strata: IntArray
    weights: dict[int, float]
    counts: npt.NDArray[np.float32]  # (resamples, n)

    def _scales(self, defined: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.float32], FloatArray, IntArray]:
        """Per stratum: a one-hot of the requests the statistic is defined on (n, S); each resample's weight
        of one drawn request of that stratum, `w_s / (defined requests drawn from s)` (resamples, S); and
        each request's stratum column (-1 when undefined or unweighted).

        A stratum weighs `w_s` in every resample, shared among its drawn requests, so the mix stays fixed.
        The sums run as matrix products over the counts: one BLAS pass each, no per-resample sorting.
        """
        keys = list(self.weights)
        onehot = np.zeros((self.strata.size, len(keys)), dtype=np.float32)
        column = np.full(self.strata.size, -1, dtype=np.int64)
        for j, s in enumerate(keys):
            mask = defined & (self.strata == s)
            onehot[mask, j] = 1.0
            column[mask] = j
        drawn = self.counts @ onehot
        ws = np.array([self.weights[s] for s in keys], dtype=np.float64)
        scale = np.divide(ws[None, :], drawn, out=np.zeros(drawn.shape, dtype=np.float64), where=drawn > 0)
        return onehot, scale, column

    def quantiles(self, x: FloatArray, qs: Sequence[float]) -> tuple[FloatArray, FloatArray, int]:
        """Weighted quantiles as observed (len(qs),), their draws (len(qs), resamples), and n.

        A resample's q-quantile lies close to the observed one in rank, so each draw adds up the weight
        of the requests below a band of ranks around it (one matrix product) and walks the band only;
        the rare resample whose quantile falls outside the band is computed in full.
        """
        defined = np.isfinite(x)
        w = request_weights(self.strata, self.weights, defined)
        n = int(np.count_nonzero(w))
        resamples = self.counts.shape[0]
        if n == 0:
            return np.full(len(qs), np.nan), np.full((len(qs), resamples), np.nan), 0
        onehot, scale, column = self._scales(defined & (w > 0))
        total = (scale * (self.counts @ onehot)).sum(axis=1)  # 1 where every stratum was drawn
        order = np.argsort(np.where(w > 0, x, np.inf), kind="stable")[:n]
        xs = x[order]
        point_cum = np.cumsum(w[order])
        points = np.empty(len(qs))
        draws = np.empty((len(qs), resamples))
        for i, q in enumerate(qs):
            k0 = min(int((point_cum < q * point_cum[-1]).sum()), n - 1)
            points[i] = xs[k0]
            # ten binomial standard deviations of rank, stretched by the strata's unequal weights
            spread = math.sqrt(q * (1 - q) * n) * math.sqrt(n * float((w[w > 0] ** 2).sum()))
            half = int(10 * spread) + 20
            lo, hi = max(0, k0 - half), min(n, k0 + half + 1)
            below = np.zeros_like(onehot)
            below[order[:lo]] = onehot[order[:lo]]
            cum_below = (scale * (self.counts @ below)).sum(axis=1)
            band = self.counts[:, order[lo:hi]] * scale[:, column[order[lo:hi]]]
            cum = cum_below[:, None] + np.cumsum(band, axis=1)
            target = q * total
            k = lo + (cum < target[:, None]).sum(axis=1)
            outside = (cum_below >= target) | (cum[:, -1] < target)
            for r in np.flatnonzero(outside & (total > 0)):
                row = self.counts[r, order] * scale[r, column[order]]
                k[r] = int((np.cumsum(row) < target[r]).sum())
            draws[i] = np.where(total > 0, xs[np.minimum(k, n - 1)], np.nan)
        return points, draws, n

    def ratio_of_sums(self, num: FloatArray, den: FloatArray) -> tuple[float, FloatArray, int]:
        """sum(num) / sum(den), weighted (a mean when `den` is all ones), as observed and per resample."""
        defined = np.isfinite(num) & np.isfinite(den)
        w = request_weights(self.strata, self.weights, defined)
        n = int(np.count_nonzero(w))
        onehot, scale, _ = self._scales(defined & (w > 0))
        num0 = np.where(w > 0, num, 0.0).astype(np.float32)
        den0 = np.where(w > 0, den, 0.0).astype(np.float32)
        top = (scale * (self.counts @ (onehot * num0[:, None]))).sum(axis=1)
        bottom = (scale * (self.counts @ (onehot * den0[:, None]))).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            draws = np.where(bottom > 0, top / bottom, np.nan)
            point = float(w @ num0 / (w @ den0)) if n and (w @ den0) > 0 else math.nan
        return point, draws, n


def resampled(strata: IntArray, weights: Mapping[int, float], resamples: int, rng: np.random.Generator) -> Resampled:
    return Resampled(strata, dict(weights), resample_counts(strata, weights, resamples, rng))


def percentile_interval(point: float, draws: FloatArray, confidence: float, n: int) -> Interval:
    finite = draws[np.isfinite(draws)]
    if finite.size < max(10, draws.size // 2) or not math.isfinite(point):
        return Interval(point, math.nan, math.nan, n)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    return Interval(point, float(lo), float(hi), n)


def ratio_interval(pa: float, da: FloatArray, pb: float, db: FloatArray, confidence: float, n: int) -> Interval:
    """a / b of two independent groups: draw i of a over draw i of b."""
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = np.where(db > 0, da / db, np.nan)
        point = pa / pb if pb > 0 else math.nan
    return percentile_interval(point, draws, confidence, n)


def difference_interval(pa: float, da: FloatArray, pb: float, db: FloatArray, confidence: float, n: int) -> Interval:
    return percentile_interval(pa - pb, da - db, confidence, n)


# --------------------------------------------------------------------------- rates


def wilson(successes: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (statsmodels'); `n` may be an effective (non-integer) size."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return math.nan, math.nan
    p = min(1.0, max(0.0, successes / n))
    lo, hi = proportion_confint(p * n, n, alpha=1 - confidence, method="wilson")
    return (0.0 if p <= 0 else max(0.0, float(lo))), (1.0 if p >= 1 else min(1.0, float(hi)))


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
    """Newcombe's hybrid score interval of a - b from the two Wilson intervals (method 10).

    Ours, not statsmodels' `confint_proportions_2indep(method="newcomb")`: that one takes raw counts,
    while these rates are standardised over prompt-length strata and come with effective sizes.
    """
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
