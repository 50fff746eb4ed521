"""Estimates with intervals for the quality job: pure numpy over plain sequences.

Every interval is a percentile bootstrap at the policy's confidence, seeded, so the
same data give the same interval. Differences are challenger - champion:
independent resampling of each version's samples when they answered different
prompts (canary traffic), paired resampling when they answered the same prompts
(replay). Agreement with a calibration set's labels (and between two of its labellers) is
Spearman's rank correlation and Cohen's kappa (quadratically weighted, on a 0-1 scale
shared by all rubrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lockgate.evidence import Estimate

if TYPE_CHECKING:
    import numpy as np

    Values = Sequence[float] | np.ndarray
    Levels = Sequence[int] | np.ndarray


def _rng(seed: int) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng(seed)


def _bounds(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    import numpy as np

    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _indices(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    return rng.integers(0, n, size=(resamples, n))


def bootstrap_mean(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Estimate | None:
    """Mean with a bootstrap interval; None for no values. One value: a zero-width interval."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    mean = float(x.mean())
    if x.size == 1:
        return Estimate(value=mean, ci_low=mean, ci_high=mean, confidence=confidence, n=1)
    rng = _rng(seed)
    means = x[_indices(rng, x.size, resamples)].mean(axis=1)
    low, high = _bounds(means, confidence)
    return Estimate(value=mean, ci_low=low, ci_high=high, confidence=confidence, n=int(x.size))


def bootstrap_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate | None:
    """sum(numerators) / sum(denominators), resampling units (e.g. samples with several judgments).

    `n` is the number of units; None when the denominators sum to zero.
    """
    import numpy as np

    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if num.shape != den.shape:
        raise ValueError(f"shapes differ: {num.shape} vs {den.shape}")
    total = float(den.sum())
    if num.size == 0 or total <= 0:
        return None
    value = float(num.sum()) / total
    rng = _rng(seed)
    idx = _indices(rng, num.size, resamples)
    den_b = den[idx].sum(axis=1)
    # A resample with no denominator cannot happen when every unit has one; guard anyway.
    ratios = np.divide(num[idx].sum(axis=1), den_b, out=np.full(resamples, value), where=den_b > 0)
    low, high = _bounds(ratios, confidence)
    return Estimate(value=value, ci_low=low, ci_high=high, confidence=confidence, n=int(num.size))


def bootstrap_difference(
    challenger: Sequence[float],
    champion: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    paired: bool = False,
) -> Estimate | None:
    """mean(challenger) - mean(champion) with a bootstrap interval.

    `paired`: the i-th values of both answer the same prompt, so prompts are resampled
    together (a much tighter interval when prompts vary more than versions do).
    `n` is the smaller sample size (the pairs when paired).
    """
    import numpy as np

    a = np.asarray(challenger, dtype=np.float64)
    b = np.asarray(champion, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return None
    value = float(a.mean() - b.mean())
    rng = _rng(seed)
    if paired:
        if a.size != b.size:
            raise ValueError(f"paired samples differ in size: {a.size} vs {b.size}")
        d = a - b
        if d.size == 1:
            return Estimate(value=value, ci_low=value, ci_high=value, confidence=confidence, n=1)
        diffs = d[_indices(rng, d.size, resamples)].mean(axis=1)
        n = int(d.size)
    else:
        diffs = a[_indices(rng, a.size, resamples)].mean(axis=1) - b[_indices(rng, b.size, resamples)].mean(axis=1)
        n = int(min(a.size, b.size))
    low, high = _bounds(diffs, confidence)
    return Estimate(value=value, ci_low=low, ci_high=high, confidence=confidence, n=n)


def pair_outcome(challenger_first: float | None, champion_first: float | None) -> float | None:
    """One prompt's outcome for the challenger from two position-swapped pairwise judgments.

    Each argument is the judge's preference for the FIRST answer shown (1 = A wins,
    0 = B wins, in between for a probabilistic judge). Returns the challenger's
    average preference over both orders (1 win, 0 loss, 0.5 tie or position-driven
    split), or None when either order is unscored: one order alone cannot cancel
    position bias.
    """
    if challenger_first is None or champion_first is None:
        return None
    return (challenger_first + (1.0 - champion_first)) / 2.0


def position_consistency(challenger_first: Sequence[float], champion_first: Sequence[float]) -> float | None:
    """Share of prompts where both orders pick the same winner (1.0: no position bias seen)."""
    pairs = list(zip(challenger_first, champion_first, strict=True))
    if not pairs:
        return None
    agree = sum(1 for a, b in pairs if (a > 0.5) == (b < 0.5) and a != 0.5 and b != 0.5)
    return agree / len(pairs)


def win_rate(
    outcomes: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Estimate | None:
    """Challenger's win rate (ties count half) with a bootstrap interval over prompts."""
    return bootstrap_mean(outcomes, confidence, resamples, seed)


def spearman(x: Values, y: Values) -> float:
    """Spearman's rho; 0.0 when either side is constant (no ranking, so no agreement to show)."""
    import numpy as np
    from scipy.stats import spearmanr

    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    rho = float(spearmanr(a, b).statistic)
    return rho if np.isfinite(rho) else 0.0


def cohen_kappa(a: Levels, b: Levels, n_levels: int, weights: str | None = "quadratic") -> float:
    """Cohen's kappa of two raters over ordinal levels 0..n_levels-1.

    `weights`: None (plain kappa), "linear" or "quadratic" disagreement weights.
    1.0 is perfect agreement, 0.0 chance-level; 0.0 when agreement by chance is certain.
    """
    import numpy as np

    x = np.asarray(a, dtype=np.int64)
    y = np.asarray(b, dtype=np.int64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    if x.size == 0:
        return 0.0
    if x.min() < 0 or y.min() < 0 or x.max() >= n_levels or y.max() >= n_levels:
        raise ValueError(f"levels must be in 0..{n_levels - 1}")
    observed = np.zeros((n_levels, n_levels))
    np.add.at(observed, (x, y), 1.0)
    observed /= x.size
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices((n_levels, n_levels))
    if weights is None:
        w = (i != j).astype(np.float64)
    elif weights == "linear":
        w = np.abs(i - j) / max(1, n_levels - 1)
    elif weights == "quadratic":
        w = ((i - j) / max(1, n_levels - 1)) ** 2
    else:
        raise ValueError(f"unknown weights {weights!r}")
    denom = float((w * expected).sum())
    if denom == 0:
        return 0.0
    return 1.0 - float((w * observed).sum()) / denom


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (vectorised over bootstrap resamples); 0 where a row is constant."""
    import numpy as np
    from scipy.stats import rankdata

    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    num = (ra * rb).sum(axis=1)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    out: np.ndarray = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return out


def _kappa_rows(a: np.ndarray, b: np.ndarray, n_levels: int) -> np.ndarray:
    """Quadratic-weighted kappa of each row pair (vectorised); 0 where chance agreement is certain."""
    import numpy as np

    rows, n = a.shape
    flat = (np.arange(rows)[:, None] * n_levels * n_levels + a * n_levels + b).ravel()
    observed = np.bincount(flat, minlength=rows * n_levels * n_levels).reshape(rows, n_levels, n_levels) / n
    expected = observed.sum(axis=2)[:, :, None] * observed.sum(axis=1)[:, None, :]
    i, j = np.indices((n_levels, n_levels))
    w = ((i - j) / max(1, n_levels - 1)) ** 2
    num = (w * observed).sum(axis=(1, 2))
    den = (w * expected).sum(axis=(1, 2))
    return np.where(den > 0, 1.0 - np.divide(num, den, out=np.zeros_like(num), where=den > 0), 0.0)


def to_levels(values: Values, n_levels: int) -> np.ndarray:
    """Scores on a 0-1 scale rounded to the nearest of `n_levels` evenly spaced levels."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    return np.clip(np.rint(v * (n_levels - 1)), 0, n_levels - 1).astype(np.int64)


def bootstrap_agreement(
    judge: Sequence[float],
    labels: Sequence[float],
    n_levels: int,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[Estimate | None, Estimate | None]:
    """Spearman and quadratic-weighted kappa of a judge (or a labeller) against labels, with bootstrap intervals.

    Both inputs are on a shared 0-1 scale; kappa rounds them to `n_levels` levels.
    """
    import numpy as np

    j = np.asarray(judge, dtype=np.float64)
    h = np.asarray(labels, dtype=np.float64)
    if j.size < 3:
        return None, None
    jl, hl = to_levels(j, n_levels), to_levels(h, n_levels)
    rho = spearman(j, h)
    kappa = cohen_kappa(jl, hl, n_levels)
    rng = _rng(seed)
    idx = _indices(rng, j.size, resamples)
    rhos = _spearman_rows(j[idx], h[idx])
    kappas = _kappa_rows(jl[idx], hl[idx], n_levels)
    r_low, r_high = _bounds(rhos, confidence)
    k_low, k_high = _bounds(kappas, confidence)
    n = int(j.size)
    return (
        Estimate(value=rho, ci_low=r_low, ci_high=r_high, confidence=confidence, n=n),
        Estimate(value=kappa, ci_low=k_low, ci_high=k_high, confidence=confidence, n=n),
    )
