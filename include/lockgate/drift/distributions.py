"""Reference-vs-current distributions of the drifted columns, binned at job time for the drift page.

The page is written once per run and must stay small and free of logged text, so it gets
counts over shared bins (or categories), never the sampled rows. Text columns are compared
through their numeric descriptors (lengths, word counts, shares) and their flags, which are
what is binned here; the embedding columns through the held-out scores of the classifier that
tested them, the single number in which the two windows differ most visibly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from lockgate.drift.summary import ColumnDistribution, ColumnDrift
from lockgate.reports.charts import bin_counts, shared_edges

if TYPE_CHECKING:
    import pandas as pd

BINS = 24
TRIM = 0.01  # bins span the pooled 1st-99th percentile: a long latency tail would squeeze the rest into one bin
MAX_CATEGORIES = 10
OTHER = "(other)"
EMBEDDING_LABEL = "held-out classifier score (higher: more like the current window)"


def _finite(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def _mean(arr: npt.NDArray[np.float64]) -> float | None:
    return float(arr.mean()) if arr.size else None


def numeric_distribution(
    column: str, kind: str, label: str, reference: npt.ArrayLike, current: npt.ArrayLike, bins: int = BINS
) -> ColumnDistribution | None:
    """Counts of both windows over shared bins; None when neither has a finite value."""
    ref, cur = _finite(reference), _finite(current)
    edges = shared_edges([ref, cur], bins, trim=TRIM)
    if not edges:
        return None
    pooled = np.concatenate([ref, cur])
    clipped = int(np.sum((pooled < edges[0]) | (pooled > edges[-1])))
    note = f"{clipped} values beyond the pooled 1st-99th percentile are counted in the end bins" if clipped else None
    return ColumnDistribution(
        column=column,
        kind="embedding" if kind == "embedding" else "numeric",
        label=label,
        edges=edges,
        reference=bin_counts(ref, edges),
        current=bin_counts(cur, edges),
        reference_mean=_mean(ref),
        current_mean=_mean(cur),
        note=note,
    )


def categorical_distribution(
    column: str, label: str, reference: Sequence[object], current: Sequence[object]
) -> ColumnDistribution | None:
    """Counts per category in both windows, the most frequent first; the rest pooled as `(other)`."""

    def labels(values: Sequence[object]) -> list[str]:
        return [str(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]

    ref, cur = Counter(labels(reference)), Counter(labels(current))
    pooled = ref + cur
    if not pooled:
        return None
    ranked = [c for c, _ in sorted(pooled.items(), key=lambda kv: (-kv[1], kv[0]))]
    kept = ranked[:MAX_CATEGORIES] if len(ranked) > MAX_CATEGORIES + 1 else ranked
    rest = set(ranked) - set(kept)
    categories = kept + ([OTHER] if rest else [])

    def counts(counter: Counter[str]) -> list[int]:
        out = [counter.get(c, 0) for c in kept]
        return out + ([sum(counter[c] for c in rest)] if rest else [])

    return ColumnDistribution(
        column=column,
        kind="categorical",
        label=label,
        categories=categories,
        reference=counts(ref),
        current=counts(cur),
        note=f"{len(rest)} rarer categories pooled as {OTHER}" if rest else None,
    )


def column_distributions(
    columns: Sequence[ColumnDrift],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    classifier_scores: Mapping[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]],
) -> list[ColumnDistribution]:
    """The binned distributions of the drifted columns, in the summary's column order.

    Args:
        columns: the tested columns with their verdicts.
        reference: the reference window's feature table (`build_features`).
        current: the current window's feature table.
        classifier_scores: embedding column -> held-out classifier scores (reference, current).
    """
    out: list[ColumnDistribution] = []
    for c in columns:
        if not c.drifted:
            continue
        dist: ColumnDistribution | None = None
        if c.kind == "embedding":
            scores = classifier_scores.get(c.column)
            if scores is not None:
                dist = numeric_distribution(c.column, "embedding", EMBEDDING_LABEL, scores[0], scores[1])
        elif c.column in reference.columns and c.column in current.columns:
            if c.kind == "numeric":
                dist = numeric_distribution(
                    c.column, "numeric", c.description, reference[c.column].to_numpy(), current[c.column].to_numpy()
                )
            else:
                dist = categorical_distribution(
                    c.column, c.description, reference[c.column].tolist(), current[c.column].tolist()
                )
        if dist is not None:
            out.append(dist)
    return out
