"""Bootstrap intervals, win rate from position-swapped pairs, and agreement statistics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from lockgate.judge.statistics import (
    _kappa_rows,
    _spearman_rows,
    bootstrap_agreement,
    bootstrap_difference,
    bootstrap_mean,
    bootstrap_ratio,
    cohen_kappa,
    pair_outcome,
    position_consistency,
    spearman,
    to_levels,
    win_rate,
)


def test_bootstrap_mean_interval_covers_and_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0.5, 0.1, 400)
    a = bootstrap_mean(x, 0.95, 2000, seed=7)
    b = bootstrap_mean(x, 0.95, 2000, seed=7)
    assert a == b
    assert a is not None and a.ci_low is not None and a.ci_high is not None
    assert a.ci_low < 0.5 < a.ci_high
    assert a.n == 400 and a.confidence == 0.95
    # Standard error 0.005: the 95% interval is about +-0.01 wide.
    assert 0.015 < a.ci_high - a.ci_low < 0.025


def test_bootstrap_mean_edges() -> None:
    assert bootstrap_mean([]) is None
    one = bootstrap_mean([0.3])
    assert one is not None and one.ci_low == one.ci_high == 0.3


def test_higher_confidence_widens_the_interval() -> None:
    x = np.random.default_rng(0).normal(size=200)
    narrow = bootstrap_mean(x, 0.8)
    wide = bootstrap_mean(x, 0.99)
    assert narrow and wide and narrow.ci_low and wide.ci_low and narrow.ci_high and wide.ci_high
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low


def test_difference_detects_a_real_shift_and_not_a_null_one() -> None:
    rng = np.random.default_rng(1)
    champion = rng.normal(0.55, 0.15, 200)
    worse = rng.normal(0.35, 0.15, 200)
    same = rng.normal(0.55, 0.15, 200)
    d = bootstrap_difference(worse, champion)
    assert d is not None and d.ci_high is not None and d.ci_high < -0.1
    n = bootstrap_difference(same, champion)
    assert n is not None and n.ci_low is not None and n.ci_high is not None
    assert n.ci_low < 0 < n.ci_high


def test_paired_difference_is_tighter_when_prompts_vary_more_than_versions() -> None:
    rng = np.random.default_rng(2)
    prompt_effect = rng.normal(0, 0.3, 150)
    champion = 0.5 + prompt_effect + rng.normal(0, 0.02, 150)
    challenger = 0.48 + prompt_effect + rng.normal(0, 0.02, 150)
    paired = bootstrap_difference(challenger, champion, paired=True)
    unpaired = bootstrap_difference(challenger, champion, paired=False)
    assert paired and unpaired and paired.ci_low is not None and unpaired.ci_low is not None
    assert paired.ci_high is not None and unpaired.ci_high is not None
    assert paired.ci_high < 0  # the small, consistent drop is visible only when paired
    assert paired.ci_high - paired.ci_low < (unpaired.ci_high - unpaired.ci_low) / 5
    with pytest.raises(ValueError):
        bootstrap_difference([1, 2], [1, 2, 3], paired=True)


def test_ratio_resamples_units() -> None:
    # 3 unscored of 10 judgments over 5 samples.
    r = bootstrap_ratio([1, 0, 2, 0, 0], [2, 2, 2, 2, 2])
    assert r is not None
    assert r.value == pytest.approx(0.3)
    assert r.n == 5
    assert bootstrap_ratio([], []) is None
    assert bootstrap_ratio([0], [0]) is None


@pytest.mark.parametrize(
    ("challenger_first", "champion_first", "outcome"),
    [
        (1.0, 0.0, 1.0),  # challenger wins in both orders
        (0.0, 1.0, 0.0),  # champion wins in both orders
        (1.0, 1.0, 0.5),  # the judge always picks A: position bias cancels to a tie
        (0.0, 0.0, 0.5),  # always B
        (0.8, 0.4, 0.7),  # probabilistic preferences average
        (None, 1.0, None),  # an unscored order makes the pair unscored
        (1.0, None, None),
    ],
)
def test_pair_outcome(challenger_first: float | None, champion_first: float | None, outcome: float | None) -> None:
    assert pair_outcome(challenger_first, champion_first) == (pytest.approx(outcome) if outcome is not None else None)


def test_position_consistency_and_win_rate() -> None:
    assert position_consistency([1.0, 1.0, 0.0], [0.0, 1.0, 1.0]) == pytest.approx(2 / 3)
    assert position_consistency([], []) is None
    w = win_rate([1.0] * 30 + [0.0] * 10)
    assert w is not None and w.value == pytest.approx(0.75) and w.n == 40
    assert w.ci_low is not None and w.ci_high is not None and w.ci_low < 0.75 < w.ci_high


def test_spearman_and_constant_input() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # A judge that gives every answer the same score shows no agreement at all.
    assert spearman([3, 3, 3, 3], [1, 2, 3, 4]) == 0.0


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_sklearn(weights: str | None) -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 5, 80)
    b = np.clip(a + rng.integers(-1, 2, 80), 0, 4)
    ours = cohen_kappa(a, b, 5, weights)
    ref = cohen_kappa_score(a, b, weights=weights, labels=list(range(5)))
    assert ours == pytest.approx(ref)


def test_kappa_edges() -> None:
    assert cohen_kappa([2, 2, 2], [2, 2, 2], 5) == 0.0  # agreement by chance is certain
    assert cohen_kappa([0, 4, 2], [0, 4, 2], 5) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        cohen_kappa([0, 5], [0, 1], 5)


def test_vectorised_rows_equal_scalar_versions() -> None:
    rng = np.random.default_rng(9)
    j = rng.random((6, 40))
    h = np.clip(j + rng.normal(0, 0.3, (6, 40)), 0, 1)
    rows = _spearman_rows(j, h)
    kap = _kappa_rows(to_levels(j, 5), to_levels(h, 5), 5)
    for r in range(6):
        assert rows[r] == pytest.approx(spearman(j[r], h[r]))
        assert kap[r] == pytest.approx(cohen_kappa(to_levels(j[r], 5), to_levels(h[r], 5), 5))


def test_bootstrap_agreement() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, 60) / 4
    good = np.clip(labels + rng.normal(0, 0.1, 60), 0, 1)
    noise = rng.random(60)
    rho, kappa = bootstrap_agreement(good, labels, 5)
    assert rho and kappa and rho.ci_low is not None and kappa.ci_low is not None
    assert rho.value > 0.8 and kappa.value > 0.8 and rho.n == 60
    rho_n, kappa_n = bootstrap_agreement(noise, labels, 5)
    assert rho_n and kappa_n and rho_n.ci_low is not None
    assert rho_n.ci_low < 0.3 and kappa_n.value < 0.4
    assert bootstrap_agreement([0.1, 0.2], [0.1, 0.2], 5) == (None, None)
