"""The drift run's outputs: its files, its MLflow run and its reports-index entry."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.drift.summary import DriftSummary
from lockgate.evidence import EvidenceSummary, write_summary
from lockgate.jobs.context import RunContext
from lockgate.jobs.drift.compare import EVIDENTLY_FILE
from lockgate.jobs.publish import RunFiles, write_report
from lockgate.registry import tags as T
from lockgate.registry.versions import RegistryContext
from lockgate.reports.html import safe_segment
from lockgate.reports.index import ReportEntry

if TYPE_CHECKING:
    from lockgate.registry.runs import EvidenceRun

DRIFT_SUMMARY_FILE = "drift_summary.json"


def mlflow_run_for(model_name: str, run_key: str) -> EvidenceRun:
    """The MLflow run of this run key in experiment `lockgate/<model>` (created once, reused on rerun)."""
    from lockgate.registry.runs import EvidenceRun

    key = safe_segment(run_key)  # only [A-Za-z0-9_.-]: safe inside the filter's quotes
    return EvidenceRun.open(
        model_name, {T.RUN_KIND: "drift", T.RUN_KEY: key}, tags={T.RUN_MODEL: model_name}, run_name=f"drift-{key}"
    )


def log_to_mlflow(run: EvidenceRun, out_dir: Path, drift: DriftSummary, evidence_hash: str) -> None:
    """Log the headline numbers and the whole report folder (artifact path `drift_report`)."""
    metrics: dict[str, float] = {}
    if drift.drift_share is not None:
        metrics["drift_share"] = drift.drift_share
        metrics["drifted_columns"] = float(len(drift.drifted_columns))
        metrics["tested_columns"] = float(drift.n_tested)
    for name, rate in (("error_rate", drift.error_rate), ("timeout_rate", drift.timeout_rate)):
        if rate is not None:
            metrics[name] = rate.value
    for col in drift.columns:
        if col.tested and col.effect_size is not None:
            metrics[f"effect.{col.column}"] = col.effect_size
    tags = {
        T.STATUS: drift.status,
        T.EVIDENCE: evidence_hash,
        T.RUN_DRIFTED_COLUMNS: ",".join(drift.drifted_columns)[:5000] or "-",
        T.RUN_REFERENCE_WINDOW: f"{drift.reference.start} / {drift.reference.end}",
        T.RUN_CURRENT_WINDOW: f"{drift.current.start} / {drift.current.end}",
    }
    run.log(metrics=metrics, tags=tags)
    run.log_folder(out_dir, "drift_report")
    run.finish()


def write_outputs(
    files: RunFiles, drift: DriftSummary, evidence: EvidenceSummary, run_key: str, registry: RegistryContext
) -> Path:
    """`drift_summary.json`, `summary.json` and the page (atomically); returns the summary's path."""
    from lockgate.drift.report import render_drift_page

    (files / DRIFT_SUMMARY_FILE).write_text(drift.model_dump_json(indent=2))
    summary_path = write_summary(evidence, files.summary)
    html = render_drift_page(
        drift,
        run_key=run_key,
        evidently_href=EVIDENTLY_FILE if drift.evidently_report else None,
        challenger_version=registry.challenger_version,
        champion_version=registry.champion_version,
    )
    write_report(files.report, html)
    return summary_path


def report_entry(
    ctx: RunContext, run_key: str, drift: DriftSummary, files: RunFiles, registry: RegistryContext, at: datetime
) -> ReportEntry:
    """The reports-index row of a drift run."""
    if drift.status != "ok":
        status, title = "insufficient_data", f"Drift {ctx.model}: insufficient data"
    else:
        status = "warn" if drift.drift_detected else "ok"
        title = (
            f"Drift {ctx.model}: {len(drift.drifted_columns)} of {drift.n_tested} columns drift "
            f"(share {drift.drift_share:.2f})"
        )
    return ReportEntry(
        kind="drift",
        model_name=ctx.model,
        run_key=run_key,
        status=status,
        title=title,
        path=str(files.report),
        model_version=registry.challenger_version,
        champion_version=registry.champion_version,
        dag_id=ctx.dag_id,
        run_id=ctx.run_id,
        created_at=at,
    )
