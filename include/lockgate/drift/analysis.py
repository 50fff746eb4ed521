"""Frames of sampled logs in, tested columns and the drift decision out.

No database, no files: the job samples the windows and writes the outputs; this
module only computes. The embedder is injected so unit tests can use a fake one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lockgate.drift.columns import EMBEDDING_SOURCES, ColumnSpec, build_features, selected_columns
from lockgate.drift.stats import (
    ColumnTest,
    DriftDecision,
    Untested,
    categorical_test,
    classifier_rows_for_power,
    classifier_test,
    classifier_test_power,
    decide,
    numeric_test,
    wilson_interval,
)
from lockgate.drift.summary import ColumnDrift, Rate
from lockgate.policy.schema import DriftConfig

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], npt.NDArray[np.float32]]


@dataclass
class DriftAnalysis:
    columns: list[ColumnDrift]
    decision: DriftDecision
    reference_features: pd.DataFrame
    current_features: pd.DataFrame
    embeddings: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = field(default_factory=dict)
    embedded: tuple[int, int] = (0, 0)
    unique_texts_embedded: int = 0
    error_rate: Rate | None = None
    timeout_rate: Rate | None = None
    version_rates: dict[str, dict[str, Rate]] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    classifier_scores: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = field(
        default_factory=dict
    )  # embedding column -> held-out classifier scores (reference, current)

    @property
    def drift_share(self) -> float | None:
        return self.decision.drift_share


def rate(statuses: Sequence[str], value: str, confidence: float) -> Rate | None:
    """Share of `value` among statuses, with its Wilson interval (None for no rows)."""
    n = len(statuses)
    if n == 0:
        return None
    count = sum(1 for s in statuses if s == value)
    lo, hi = wilson_interval(count, n, confidence)
    return Rate(count=count, n=n, value=count / n, ci_low=lo, ci_high=hi, confidence=confidence)


def _rates(current: pd.DataFrame, confidence: float) -> tuple[Rate | None, Rate | None, dict[str, dict[str, Rate]]]:
    statuses = current["status"].astype(str).tolist()
    per_version: dict[str, dict[str, Rate]] = {}
    for version, group in current.groupby(current["model_version"].astype(str), sort=True):
        s = group["status"].astype(str).tolist()
        rates = {name: r for name in ("error", "timeout") if (r := rate(s, name, confidence)) is not None}
        per_version[str(version)] = {f"{k}_rate": v for k, v in rates.items()}
    return rate(statuses, "error", confidence), rate(statuses, "timeout", confidence), per_version


def embed_unique(texts: list[str], embed: EmbedFn) -> tuple[npt.NDArray[np.float32], int]:
    """Embed each distinct text once (repeated prompts and canned answers are common)."""
    uniques, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    vectors = embed([str(t) for t in uniques])
    return vectors[inverse.ravel()], len(uniques)


def _embedding_inputs(frame: pd.DataFrame, source: str, n: int) -> list[str]:
    head = frame[source].head(n)
    return [v for v in head.tolist() if isinstance(v, str) and v]


def _to_column(spec: ColumnSpec, outcome: ColumnTest | Untested, min_effect: float) -> ColumnDrift:
    if isinstance(outcome, Untested):
        return ColumnDrift(
            column=spec.name,
            kind=spec.kind,
            group=spec.group,
            description=spec.description,
            tested=False,
            reason=outcome.reason,
            min_effect=min_effect,
            n_reference=outcome.n_reference,
            n_current=outcome.n_current,
        )
    return ColumnDrift(
        column=spec.name,
        kind=spec.kind,
        group=spec.group,
        description=spec.description,
        tested=True,
        method=outcome.method,
        statistic=outcome.statistic,
        p_value=outcome.p_value,
        effect_measure=outcome.effect_measure,
        effect_size=outcome.effect_size,
        min_effect=min_effect,
        n_reference=outcome.n_reference,
        n_current=outcome.n_current,
        reference_summary=outcome.reference_summary,
        current_summary=outcome.current_summary,
    )


@dataclass
class _Embedded:
    embeddings: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]
    rows: tuple[int, int]
    unique: int
    seconds: float


def embedded_rows(config: DriftConfig, columns: Sequence[str]) -> int:
    """Rows per window to embed for these embedding columns: `embedding_sample_size`, or the fewest
    that give each column's test the policy's `embedding_power` at its minimum effect."""
    if config.embedding_power is None:
        return config.embedding_sample_size
    return max(
        classifier_rows_for_power(config.embedding_power, config.min_effect(c), config.fdr_alpha, config.min_rows)
        for c in columns
    )


def _embed_windows(
    reference: pd.DataFrame, current: pd.DataFrame, specs: list[ColumnSpec], n_emb: int, embed: EmbedFn | None
) -> _Embedded:
    t0 = time.perf_counter()
    if embed is None:
        from lockgate.embeddings import embed_texts

        embed = embed_texts
    embeddings: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = {}
    unique_total = 0
    for spec in specs:
        source = EMBEDDING_SOURCES[spec.name]
        ref_texts = _embedding_inputs(reference, source, n_emb)
        cur_texts = _embedding_inputs(current, source, n_emb)
        vectors, unique = embed_unique(ref_texts + cur_texts, embed)
        unique_total += unique
        embeddings[spec.name] = (vectors[: len(ref_texts)], vectors[len(ref_texts) :])
        log.info(
            "embedded %s: %d reference + %d current texts (%d distinct)", source, len(ref_texts), len(cur_texts), unique
        )
    rows = (min(n_emb, len(reference)), min(n_emb, len(current)))
    return _Embedded(embeddings, rows, unique_total, time.perf_counter() - t0)


def _log_outcome(i: int, total: int, name: str, outcome: ColumnTest | Untested) -> None:
    log.info(
        "column %d/%d %s: %s",
        i,
        total,
        name,
        outcome.reason
        if isinstance(outcome, Untested)
        else f"{outcome.method} p={outcome.p_value:.3g}, {outcome.effect_measure}={outcome.effect_size:.3g}",
    )


TabularHook = Callable[["pd.DataFrame", "pd.DataFrame", list[str]], None]


def analyze(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: DriftConfig,
    *,
    seed: int = 0,
    confidence: float = 0.95,
    embed: EmbedFn | None = None,
    while_embedding: TabularHook | None = None,
) -> DriftAnalysis:
    """Test every selected column of two windows of sampled logs and decide which drift.

    The embedder (MiniLM: torch, which releases the GIL) runs in a background thread while
    the tabular columns are tested, so the two CPU-bound stages overlap on a multi-core machine.

    Args:
        reference: usable sampled rows of the reference window (`LogSample.to_frame()`), in sample order.
        current: the same for the current window.
        config: the policy's drift section (columns, thresholds, embedding sample size).
        seed: seeds the embedding classifier's split (same data and seed, same result).
        confidence: level of the error/timeout rate intervals.
        embed: texts -> (n x d) embeddings; default: the packaged MiniLM.
        while_embedding: called with both feature tables and the tested tabular columns while the
            embedder still runs (the job builds Evidently's column report there).
    """
    from concurrent.futures import ThreadPoolExecutor

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    specs = selected_columns(config.columns, config.embeddings)
    embedding_specs = [s for s in specs if s.kind == "embedding"]
    tabular_specs = [s for s in specs if s.kind != "embedding"]
    min_effects = {s.name: config.min_effect(s.name) for s in specs}
    outcomes: dict[str, ColumnTest | Untested] = {}

    if embedding_specs and embed is None:
        # torch imported here, before the encoder's thread starts: imported there, it is a partly
        # initialised module in sys.modules while this thread's scipy statistics ask whether their
        # arrays are torch tensors (AttributeError "partially initialized module 'torch'", seen
        # once in a demo run's drift task)
        import torch  # noqa: F401

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockgate-embed") as pool:
        pending = (
            pool.submit(
                _embed_windows,
                reference,
                current,
                embedding_specs,
                embedded_rows(config, [s.name for s in embedding_specs]),
                embed,
            )
            if embedding_specs
            else None
        )
        ref_features = build_features(reference, config.refusal_phrases)
        cur_features = build_features(current, config.refusal_phrases)
        timings["descriptors"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, spec in enumerate(tabular_specs, start=1):
            if spec.kind == "numeric":
                outcome = numeric_test(ref_features[spec.name], cur_features[spec.name], config.min_rows)
            else:
                outcome = categorical_test(
                    ref_features[spec.name].tolist(), cur_features[spec.name].tolist(), config.min_rows
                )
            outcomes[spec.name] = outcome
            _log_outcome(i, len(specs), spec.name, outcome)
        timings["statistics"] = time.perf_counter() - t0
        if while_embedding is not None:
            t0 = time.perf_counter()
            tested_tabular = [n for n, o in outcomes.items() if isinstance(o, ColumnTest)]
            while_embedding(ref_features, cur_features, tested_tabular)
            timings["while_embedding"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        embedded = pending.result() if pending is not None else _Embedded({}, (0, 0), 0, 0.0)
        if pending is not None:
            timings["embeddings"] = embedded.seconds
            timings["embeddings_wait"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for i, spec in enumerate(embedding_specs, start=len(tabular_specs) + 1):
        ref_e, cur_e = embedded.embeddings[spec.name]
        outcomes[spec.name] = classifier_test(ref_e, cur_e, seed=seed, min_rows=config.min_rows)
        _log_outcome(i, len(specs), spec.name, outcomes[spec.name])
    tested = {s.name: o for s in specs if isinstance(o := outcomes[s.name], ColumnTest)}
    decision = decide(tested, config.fdr_alpha, min_effects)
    by_name = {c.column: c for c in decision.columns}
    columns = []
    for spec in specs:
        col = _to_column(spec, outcomes[spec.name], min_effects[spec.name])
        if spec.name in by_name:
            d = by_name[spec.name]
            col = col.model_copy(
                update={"p_adjusted": d.p_adjusted, "significant": d.significant, "drifted": d.drifted}
            )
        if col.tested and spec.kind == "embedding":
            # what a "no drift" verdict is worth: the few embedded rows make this test the weakest
            power = classifier_test_power(
                col.n_reference, col.n_current, col.min_effect, config.fdr_alpha, config.min_rows
            )
            col = col.model_copy(update={"power": power})
        columns.append(col)
    timings["statistics"] += time.perf_counter() - t0
    embeddings = embedded.embeddings

    classifier_scores = {
        name: o.held_out_scores
        for name, o in outcomes.items()
        if isinstance(o, ColumnTest) and o.held_out_scores is not None
    }
    error_rate, timeout_rate, version_rates = _rates(current, confidence)
    return DriftAnalysis(
        columns=columns,
        decision=decision,
        reference_features=ref_features,
        current_features=cur_features,
        embeddings=embeddings,
        embedded=embedded.rows,
        unique_texts_embedded=embedded.unique,
        error_rate=error_rate,
        timeout_rate=timeout_rate,
        version_rates=version_rates,
        timings_s=timings,
        classifier_scores=classifier_scores,
    )


def config_snapshot(config: DriftConfig) -> dict[str, Any]:
    """The drift settings a summary was computed with (for the report and reproducibility)."""
    return config.model_dump(mode="json")
