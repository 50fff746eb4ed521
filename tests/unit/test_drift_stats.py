"""Pure drift statistics: tests, effect sizes, Benjamini-Hochberg, the decision, Wilson intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from lockgate.drift import stats
from lockgate.drift.stats import ColumnTest, Untested


def _result(p: float, effect: float) -> ColumnTest:
    return ColumnTest("ks", 0.0, p, "wasserstein_norm", effect, 100, 100)


# --------------------------------------------------------------------------- Benjamini-Hochberg


def test_bh_matches_textbook_example() -> None:
    # Benjamini & Hochberg (1995) style: adjusted = min over larger ranks of p * m / rank.
    p = [0.01, 0.04, 0.03, 0.005]
    assert stats.benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_bh_agrees_with_scipy() -> None:
    p = np.random.default_rng(3).uniform(size=40) ** 3
    assert stats.benjamini_hochberg(p.tolist()) == pytest.approx(sps.false_discovery_control(p, method="bh").tolist())


@pytest.mark.parametrize("bad", [[0.1, float("nan")], [1.2], [-0.1]])
def test_bh_rejects_invalid_p_values(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="p-values"):
        stats.benjamini_hochberg(bad)


def test_bh_empty() -> None:
    assert stats.benjamini_hochberg([]) == []


# --------------------------------------------------------------------------- the decision


@pytest.mark.parametrize(
    ("p", "effect", "significant", "large", "drifted"),
    [
        (1e-9, 0.5, True, True, True),  # both: drift
        (1e-9, 0.01, True, False, False),  # significant but trivial: the 100k-row case
        (0.5, 0.9, False, True, False),  # large but noise: the tiny-sample case
        (0.5, 0.01, False, False, False),
    ],
)
def test_decide_needs_significance_and_effect(
    p: float, effect: float, significant: bool, large: bool, drifted: bool
) -> None:
    decision = stats.decide({"x": _result(p, effect)}, fdr_alpha=0.05, min_effects={"x": 0.1})
    (col,) = decision.columns
    assert (col.significant, col.large_enough, col.drifted) == (significant, large, drifted)
    assert decision.drift_share == (1.0 if drifted else 0.0)


def test_decide_applies_bh_across_columns() -> None:
    # 0.02 alone would pass at 0.05; among 10 columns its adjusted value is 0.2.
    results = {f"c{i}": _result(0.5, 0.5) for i in range(9)} | {"hit": _result(0.02, 0.5)}
    decision = stats.decide(results, 0.05, dict.fromkeys(results, 0.1))
    assert decision.drifted == []
    assert decision.n_tested == 10
    alone = stats.decide({"hit": _result(0.02, 0.5)}, 0.05, {"hit": 0.1})
    assert alone.drifted == ["hit"]


def test_decide_per_column_minimum_effect() -> None:
    results = {"a": _result(1e-6, 0.07), "b": _result(1e-6, 0.07)}
    decision = stats.decide(results, 0.05, {"a": 0.05, "b": 0.1})
    assert decision.drifted == ["a"]
    assert decision.drift_share == 0.5


def test_decide_nothing_tested_has_no_share() -> None:
    assert stats.decide({}, 0.05, {}).drift_share is None


# --------------------------------------------------------------------------- numeric


def test_numeric_trivial_shift_at_large_n_is_significant_but_small() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(100, 10, 100_000)
    cur = rng.normal(100.5, 10, 100_000)  # a 0.05-sigma shift
    r = stats.numeric_test(ref, cur)
    assert isinstance(r, ColumnTest)
    assert r.method == "ks" and r.effect_measure == "wasserstein_norm"
    assert r.p_value < 1e-6
    assert r.effect_size == pytest.approx(0.05, abs=0.01)
    d = stats.decide({"x": r}, 0.05, {"x": 0.1})
    assert d.drifted == []


def test_numeric_real_shift_small_n() -> None:
    rng = np.random.default_rng(1)
    r = stats.numeric_test(rng.normal(0, 1, 300), rng.normal(0.6, 1, 300))
    assert isinstance(r, ColumnTest)
    assert r.p_value < 1e-6 and r.effect_size > 0.4


def test_numeric_matches_evidently_normed_wasserstein() -> None:
    # Evidently: W1 / max(std(reference), 0.001)
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    cur = np.array([2.0, 3.0, 4.0, 5.0])
    r = stats.numeric_test(ref, cur)
    assert isinstance(r, ColumnTest)
    assert r.effect_size == pytest.approx(1.0 / np.std(ref))
    assert r.statistic == pytest.approx(0.25)


def test_numeric_drops_nan_and_reports_sizes() -> None:
    r = stats.numeric_test([1.0, float("nan"), 2.0, 3.0], [1.0, 2.0, float("inf"), 4.0])
    assert isinstance(r, ColumnTest)
    assert (r.n_reference, r.n_current) == (3, 3)


@pytest.mark.parametrize(
    ("ref", "cur", "reason"),
    [
        ([1.0], [1.0, 2.0], "too few values"),
        ([5.0, 5.0, 5.0], [5.0, 5.0], "no variation"),
    ],
)
def test_numeric_untested(ref: list[float], cur: list[float], reason: str) -> None:
    r = stats.numeric_test(ref, cur)
    assert isinstance(r, Untested) and reason in r.reason


def test_numeric_constant_but_different_is_tested() -> None:
    r = stats.numeric_test([5.0] * 50, [7.0] * 50)
    assert isinstance(r, ColumnTest) and r.p_value < 1e-10


# --------------------------------------------------------------------------- categorical


def test_jensen_shannon_matches_scipy_natural_log() -> None:
    from scipy.spatial import distance

    ref = {"ok": 985, "error": 10, "timeout": 5}
    cur = {"ok": 945, "error": 50, "timeout": 5}
    expected = distance.jensenshannon([0.985, 0.01, 0.005], [0.945, 0.05, 0.005])
    assert stats.jensen_shannon(ref, cur) == pytest.approx(expected)
    assert stats.jensen_shannon(ref, ref) == 0.0


def test_categorical_error_rate_jump_drifts_with_status_threshold() -> None:
    ref = ["ok"] * 985 + ["error"] * 10 + ["timeout"] * 5
    cur = ["ok"] * 945 + ["error"] * 50 + ["timeout"] * 5
    r = stats.categorical_test(ref, cur)
    assert isinstance(r, ColumnTest)
    assert r.method == "chi2" and r.p_value < 1e-5
    assert r.effect_size == pytest.approx(0.0865, abs=0.002)
    assert r.current_summary["error"] == pytest.approx(0.05)
    assert stats.decide({"status": r}, 0.05, {"status": 0.05}).drifted == ["status"]


def test_categorical_sparse_uses_fisher_after_pooling() -> None:
    ref = ["no"] * 98 + ["yes"] * 2
    cur = ["no"] * 95 + ["yes"] * 5
    r = stats.categorical_test(ref, cur)
    assert isinstance(r, ColumnTest)
    assert r.method == "fisher_exact"
    assert r.p_value == pytest.approx(sps.fisher_exact([[98, 2], [95, 5]]).pvalue)


def test_categorical_pools_rare_categories_before_chi2() -> None:
    ref = ["a"] * 500 + ["b"] * 500 + ["c"] * 1 + ["d"] * 1
    cur = ["a"] * 500 + ["b"] * 500 + ["d"] * 2
    r = stats.categorical_test(ref, cur)
    assert isinstance(r, ColumnTest)
    assert r.method == "chi2" and r.p_value > 0.5


def test_categorical_ignores_missing_and_detects_single_value() -> None:
    assert isinstance(stats.categorical_test(["yes", None, float("nan")], ["yes", "yes"]), Untested)
    r = stats.categorical_test(["no"] * 60, [None] * 3)
    assert isinstance(r, Untested) and "too few" in r.reason


# --------------------------------------------------------------------------- embeddings


def test_classifier_test_null_and_drift() -> None:
    rng = np.random.default_rng(0)
    same = stats.classifier_test(rng.normal(size=(400, 16)), rng.normal(size=(400, 16)), seed=1)
    assert isinstance(same, ColumnTest)
    assert same.method == "classifier_auc"
    assert 0.4 < same.statistic < 0.6 and same.p_value > 0.01 and same.effect_size < 0.15
    shifted = rng.normal(size=(400, 16))
    shifted[:, 0] += 1.0
    drift = stats.classifier_test(rng.normal(size=(400, 16)), shifted, seed=1)
    assert isinstance(drift, ColumnTest)
    assert (
        drift.statistic > 0.65 and drift.p_value < 1e-6 and drift.effect_size == pytest.approx(2 * drift.statistic - 1)
    )


def test_classifier_test_is_deterministic_and_validates_shapes() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(100, 4)), rng.normal(size=(80, 4))
    assert stats.classifier_test(a, b, seed=7) == stats.classifier_test(a, b, seed=7)
    with pytest.raises(ValueError, match="same d"):
        stats.classifier_test(a, rng.normal(size=(80, 5)))
    assert isinstance(stats.classifier_test(a[:5], b[:5], min_rows=20), Untested)


def test_classifier_null_p_values_are_calibrated() -> None:
    # Under "same distribution" the p-value is (close to) uniform: ~5% below 0.05.
    rng = np.random.default_rng(11)
    ps = [stats.classifier_test(rng.normal(size=(60, 3)), rng.normal(size=(60, 3)), seed=i).p_value for i in range(200)]  # type: ignore[union-attr]
    assert 0.01 <= np.mean(np.array(ps) < 0.05) <= 0.11


# --------------------------------------------------------------------------- rates


@pytest.mark.parametrize(("k", "n"), [(0, 50), (3, 100), (100, 100), (1, 1)])
def test_wilson_interval_contains_estimate(k: int, n: int) -> None:
    lo, hi = stats.wilson_interval(k, n, 0.95)
    assert 0 <= lo <= k / n <= hi <= 1
    if k == 0:
        assert lo == 0 and hi > 0


def test_wilson_interval_known_value() -> None:
    # 10/100 at 95%: [0.0552, 0.1744]
    lo, hi = stats.wilson_interval(10, 100, 0.95)
    assert (round(lo, 4), round(hi, 4)) == (0.0552, 0.1744)


@pytest.mark.parametrize(("k", "n"), [(1, 0), (5, 3), (-1, 3)])
def test_wilson_interval_rejects_bad_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        stats.wilson_interval(k, n, 0.95)


def test_math_isclose_sanity() -> None:
    assert math.isclose(stats.jensen_shannon({"a": 1}, {"b": 1}), math.sqrt(math.log(2)))


def test_classifier_test_power_matches_a_simulation_of_its_held_out_test() -> None:
    """At the minimum effect (AUC 0.55), 300 rows per window (150 held out each): power by the
    normal approximation within 0.04 of the rejection rate of simulated one-sided Mann-Whitney tests."""
    power = stats.classifier_test_power(300, 300, min_gini=0.1, alpha=0.05)
    shift = math.sqrt(2) * sps.norm.ppf(0.55)  # normal scores whose AUC is 0.55
    rng = np.random.default_rng(7)
    ref = rng.normal(size=(4000, 150))
    cur = rng.normal(loc=shift, size=(4000, 150))
    simulated = float(np.mean(sps.mannwhitneyu(cur, ref, alternative="greater", axis=1).pvalue < 0.05))
    assert power == pytest.approx(simulated, abs=0.04)
    assert 0.3 < power < 0.6  # the default sample is under-powered for the minimum effect, not over
    assert stats.classifier_test_power(1600, 1600, 0.1, 0.05) > 0.9
    assert stats.classifier_test_power(1, 1, 0.1, 0.05) == 0.0


@pytest.mark.parametrize("min_gini", [0.1, 0.2, 0.3])
def test_rows_for_a_power_are_the_fewest_that_reach_it(min_gini: float) -> None:
    n = stats.classifier_rows_for_power(0.8, min_gini, 0.05, min_rows=50)
    assert stats.classifier_test_power(n, n, min_gini, 0.05, 50) >= 0.8
    assert stats.classifier_test_power(n - 1, n - 1, min_gini, 0.05, 50) < 0.8
    # a larger effect needs fewer rows; at the default minimum effect 80% needs ~800 per window
    if min_gini == 0.1:
        assert 700 < n < 900
    assert stats.classifier_rows_for_power(0.5, min_gini, 0.05, min_rows=50) < n
    assert stats.classifier_rows_for_power(0.01, 0.9, 0.05, min_rows=50) == 50  # never below the test's minimum


@pytest.mark.parametrize(("power", "min_gini"), [(0.0, 0.1), (1.0, 0.1), (0.8, 0.0)])
def test_rows_for_a_power_refuse_what_no_sample_reaches(power: float, min_gini: float) -> None:
    with pytest.raises(ValueError):
        stats.classifier_rows_for_power(power, min_gini, 0.05)
