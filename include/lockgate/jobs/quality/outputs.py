"""The quality run's outputs: Evidently's descriptor page, the MLflow run, the files, then the one publish step."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.evidence import REPORT_FILE, SUMMARY_FILE, EvidenceSummary, write_summary
from lockgate.jobs.publish import publish_evidence, write_report
from lockgate.jobs.quality.plan import PLAN_FILE, REPLAY_FILE, QualityPlan
from lockgate.policy.schema import Policy
from lockgate.registry import tags as T
from lockgate.reports.index import ReportEntry
from lockgate.settings import get_settings

if TYPE_CHECKING:
    from lockgate.registry.runs import EvidenceRun

log = logging.getLogger(__name__)


def write_outputs(
    plan: QualityPlan,
    policy: Policy,
    summary: EvidenceSummary,
    quality: Any,
    samples: Mapping[str, Sequence[Any]],
    scores: Mapping[str, Any],
    timings: dict[str, float],
    t0: float,
    judgments: Mapping[str, Any] | None = None,
) -> EvidenceSummary:
    from lockgate.judge.report import render_quality_report, score_distributions

    run_dir = Path(plan.run_dir)
    settings = get_settings()
    evidently_href = None
    if policy.quality.evidently_report:
        t = time.perf_counter()
        try:
            evidently_href = _evidently(run_dir, samples, scores)
        except Exception as exc:  # noqa: BLE001 - the extra page is optional; our report and evidence stand
            log.warning("Evidently descriptor report failed: %s", exc)
            quality.notes.append(f"the Evidently descriptor report could not be built: {type(exc).__name__}")
        timings["evidently"] = time.perf_counter() - t
    distributions = score_distributions(scores, quality)
    report_path = run_dir / REPORT_FILE
    summary.report_path = str(report_path)
    timings["total"] = time.perf_counter() - t0
    quality.timings_s = {k: round(v, 2) for k, v in timings.items()}
    summary.details["quality"] = quality.compact()
    # MLflow first, so the summary records its run id; the artifacts are logged once the files exist.
    run = _mlflow_run(plan, summary)
    summary.mlflow_run_ids = {"quality": run.run_id}
    if policy.quality.mlflow_assessments and judgments:
        t = time.perf_counter()
        _mlflow_assessments(run, plan, quality, samples, judgments, policy.quality.mlflow_assessments)
        timings["mlflow_assessments"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        quality.timings_s = {k: round(v, 2) for k, v in timings.items()}
        summary.details["quality"] = quality.compact()
    write_report(report_path, render_quality_report(summary, quality, distributions, evidently_href))
    (run_dir / "quality_summary.json").write_text(quality.model_dump_json(indent=2))
    write_summary(summary, run_dir / SUMMARY_FILE)
    _mlflow_artifacts(run, run_dir)
    entry = ReportEntry(
        kind="quality",
        model_name=plan.model_name,
        run_key=plan.run_key,
        status=summary.status,
        title=f"Quality {plan.model_name}: challenger {plan.challenger_version} vs champion {plan.champion_version}",
        path=str(report_path),
        model_version=plan.challenger_version,
        champion_version=plan.champion_version,
        dag_id=plan.dag_id,
        run_id=plan.run_id,
        created_at=summary.created_at,
    )
    latest = publish_evidence(
        summary, run_dir / SUMMARY_FILE, reports_dir=settings.reports_dir, report=entry, run_key=plan.run_key
    )
    log.info("quality report %s; summary %s (the latest: %s)", report_path, run_dir / SUMMARY_FILE, latest)
    return summary


def _evidently(run_dir: Path, samples: Mapping[str, Sequence[Any]], scores: Mapping[str, Any]) -> str | None:
    from lockgate.judge.evidently_report import write_evidently_report

    numeric = ["embedding_relevance", "embedding_grounding", "judge_relevance", "judge_safety"]

    def rows(role: str) -> list[dict[str, Any]]:
        out = []
        for s in samples[role]:
            if not s.answered:
                continue
            row: dict[str, Any] = {"prompt": s.prompt, "response": s.response}
            for m in numeric:
                row[m] = scores[role].series(m).get(s.key)
            out.append(row)
        return out

    path = write_evidently_report(rows("challenger"), rows("champion"), numeric, run_dir / "evidently.html")
    return path.name if path else None


def _mlflow_run(plan: QualityPlan, summary: EvidenceSummary) -> EvidenceRun:
    """The MLflow run of this run key (reused on rerun), with headline metrics logged."""
    from lockgate.registry.runs import EvidenceRun

    run = EvidenceRun.open(
        plan.model_name,
        {T.RUN_KIND: "quality", T.RUN_KEY: plan.run_key},
        tags={
            T.RUN_MODEL: plan.model_name,
            T.RUN_CHALLENGER_VERSION: str(plan.challenger_version),
            T.RUN_CHAMPION_VERSION: str(plan.champion_version),
        },
        run_name=f"quality-{plan.run_key}",
    )
    metrics: dict[str, float] = {}
    for name, metric in summary.metrics.items():
        for role in ("challenger", "champion", "difference", "model"):
            est = getattr(metric, role)
            if est is not None:
                metrics[f"{name}.{role}"] = est.value
    run.log(metrics=metrics)
    run.finish()
    return run


def _mlflow_assessments(
    run: EvidenceRun,
    plan: QualityPlan,
    quality: Any,
    samples: Mapping[str, Sequence[Any]],
    judgments: Mapping[str, Any],
    limit: int,
) -> None:
    """Per-sample judge assessments on MLflow traces; a failure is a note in the report, not a failed job."""
    from lockgate.judge.mlflow_results import sample_records
    from lockgate.registry.genai import log_assessments

    records = sample_records(samples, judgments, plan.rubrics, limit)
    try:
        n = log_assessments(run.run_id, run.experiment_id, records, quality.judge_identity, quality.judge_trusted)
    except Exception as exc:  # noqa: BLE001 - the summary and report stand without MLflow's trace views
        log.warning("judge assessments could not be logged to MLflow: %s", exc)
        quality.notes.append(f"the judge's assessments could not be logged to MLflow: {type(exc).__name__}: {exc}")
        return
    quality.notes.append(
        f"{n} sampled requests with the judge's assessments are logged as traces of MLflow run {run.run_id} "
        "(MLflow's GenAI views)"
    )


def _mlflow_artifacts(run: EvidenceRun, run_dir: Path) -> None:
    names = (REPORT_FILE, SUMMARY_FILE, "quality_summary.json", "evidently.html", PLAN_FILE, REPLAY_FILE)
    run.log_files([run_dir / name for name in names], "quality_report")
