"""Pure drift statistics: one explicit test and one effect size per column kind, BH, the decision.

No I/O, no clock, no Evidently types: plain arrays in, plain dataclasses out.

Why two numbers per column: a p-value answers "is there any difference?" and at
100,000 rows it says yes to a 1 % shift nobody cares about; an effect size answers
"how large is it?" and on 50 rows it is mostly noise. A column drifts only when both
agree: significant after Benjamini-Hochberg correction across every tested column,
and at least as large as the column's configured minimum effect.

Methods never depend on the sample size (Evidently switches from p-values to
distances above 1,000 rows without saying so):

* numeric: two-sample Kolmogorov-Smirnov test; effect = Wasserstein-1 distance
  divided by the reference standard deviation (Evidently's `wasserstein`, normed);
* categorical: chi-square test of homogeneity, Fisher's exact test when a 2x2 table
  is sparse (rare categories are pooled first); effect = Jensen-Shannon distance
  (natural log, Evidently's `jensenshannon`);
* embeddings: a classifier trained on half of each window scores the other half;
  its AUC is a Mann-Whitney U statistic, which gives an exact p-value under "same
  distribution"; effect = 2*AUC - 1 (0: indistinguishable, 1: separable; Evidently's
  embeddings `model` method flags AUC > 0.55, i.e. an effect of 0.1).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

ColumnKind = Literal["numeric", "categorical", "embedding"]
FloatArray = npt.NDArray[np.float64]

# Evidently's floor for the reference std in its normed Wasserstein distance.
_MIN_NORM = 0.001
# Expected cell count below which the chi-square approximation is not trusted.
_MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class ColumnTest:
    """One column's test: method, statistic, p-value and effect size, with the sizes behind them."""

    method: str
    statistic: float
    p_value: float
    effect_measure: str
    effect_size: float
    n_reference: int
    n_current: int
    reference_summary: dict[str, float] = field(default_factory=dict)
    current_summary: dict[str, float] = field(default_factory=dict)
    # Embeddings: the classifier's held-out scores (reference, current), the one-number view of a
    # 384-dimensional column that the drift page can draw; not part of the result's identity.
    held_out_scores: tuple[FloatArray, FloatArray] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Untested:
    """Why a column was not tested (it then does not count in the drift share)."""

    reason: str
    n_reference: int = 0
    n_current: int = 0


@dataclass(frozen=True)
class ColumnDecision:
    column: str
    result: ColumnTest
    p_adjusted: float
    min_effect: float
    significant: bool
    large_enough: bool

    @property
    def drifted(self) -> bool:
        return self.significant and self.large_enough


@dataclass(frozen=True)
class DriftDecision:
    columns: list[ColumnDecision]
    fdr_alpha: float

    @property
    def n_tested(self) -> int:
        return len(self.columns)

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def drift_share(self) -> float | None:
        """Share of tested columns that drift; None when nothing could be tested."""
        return len(self.drifted) / self.n_tested if self.n_tested else None


# --------------------------------------------------------------------------- numeric


def _finite(values: Sequence[float] | FloatArray) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def _describe(arr: FloatArray) -> dict[str, float]:
    if arr.size == 0:
        return {}
    q = np.quantile(arr, [0.5, 0.95])
    return {"mean": float(arr.mean()), "p50": float(q[0]), "p95": float(q[1]), "std": float(arr.std())}


def wasserstein_norm(reference: FloatArray, current: FloatArray) -> float:
    """Wasserstein-1 distance in units of the reference std (floored at 0.001, as Evidently does)."""
    from scipy import stats

    norm = max(float(np.std(reference)), _MIN_NORM)
    return float(stats.wasserstein_distance(reference, current)) / norm


def numeric_test(
    reference: Sequence[float] | FloatArray, current: Sequence[float] | FloatArray, min_rows: int = 2
) -> ColumnTest | Untested:
    """Kolmogorov-Smirnov p-value and normed Wasserstein effect; NaN and infinities are dropped."""
    from scipy import stats

    ref, cur = _finite(reference), _finite(current)
    if ref.size < min_rows or cur.size < min_rows:
        return Untested(
            f"too few values ({ref.size} reference, {cur.size} current; need {min_rows})", ref.size, cur.size
        )
    if np.ptp(ref) == 0 and np.ptp(cur) == 0 and ref[0] == cur[0]:
        return Untested("no variation in either window", ref.size, cur.size)
    ks = stats.ks_2samp(ref, cur, method="auto")
    return ColumnTest(
        method="ks",
        statistic=float(ks.statistic),
        p_value=float(ks.pvalue),
        effect_measure="wasserstein_norm",
        effect_size=wasserstein_norm(ref, cur),
        n_reference=int(ref.size),
        n_current=int(cur.size),
        reference_summary=_describe(ref),
        current_summary=_describe(cur),
    )


# --------------------------------------------------------------------------- categorical


def _clean_labels(values: Sequence[object]) -> list[str]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out.append(str(v))
    return out


def jensen_shannon(reference: Mapping[str, int], current: Mapping[str, int]) -> float:
    """Jensen-Shannon distance (natural log) of two category count tables (scipy's)."""
    from scipy.spatial.distance import jensenshannon

    keys = sorted(set(reference) | set(current))
    p = np.array([reference.get(k, 0) for k in keys], dtype=np.float64)
    q = np.array([current.get(k, 0) for k in keys], dtype=np.float64)
    return float(jensenshannon(p, q))


def _pool_rare(table: FloatArray) -> FloatArray:
    """Merge the rarest categories until every expected count reaches 5 or two categories remain."""
    while table.shape[1] > 2:
        expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
        if expected.min() >= _MIN_EXPECTED:
            break
        order = np.argsort(table.sum(axis=0))
        merged = table[:, order[0]] + table[:, order[1]]
        table = np.column_stack([np.delete(table, order[:2], axis=1), merged])
    return table


def categorical_test(
    reference: Sequence[object], current: Sequence[object], min_rows: int = 2
) -> ColumnTest | Untested:
    """Chi-square test of homogeneity (Fisher's exact when a 2x2 is sparse) and Jensen-Shannon effect.

    None and NaN are dropped (e.g. the response descriptors of failed requests).
    """
    from scipy import stats

    ref, cur = _clean_labels(reference), _clean_labels(current)
    if len(ref) < min_rows or len(cur) < min_rows:
        return Untested(
            f"too few values ({len(ref)} reference, {len(cur)} current; need {min_rows})", len(ref), len(cur)
        )
    ref_counts, cur_counts = Counter(ref), Counter(cur)
    keys = sorted(set(ref_counts) | set(cur_counts))
    if len(keys) == 1:
        return Untested("no variation in either window", len(ref), len(cur))
    table = np.array([[ref_counts.get(k, 0) for k in keys], [cur_counts.get(k, 0) for k in keys]], dtype=np.float64)
    pooled = _pool_rare(table)
    expected = np.outer(pooled.sum(axis=1), pooled.sum(axis=0)) / pooled.sum()
    if pooled.shape[1] == 2 and expected.min() < _MIN_EXPECTED:
        fisher = stats.fisher_exact(pooled.astype(np.int64))
        method, statistic, p_value = "fisher_exact", float(fisher.statistic), float(fisher.pvalue)
    else:
        chi2 = stats.chi2_contingency(pooled, correction=False)
        method, statistic, p_value = "chi2", float(chi2.statistic), float(chi2.pvalue)
    n_ref, n_cur = len(ref), len(cur)
    return ColumnTest(
        method=method,
        statistic=statistic,
        p_value=p_value,
        effect_measure="jensenshannon",
        effect_size=jensen_shannon(ref_counts, cur_counts),
        n_reference=n_ref,
        n_current=n_cur,
        reference_summary={k: ref_counts.get(k, 0) / n_ref for k in keys},
        current_summary={k: cur_counts.get(k, 0) / n_cur for k in keys},
    )


# --------------------------------------------------------------------------- embeddings


def _split_half(n: int, rng: np.random.Generator) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    idx = rng.permutation(n)
    half = n // 2
    return idx[:half], idx[half:]


def classifier_test(
    reference: npt.ArrayLike, current: npt.ArrayLike, seed: int = 0, min_rows: int = 20
) -> ColumnTest | Untested:
    """Can a classifier tell the windows apart? Held-out AUC, exact Mann-Whitney p-value.

    Each window is split in halves; a regularised logistic regression is fitted on the
    first halves (classes balanced) and scores the second halves. Under "same
    distribution" the held-out scores of the two windows are exchangeable, so the
    one-sided Mann-Whitney test of "current scores higher" is exact, whatever the fit.
    """
    from scipy import stats
    from sklearn.linear_model import LogisticRegression

    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.ndim != 2 or cur.ndim != 2 or ref.shape[1] != cur.shape[1]:
        raise ValueError(f"embeddings must be two (n x d) arrays of the same d, got {ref.shape} and {cur.shape}")
    if len(ref) < min_rows or len(cur) < min_rows:
        return Untested(
            f"too few embedded rows ({len(ref)} reference, {len(cur)} current; need {min_rows})", len(ref), len(cur)
        )
    rng = np.random.default_rng(seed)
    ref_fit, ref_eval = _split_half(len(ref), rng)
    cur_fit, cur_eval = _split_half(len(cur), rng)
    x_fit = np.vstack([ref[ref_fit], cur[cur_fit]])
    y_fit = np.r_[np.zeros(len(ref_fit)), np.ones(len(cur_fit))]
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=500)
    clf.fit(x_fit, y_fit)
    s_ref = clf.decision_function(ref[ref_eval])
    s_cur = clf.decision_function(cur[cur_eval])
    mw = stats.mannwhitneyu(s_cur, s_ref, alternative="greater")
    auc = float(mw.statistic) / (len(s_cur) * len(s_ref))
    return ColumnTest(
        method="classifier_auc",
        statistic=auc,
        p_value=float(mw.pvalue),
        effect_measure="auc_gini",
        effect_size=max(0.0, 2 * auc - 1),
        n_reference=len(ref),
        n_current=len(cur),
        reference_summary={"held_out": float(len(ref_eval))},
        current_summary={"held_out": float(len(cur_eval))},
        held_out_scores=(np.asarray(s_ref, dtype=np.float64), np.asarray(s_cur, dtype=np.float64)),
    )


def classifier_test_power(n_reference: int, n_current: int, min_gini: float, alpha: float, min_rows: int = 20) -> float:
    """Chance that `classifier_test` rejects "same distribution" at level `alpha` when the windows
    differ by exactly the minimum effect (held-out AUC 0.5 + min_gini / 2).

    Normal approximation of the one-sided Mann-Whitney test on the held-out halves, with the
    null variance of the AUC, (m + n + 1) / (12 m n); `alpha` is the level before any multiple-
    testing correction, so this is an upper bound on the power within the job's
    Benjamini-Hochberg family.
    """
    from scipy import stats

    if n_reference < min_rows or n_current < min_rows:  # `classifier_test` does not test then
        return 0.0
    held_ref, held_cur = n_reference - n_reference // 2, n_current - n_current // 2
    se = math.sqrt((held_ref + held_cur + 1) / (12 * held_ref * held_cur))
    return float(stats.norm.cdf((min_gini / 2) / se - stats.norm.ppf(1 - alpha)))


def classifier_rows_for_power(power: float, min_gini: float, alpha: float, min_rows: int = 20) -> int:
    """The fewest rows per window at which `classifier_test_power` reaches `power` (equal windows).

    At least `min_rows` (below it the test does not run). Raises ValueError for a power outside
    (0, 1) or a minimum effect of 0, which no sample size detects.
    """
    if not 0 < power < 1:
        raise ValueError(f"power must be between 0 and 1, got {power}")
    if min_gini <= 0:
        raise ValueError("a minimum effect of 0 cannot be detected with any number of rows")
    low, high = min_rows, max(min_rows, 64)
    while classifier_test_power(high, high, min_gini, alpha, min_rows) < power:
        low, high = high, high * 2
    while low < high:  # the power grows with the rows: the first n that reaches it
        mid = (low + high) // 2
        if classifier_test_power(mid, mid, min_gini, alpha, min_rows) >= power:
            high = mid
        else:
            low = mid + 1
    return low


# --------------------------------------------------------------------------- correction and decision


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order (scipy's `false_discovery_control`).

    A hypothesis is rejected at false discovery rate alpha exactly when its adjusted
    p-value is <= alpha (the step-up procedure).
    """
    from scipy.stats import false_discovery_control

    if len(p_values) == 0:
        return []
    p = np.asarray(p_values, dtype=np.float64)
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be numbers in [0, 1]")
    return [float(v) for v in false_discovery_control(p, method="bh")]


def decide(results: Mapping[str, ColumnTest], fdr_alpha: float, min_effects: Mapping[str, float]) -> DriftDecision:
    """Which tested columns drift: BH-significant at `fdr_alpha` AND effect >= the column's minimum."""
    names = list(results)
    adjusted = benjamini_hochberg([results[n].p_value for n in names])
    columns = []
    for name, q in zip(names, adjusted, strict=True):
        r = results[name]
        threshold = min_effects[name]
        columns.append(
            ColumnDecision(
                column=name,
                result=r,
                p_adjusted=q,
                min_effect=threshold,
                significant=q <= fdr_alpha,
                large_enough=r.effect_size >= threshold,
            )
        )
    return DriftDecision(columns=columns, fdr_alpha=fdr_alpha)


# --------------------------------------------------------------------------- rates


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (sensible at 0 and at small n; statsmodels')."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    lo, hi = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    # At 0 or n successes the bound is exactly 0 or 1; rounding would leave 1e-17.
    return (0.0 if successes == 0 else max(0.0, float(lo))), (1.0 if successes == n else min(1.0, float(hi)))
