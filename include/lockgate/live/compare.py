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
    Cells,
    FloatArray,
    Interval,
    assign_strata,
    compare_bootstrap,
    compare_quantiles,
    make_cells,
    newcombe_difference,
    pooled_weights,
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
    "refusal_rate": ("refusals", "answered", "share of answers that decline (phrase detector)"),
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
    sample: list[dict[str, Any]]
    relevance: FloatArray = field(default_factory=lambda: np.zeros(0))
    relevance_prompt_tokens: FloatArray = field(default_factory=lambda: np.zeros(0))

    @property
    def requests(self) -> int:
        return int(self.counts.total("requests"))

    def column(self, name: str) -> FloatArray:
        return np.array([_num(r.get(name)) for r in self.sample], dtype=np.float64)

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


def _rate(group: Group, num: str, den: str, weights: Mapping[int, float], confidence: float) -> Any:
    succ = {s: int(getattr(c, num)) for s, c in group.counts.strata.items()}
    tot = {s: int(getattr(c, den)) for s, c in group.counts.strata.items()}
    return standardized_rate(succ, tot, weights, confidence)


def _rate_side(a: Group, b: Group, num: str, den: str, weights: Mapping[int, float], confidence: float) -> Side:
    ra, rb = _rate(a, num, den, weights, confidence), _rate(b, num, den, weights, confidence)
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


def _bootstrap_side(a_cells: Cells, b_cells: Cells, kind: Any, resamples: int, conf: float, seed: int) -> Side:
    """Means and ratios of sums, compared as a difference."""
    if a_cells.n < 2 or b_cells.n < 2:
        return Side(None, None, None)
    ia, ib, _, diff = compare_bootstrap(a_cells, b_cells, kind, resamples, conf, seed)
    return Side(ia, ib, diff)


def _quantile_sides(
    a_cells: Cells, b_cells: Cells, qs: Sequence[float], resamples: int, conf: float, seed: int
) -> list[Side]:
    if a_cells.n < 2 or b_cells.n < 2:
        return [Side(None, None, None) for _ in qs]
    return [Side(ia, ib, ratio) for ia, ib, ratio in compare_quantiles(a_cells, b_cells, qs, resamples, conf, seed)]


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
    """Every live metric of group a against group b, raw and stratified by prompt length."""
    counts_a, counts_b = _counts_by_stratum(a), _counts_by_stratum(b)
    weights = pooled_weights(counts_a, counts_b, min_cell=min_cell)
    raw_a = Group(a.label, a.version, VersionCounts(a.version, _one_stratum(a)), a.sample, a.relevance)
    raw_b = Group(b.label, b.version, VersionCounts(b.version, _one_stratum(b)), b.sample, b.relevance)
    strata_a = assign_strata(a.column("prompt_tokens"), cutoffs)
    strata_b = assign_strata(b.column("prompt_tokens"), cutoffs)
    zeros_a, zeros_b = np.zeros(len(a.sample), dtype=np.int64), np.zeros(len(b.sample), dtype=np.int64)
    quantile_sides: dict[str, tuple[Side, Side]] = {}
    by_variable: dict[str, list[LiveMetric]] = {}
    for metric in LIVE_METRICS:
        if metric.comparison == "ratio":
            by_variable.setdefault(metric.name.rpartition("_p")[0], []).append(metric)
    for j, (var, metrics) in enumerate(by_variable.items()):
        qs = [int(m.name.rpartition("_p")[2]) / 100 for m in metrics]
        va, vb = a.variable(var), b.variable(var)
        raw_sides = _quantile_sides(
            make_cells(va, zeros_a, {0: 1.0}), make_cells(vb, zeros_b, {0: 1.0}), qs, resamples, confidence, seed + j
        )
        strat_sides = _quantile_sides(
            make_cells(va, strata_a, weights), make_cells(vb, strata_b, weights), qs, resamples, confidence, seed + j
        )
        for m, r, st in zip(metrics, raw_sides, strat_sides, strict=True):
            quantile_sides[m.name] = (r, st)
    out: dict[str, MetricComparison] = {}
    for i, metric in enumerate(LIVE_METRICS):
        s = seed + 7919 * i  # each metric its own stream: adding a metric leaves the others' draws alone
        if metric.name in RATE_METRICS:
            num, den, _ = RATE_METRICS[metric.name]
            raw = _rate_side(raw_a, raw_b, num, den, {0: 1.0}, confidence)
            strat = _rate_side(a, b, num, den, weights, confidence)
        elif metric.name == "kv_cache_hit_rate":
            ca, cb = a.column("cached_tokens"), b.column("cached_tokens")
            pa, pb = a.column("prompt_tokens"), b.column("prompt_tokens")
            raw = _bootstrap_side(
                make_cells(ca, zeros_a, {0: 1.0}, pa),
                make_cells(cb, zeros_b, {0: 1.0}, pb),
                "ratio_of_sums", resamples, confidence, s,
            )  # fmt: skip
            strat = _bootstrap_side(
                make_cells(ca, strata_a, weights, pa),
                make_cells(cb, strata_b, weights, pb),
                "ratio_of_sums", resamples, confidence, s,
            )  # fmt: skip
        elif metric.name == "relevance":
            sa_ = assign_strata(a.relevance_prompt_tokens, cutoffs)
            sb_ = assign_strata(b.relevance_prompt_tokens, cutoffs)
            za, zb = np.zeros(a.relevance.size, dtype=np.int64), np.zeros(b.relevance.size, dtype=np.int64)
            raw = _bootstrap_side(
                make_cells(a.relevance, za, {0: 1.0}),
                make_cells(b.relevance, zb, {0: 1.0}),
                "mean", resamples, confidence, s,
            )  # fmt: skip
            strat = _bootstrap_side(
                make_cells(a.relevance, sa_, weights),
                make_cells(b.relevance, sb_, weights),
                "mean", resamples, confidence, s,
            )  # fmt: skip
        else:
            raw, strat = quantile_sides[metric.name]
        out[metric.name] = MetricComparison(metric, raw, strat)
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
