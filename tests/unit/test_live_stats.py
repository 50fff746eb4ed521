"""The production evidence's estimators and gates: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from lockgate.errors import ConfigError
from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence
from lockgate.live.compare import Group, compare_groups
from lockgate.live.stats import (
    assign_strata,
    newcombe_difference,
    pooled_weights,
    ratio_interval,
    requests_needed,
    resampled,
    standardized_rate,
    stratum_cutoffs,
    wilson,
)
from lockgate.logs.aggregates import StratumCounts, VersionCounts
from lockgate.policy.gates import assess_evidence, estimate_name, evaluate_gate
from lockgate.policy.schema import Gate, parse_policy

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(("k", "n"), [(0, 50), (3, 50), (25, 50), (50, 50), (1, 3000), (120, 3000)])
def test_wilson_matches_statsmodels(k: int, n: int) -> None:
    from statsmodels.stats.proportion import proportion_confint

    assert wilson(k, n, 0.95) == pytest.approx(proportion_confint(k, n, 0.05, method="wilson"), abs=1e-9)


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), [(10, 300, 4, 700), (0, 200, 5, 800), (30, 1000, 30, 1000)])
def test_newcombe_difference_matches_statsmodels(k1: int, n1: int, k2: int, n2: int) -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep

    a = standardized_rate({0: k1}, {0: n1}, {0: 1.0}, 0.95)
    b = standardized_rate({0: k2}, {0: n2}, {0: 1.0}, 0.95)
    d, lo, hi = newcombe_difference(a, b)
    ref = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=0.05)
    assert d == pytest.approx(k1 / n1 - k2 / n2)
    assert (lo, hi) == pytest.approx(ref, abs=1e-9)


def test_standardized_rate_reweights_strata_to_the_pooled_mix() -> None:
    # 10% errors on long prompts, 0% on short ones; the group saw mostly long prompts.
    rate = standardized_rate({0: 0, 1: 80}, {0: 200, 1: 800}, {0: 0.5, 1: 0.5}, 0.95)
    assert rate.value == pytest.approx(0.05)
    assert rate.n == 1000
    assert rate.low < 0.05 < rate.high
    # Kish's effective size is below n when the weights differ from the group's own mix
    assert rate.n_effective < 1000


def test_cutoffs_and_strata() -> None:
    x = np.arange(1, 101, dtype=float)
    cuts = stratum_cutoffs(x, 4)
    assert cuts == [25.0, 50.0, 75.0]
    s = assign_strata([1, 25, 26, 75, 76, 100, np.nan], cuts)
    assert s.tolist() == [0, 0, 1, 2, 3, 3, 0]
    assert stratum_cutoffs([5.0] * 10, 4) == []  # ties merge into one stratum
    assert pooled_weights({0: 10, 1: 10}, {0: 10, 1: 0}) == {0: 1.0}  # a stratum one group lacks is left out


def _quantile_ratio(a: np.ndarray, b: np.ndarray, q: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    ra = resampled(np.zeros(a.size, dtype=np.int64), {0: 1.0}, 1000, rng)
    rb = resampled(np.zeros(b.size, dtype=np.int64), {0: 1.0}, 1000, rng)
    (pa,), (da,), na = ra.quantiles(a, [q])
    (pb,), (db,), _ = rb.quantiles(b, [q])
    return pa, ratio_interval(pa, da, pb, db, 0.95, na)


def test_quantile_ratio_interval_covers_the_truth_and_excludes_no_change() -> None:
    rng = np.random.default_rng(1)
    a = rng.lognormal(np.log(100), 0.25, 3000) * 1.2
    b = rng.lognormal(np.log(100), 0.25, 3000)
    point, ratio = _quantile_ratio(a, b, 0.9)
    assert point == pytest.approx(np.quantile(a, 0.9, method="inverted_cdf"))
    assert ratio.low < 1.2 < ratio.high
    assert ratio.low > 1.1


def test_same_distribution_gives_an_interval_around_one() -> None:
    rng = np.random.default_rng(2)
    _, ratio = _quantile_ratio(rng.lognormal(4, 0.3, 2000), rng.lognormal(4, 0.3, 2000), 0.5)
    assert ratio.low < 1.0 < ratio.high


def test_undefined_values_are_left_out_and_resamples_stay_within_strata() -> None:
    rng = np.random.default_rng(4)
    strata = np.array([0] * 50 + [1] * 50)
    r = resampled(strata, {0: 0.5, 1: 0.5}, 200, rng)
    assert (r.counts[:, :50].sum(axis=1) == 50).all() and (r.counts[:, 50:].sum(axis=1) == 50).all()
    x = np.concatenate([np.full(50, 1.0), np.full(50, 3.0)])
    x[:10] = np.nan
    point, draws, n = r.ratio_of_sums(x, np.ones(100))
    assert n == 90 and point == pytest.approx(2.0)  # each stratum weighs half, whatever its size
    assert np.nanmin(draws) == pytest.approx(2.0) and np.nanmax(draws) == pytest.approx(2.0)


def _group(label: str, version: str, prompt_tokens: np.ndarray, rng: np.random.Generator, factor: float) -> Group:
    ttft = (40 + 0.4 * prompt_tokens) * rng.lognormal(0, 0.1, prompt_tokens.size) * factor
    rows = [
        {"status": "ok", "ttft_ms": t, "latency_ms": t + 200.0, "prompt_tokens": p, "completion_tokens": 11}
        for t, p in zip(ttft, prompt_tokens, strict=True)
    ]
    return Group(label, version, VersionCounts(version), rows)


def test_stratified_comparison_removes_a_traffic_mix_difference() -> None:
    rng = np.random.default_rng(3)
    # same speed per prompt length; the canary gets prompts about twice as long
    canary_pt = np.round(rng.lognormal(np.log(200), 0.5, 2000))
    champ_pt = np.round(rng.lognormal(np.log(100), 0.5, 4000))
    a, b = _group("challenger", "2", canary_pt, rng, 1.0), _group("champion", "1", champ_pt, rng, 1.0)
    for g, pts in ((a, canary_pt), (b, champ_pt)):
        strata = assign_strata(pts, stratum_cutoffs(np.concatenate([canary_pt, champ_pt]), 8))
        g.counts = VersionCounts(
            g.version, {int(s): StratumCounts(requests=int((strata == s).sum())) for s in set(strata.tolist())}
        )
    cuts = stratum_cutoffs(np.concatenate([canary_pt, champ_pt]), 8)
    cmp = compare_groups(a, b, cuts, confidence=0.95, resamples=500, seed=0)
    raw, strat = cmp.metrics["ttft_ms_p50"].raw.compared, cmp.metrics["ttft_ms_p50"].stratified.compared
    assert raw is not None and strat is not None
    assert raw.value > 1.3  # raw: the canary looks much slower
    assert strat.high < 1.06 and strat.value < 1.03  # like for like it is not (8 strata leave a little)


def test_requests_needed_scales_with_the_square_of_the_gap() -> None:
    # half-width 0.05 at n=400 on the difference scale; the limit sits 0.025 away: 4x the requests
    assert requests_needed(0.0, -0.05, 0.05, 400, 0.025, "difference") == 1600
    assert requests_needed(1.0, 0.9, 1.1, 400, 1.0, "ratio") is None  # a point on the limit never resolves
    needed = requests_needed(1.02, 0.98, 1.06, 1000, 1.10, "ratio")
    assert needed == 1000  # already resolved: no more than it has


# --------------------------------------------------------------------------- gates on live evidence


def _gate(**kw) -> Gate:
    base = {"name": "g", "metric": "live.ttft_ms_p90", "comparison": "ratio", "threshold": 0.1, "confidence": 0.95}
    return Gate.model_validate({**base, **kw})


def _summary(**metric: Estimate) -> EvidenceSummary:
    return EvidenceSummary(
        kind="live",
        model_name="m",
        challenger_version="2",
        champion_version="1",
        created_at=NOW,
        metrics={"ttft_ms_p90": MetricEvidence(**metric)},
    )


def _est(v: float, lo: float, hi: float) -> Estimate:
    return Estimate(value=v, ci_low=lo, ci_high=hi, confidence=0.95, n=1000)


def _evaluate(gate: Gate, summary: EvidenceSummary):
    ref = assess_evidence("live", summary, NOW, 48, "m")
    return evaluate_gate(gate, summary, ref, challenger="2", champion="1")


def test_champion_gates_read_the_baseline_estimates() -> None:
    assert estimate_name(_gate(subject="champion", action="rollback")) == "baseline_ratio"
    assert estimate_name(_gate(subject="challenger")) == "ratio"
    assert estimate_name(_gate(comparison="difference", subject="champion", action="rollback")) == "baseline_difference"


def test_rollback_gate_fails_only_when_even_the_favourable_bound_breaches() -> None:
    gate = _gate(subject="champion", action="rollback", threshold=0.5)
    # the interval straddles the limit: not evidence of harm
    assert _evaluate(gate, _summary(baseline_ratio=_est(1.45, 1.3, 1.6))).status == "pass"
    assert _evaluate(gate, _summary(baseline_ratio=_est(1.8, 1.6, 2.0))).status == "fail"
    # a blocking gate reads the unfavourable end of the same interval
    block = _gate(threshold=0.5)
    assert _evaluate(block, _summary(ratio=_est(1.45, 1.3, 1.6))).status == "fail"


def test_champion_comparisons_are_only_for_live_metrics() -> None:
    with pytest.raises(ValueError, match="baseline"):
        _gate(metric="benchmark.ttft_ms_p50", subject="champion", action="rollback")
    with pytest.raises(ValueError, match="subject"):
        _gate(subject="model")


def test_shipped_policy_has_the_live_gates() -> None:
    from lockgate.policy.schema import load_policy

    gates = {g.name: g for g in load_policy().models[0].gates}
    for name in ("live_ttft_regression", "live_tpot_regression", "live_error_rate", "live_refusal_rate"):
        assert gates[name].action == "block_promotion" and gates[name].kind == "live"
    for name in (
        "champion_ttft_degraded",
        "champion_live_error_rate",
        "champion_refusal_rate",
        "champion_relevance_drop",
    ):
        assert gates[name].action == "rollback" and gates[name].subject == "champion"


def test_live_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_policy({"models": [{"name": "m", "approvers": ["a"]}], "live": {"min_requests": 1}})
    assert "live.min_requests" in str(err.value)


def test_decision_page_says_where_benchmark_and_canary_disagree() -> None:
    from lockgate.policy.model import GateVerdict
    from lockgate.reports.decision import disagreements

    def verdict(kind: str, metric: str, status: str, v: float, lo: float, hi: float) -> GateVerdict:
        return GateVerdict(
            gate=f"{kind}_ttft", metric=metric, kind=kind, action="block_promotion", comparison="ratio",
            subject="challenger", direction="lower_is_better", estimate="ratio", status=status, reason="r",
            threshold=0.1, limit=1.1, value=v, ci_low=lo, ci_high=hi, confidence=0.95,
        )  # fmt: skip

    from lockgate.policy.model import Decision

    decision = Decision(
        model_name="m", action="hold", champion="1", challenger="2", evidence_hash="e", policy_hash="p",
        decided_at=NOW,
        verdicts=[
            verdict("benchmark", "benchmark.ttft_ms_p50", "pass", 1.01, 0.97, 1.05),
            verdict("live", "live.ttft_ms_p90", "fail", 1.38, 1.31, 1.45),
        ],
    )  # fmt: skip
    (sentence,) = disagreements(decision)
    assert sentence.startswith("benchmark: no difference (ttft p50 +1.0% [-3.0%, +5.0%])")
    assert sentence.endswith("canary: ttft p90 +38.0% [+31.0%, +45.0%]")


def test_banded_quantile_draws_equal_the_full_computation() -> None:
    rng = np.random.default_rng(5)
    n = 400
    strata = rng.integers(0, 3, n)
    x = rng.lognormal(3, 0.6, n) * (1 + strata)
    x[rng.random(n) < 0.1] = np.nan
    r = resampled(strata, {0: 0.2, 1: 0.5, 2: 0.3}, 300, rng)
    qs = [0.5, 0.9, 0.99]
    _, draws, _ = r.quantiles(x, qs)
    for row in range(0, 300, 37):
        values, weights = [], []
        for s, ws in {0: 0.2, 1: 0.5, 2: 0.3}.items():
            cols = np.flatnonzero((strata == s) & np.isfinite(x))
            drawn = r.counts[row, cols]
            values.append(x[cols])
            weights.append(drawn * ws / drawn.sum())
        v, w = np.concatenate(values), np.concatenate(weights)
        order = np.argsort(v)
        cum = np.cumsum(w[order])
        for i, q in enumerate(qs):
            assert draws[i, row] == v[order][min(int((cum < q * cum[-1] - 1e-6).sum()), v.size - 1)]
