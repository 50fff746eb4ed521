"""Mergeable latency histograms with a bounded relative error (pure).

The live job keeps per-hour aggregates of the log table (`lockgate.live.rollups`) so that a run
reads only the hours it has not seen. Exact percentiles do not merge across hours; a histogram
over logarithmically spaced bins does: bin `i` holds the values in (gamma^(i-1), gamma^i], with
gamma = (1 + a) / (1 - a), and reporting a bin by 2 gamma^i / (gamma + 1) is within a relative
`a` of every value in it (the DDSketch construction). A quantile read from the merged bins is
the value of the rank-th smallest request to within that relative error.

The database computes the bin of each value (`bin_sql_expression` in lockgate.logs.rollups uses
the same formula as `bin_of`); the bins of several hours are added here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

RELATIVE_ACCURACY = 0.005
"""Every quantile read from the rollups is within 0.5% of the value of the rank it names."""

GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LOG_GAMMA = math.log(GAMMA)
ZERO_BIN = -(2**31)
"""Values <= 0 (a time per output token of 0 ms) share one bin, reported as 0."""


def bin_of(value: float) -> int:
    """The bin of a value: ceil(ln(value) / ln(gamma)), or `ZERO_BIN` for values <= 0."""
    if value <= 0:
        return ZERO_BIN
    return math.ceil(math.log(value) / LOG_GAMMA)


def bin_value(index: int) -> float:
    """The value a bin stands for: within `RELATIVE_ACCURACY` of every value in it."""
    if index == ZERO_BIN:
        return 0.0
    return 2 * GAMMA**index / (GAMMA + 1)


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """The sum of several histograms (bin -> count)."""
    out: dict[int, int] = {}
    for h in histograms:
        for b, n in h.items():
            out[b] = out.get(b, 0) + n
    return out


def quantile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) of the values counted, as PostgreSQL's `percentile_cont` defines it
    (linear between the requests of ranks around q (n - 1)), to within `RELATIVE_ACCURACY`. None when empty."""
    return quantiles_of_bins(list(histogram), list(histogram.values()), [q])[0]


def quantiles_of_bins(bins: npt.ArrayLike, counts: npt.ArrayLike, qs: Sequence[float]) -> list[float | None]:
    """`quantile` for each q, over (bin, count) pairs that may repeat a bin (several hours' histograms
    concatenated)."""
    b = np.asarray(bins, dtype=np.int64)
    n = np.asarray(counts, dtype=np.int64)
    if b.size == 0 or n.sum() <= 0:
        return [None for _ in qs]
    order, inverse = np.unique(b, return_inverse=True)
    totals = np.bincount(inverse, weights=n).astype(np.int64)
    cumulative = np.cumsum(totals)
    out: list[float | None] = []
    for q in qs:
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        # percentile_cont's definition: between the requests of ranks floor and ceil of q (n - 1),
        # linearly; each read from its bin, so the result is within the accuracy of the exact one.
        position = q * (int(cumulative[-1]) - 1)
        lo, hi = math.floor(position), math.ceil(position)
        at = np.searchsorted(cumulative, [lo, hi], side="right")
        v_lo, v_hi = bin_value(int(order[int(at[0])])), bin_value(int(order[int(at[1])]))
        out.append(v_lo + (position - lo) * (v_hi - v_lo))
    return out
