"""Compare two groups of production requests, metric by metric (pure: arrays and counts in, numbers out).

A group is one version's requests in one window: its exact counts per prompt-length
stratum (from SQL) and a bounded sample of its numeric columns (and MiniLM relevance of
part of its answers). `compare_groups` gives, for every live metric, each group's value,
the ratio (latencies, throughput) or difference (rates, relevance, cache hits) and their
intervals, raw and stratified (see `lockgate.live.stats`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lockgate.live.stats import (
    FloatArray,
    IntArray,
    Interval,
    Resampled,
    assign_strata,
    difference_interval,
    newcombe_difference,
    percentile_interval,
    pooled_weights,
    ratio_interval,
    resampled,
    standardized_rate,
)
from lockgate.logs.aggregates import StratumCounts, VersionCounts

Comparison = Literal["ratio", "difference"]


@dataclass(frozen=True)
class LiveMetric:
    name: str
    unit: str
    comparison: Comparison
    description: str


def _quantile_metrics() -> list[LiveMetric]:
    out = []
    for var, unit, label, qs in (
        ("ttft_ms", "ms", "time to first token", (50, 90, 99)),
        ("latency_ms", "ms", "end-to-end latency", (50, 90, 99)),
        ("tpot_ms", "ms", "time per output token, (latency - ttft) / (completion_tokens - 1)", (50, 90)),
        ("output_tokens_per_s", "tokens/s", "output tokens per second of a request", (50,)),
    ):
        for q in qs:
            out.append(LiveMetric(f"{var}_p{q}", unit, "ratio", f"p{q} of the {label}"))
    return out


RATE_METRICS: dict[str, tuple[str, str, str]] = {
    # name: (numerator field, denominator field, description)
    "error_rate": ("errors", "requests", "share of requests with status error"),
    "timeout_rate": ("timeouts", "requests", "share of requests with status timeout"),
    "empty_response_rate": ("empty", "requests", "share of requests answered ok with an empty response"),
    "refusal_rate": ("refusals", "answered", "share of sampled answers that decline (phrase detector)"),
    "negative_feedback_rate": ("negative", "rated", "share of rated requests with feedback -1"),
}

LIVE_METRICS: tuple[LiveMetric, ...] = (
    *_quantile_metrics(),
    *(LiveMetric(n, "share", "difference", d) for n, (_, _, d) in RATE_METRICS.items()),
    LiveMetric("kv_cache_hit_rate", "share", "difference", "cached prompt tokens / prompt tokens (KV/prefix cache)"),
    LiveMetric("relevance", "cosine", "difference", "MiniLM cosine of prompt and answer"),
)
"""Every metric the live evidence publishes (`live.<name>`), in report order."""


@dataclass
class Group:
    """One version's requests in one window."""

    label: str
    version: str
    counts: VersionCounts
    sample: list[dict[str, Any]]  # a `relevance` key where MiniLM scored the answer
    _columns: dict[str, FloatArray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def requests(self) -> int:
        return int(self.counts.total("requests"))

    @property
    def relevance_rows(self) -> int:
        return int(np.isfinite(self.column("relevance")).sum())

    def column(self, name: str) -> FloatArray:
        cached = self._columns.get(name)
        if cached is None:
            cached = self._columns[name] = np.array([_num(r.get(name)) for r in self.sample], dtype=np.float64)
        return cached

    def variable(self, name: str) -> FloatArray:
        """Per-request values of a latency variable (NaN where it is not defined)."""
        ok = np.array([r.get("status") == "ok" for r in self.sample], dtype=bool)
        lat, ttft = self.column("latency_ms"), self.column("ttft_ms")
        toks = self.column("completion_tokens")
        with np.errstate(divide="ignore", invalid="ignore"):
            if name == "ttft_ms":
                v = ttft
            elif name == "latency_ms":
                v = lat
            elif name == "tpot_ms":
                v = np.where(toks > 1, (lat - ttft) / (toks - 1), np.nan)
            elif name == "output_tokens_per_s":
                v = np.where((toks > 0) & (lat > 0), toks * 1000.0 / lat, np.nan)
            else:  # pragma: no cover - the metric list is fixed
                raise KeyError(name)
        return np.where(ok, v, np.nan)


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


@dataclass(frozen=True)
class Side:
    """Group a's value, group b's, and the comparison (a / b or a - b)."""

    a: Interval | None
    b: Interval | None
    compared: Interval | None


@dataclass(frozen=True)
class MetricComparison:
    metric: LiveMetric
    raw: Side
    stratified: Side


@dataclass
class GroupComparison:
    """Group a (the canary, or the champion now) against group b (the champion, or its baseline)."""

    a_label: str
    b_label: str
    a_requests: int
    b_requests: int
    cutoffs: list[float]
    weights: dict[int, float]
    metrics: dict[str, MetricComparison]
    strata_counts: dict[str, dict[int, int]]


def _counts_by_stratum(group: Group) -> dict[int, int]:
    return {s: c.requests for s, c in group.counts.strata.items()}


def _stratum_counts(group: Group, num: str, den: str, strata: IntArray | None) -> tuple[dict[int, int], dict[int, int]]:
    """Successes and trials per stratum: exact window counts from SQL, or, for the refusal rate (a text
    pattern, too costly over every row), counts over the bounded sample."""
    if num != "refusals":
        return (
            {s: int(getattr(c, num)) for s, c in group.counts.strata.items()},
            {s: int(getattr(c, den)) for s, c in group.counts.strata.items()},
        )
    succ: dict[int, int] = {}
    tot: dict[int, int] = {}
    labels = strata if strata is not None else np.zeros(len(group.sample), dtype=np.int64)
    for row, s in zip(group.sample, labels.tolist(), strict=True):
        if row.get("answered"):
            tot[s] = tot.get(s, 0) + 1
            succ[s] = succ.get(s, 0) + int(bool(row.get("refused")))
    return succ, tot


def _rate_side(
    a: Group,
    b: Group,
    num: str,
    den: str,
    weights: Mapping[int, float],
    confidence: float,
    strata: tuple[IntArray, IntArray] | None = None,
) -> Side:
    sa_, sb_ = strata if strata is not None else (None, None)
    ra = standardized_rate(*_stratum_counts(a, num, den, sa_), weights, confidence)
    rb = standardized_rate(*_stratum_counts(b, num, den, sb_), weights, confidence)
    d, lo, hi = newcombe_difference(ra, rb)
    return Side(
        Interval(ra.value, ra.low, ra.high, ra.n),
        Interval(rb.value, rb.low, rb.high, rb.n),
        Interval(d, lo, hi, ra.n),
    )


def _one_stratum(group: Group) -> dict[int, StratumCounts]:
    merged = StratumCounts()
    for c in group.counts.strata.values():
        for f in merged.__dataclass_fields__:
            setattr(merged, f, getattr(merged, f) + getattr(c, f))
    return {0: merged}


@dataclass(frozen=True)
class _Pair:
    """Both groups resampled under one stratification."""

    a: Resampled
    b: Resampled

    def quantile_sides(self, ga: Group, gb: Group, var: str, qs: list[float], conf: float) -> list[Side]:
        xa, xb = ga.variable(var), gb.variable(var)
        pa, da, na = self.a.quantiles(xa, qs)
        pb, db, nb = self.b.quantiles(xb, qs)
        if na < 2 or nb < 2:
            return [Side(None, None, None) for _ in qs]
        return [
            Side(
                percentile_interval(float(pa[i]), da[i], conf, na),
                percentile_interval(float(pb[i]), db[i], conf, nb),
                ratio_interval(float(pa[i]), da[i], float(pb[i]), db[i], conf, na),
            )
            for i in range(len(qs))
        ]

    def difference_side(
        self, num_a: FloatArray, den_a: FloatArray, num_b: FloatArray, den_b: FloatArray, conf: float
    ) -> Side:
        pa, da, na = self.a.ratio_of_sums(num_a, den_a)
        pb, db, nb = self.b.ratio_of_sums(num_b, den_b)
        if na < 2 or nb < 2:
            return Side(None, None, None)
        return Side(
            percentile_interval(pa, da, conf, na),
            percentile_interval(pb, db, conf, nb),
            difference_interval(pa, da, pb, db, conf, na),
        )


def compare_groups(
    a: Group,
    b: Group,
    cutoffs: Sequence[float],
    *,
    confidence: float,
    resamples: int,
    seed: int,
    min_cell: int = 5,
) -> GroupComparison:
    """Every live metric of group a against group b, raw and stratified by prompt length.

    Each group is resampled once per stratification (within strata), and every statistic is
    computed on those same resamples.
    """
    from threadpoolctl import threadpool_limits

    # The products are small (resamples x a few thousand requests): one BLAS thread does them at
    # full speed, while OpenBLAS's threads spin for a core on a busy machine (4x slower on 2 cores
    # under load, measured with bench/live.py).
    with threadpool_limits(limits=1, user_api="blas"):
        return _compare_groups(a, b, cutoffs, confidence=confidence, resamples=resamples, seed=seed, min_cell=min_cell)


def _compare_groups(
    a: Group,
    b: Group,
    cutoffs: Sequence[float],
    *,
    confidence: float,
    resamples: int,
    seed: int,
    min_cell: int,
) -> GroupComparison:
    counts_a, counts_b = _counts_by_stratum(a), _counts_by_stratum(b)
    weights = pooled_weights(counts_a, counts_b, min_cell=min_cell)
    raw_a = Group(a.label, a.version, VersionCounts(a.version, _one_stratum(a)), a.sample)
    raw_b = Group(b.label, b.version, VersionCounts(b.version, _one_stratum(b)), b.sample)
    strata_a = assign_strata(a.column("prompt_tokens"), cutoffs)
    strata_b = assign_strata(b.column("prompt_tokens"), cutoffs)
    rng_a, rng_b = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    pairs = {
        # Raw: point estimates only (intervals for the rates). The gates read the stratified estimates,
        # which carry the bootstrap intervals; resampling twice would double the job's cost.
        "raw": _Pair(
            resampled(np.zeros(len(a.sample), dtype=np.int64), {0: 1.0}, 0, rng_a),
            resampled(np.zeros(len(b.sample), dtype=np.int64), {0: 1.0}, 0, rng_b),
        ),
        "stratified": _Pair(
            resampled(strata_a, weights, resamples, rng_a), resampled(strata_b, weights, resamples, rng_b)
        ),
    }
    sides: dict[str, dict[str, Side]] = {"raw": {}, "stratified": {}}
    by_variable: dict[str, list[LiveMetric]] = {}
    for metric in LIVE_METRICS:
        if metric.comparison == "ratio":
            by_variable.setdefault(metric.name.rpartition("_p")[0], []).append(metric)
    ones_a, ones_b = np.ones(len(a.sample)), np.ones(len(b.sample))
    for kind, pair in pairs.items():
        for var, metrics in by_variable.items():
            qs = [int(m.name.rpartition("_p")[2]) / 100 for m in metrics]
            for m, side in zip(metrics, pair.quantile_sides(a, b, var, qs, confidence), strict=True):
                sides[kind][m.name] = side
        sides[kind]["kv_cache_hit_rate"] = pair.difference_side(
            a.column("cached_tokens"), a.column("prompt_tokens"), b.column("cached_tokens"), b.column("prompt_tokens"),
            confidence,
        )  # fmt: skip
        sides[kind]["relevance"] = pair.difference_side(
            a.column("relevance"), ones_a, b.column("relevance"), ones_b, confidence
        )
    for name, (num, den, _) in RATE_METRICS.items():
        sides["raw"][name] = _rate_side(raw_a, raw_b, num, den, {0: 1.0}, confidence)
        sides["stratified"][name] = _rate_side(a, b, num, den, weights, confidence, (strata_a, strata_b))
    out = {m.name: MetricComparison(m, sides["raw"][m.name], sides["stratified"][m.name]) for m in LIVE_METRICS}
    return GroupComparison(
        a_label=a.label,
        b_label=b.label,
        a_requests=a.requests,
        b_requests=b.requests,
        cutoffs=list(cutoffs),
        weights=weights,
        metrics=out,
        strata_counts={a.label: counts_a, b.label: counts_b},
    )
