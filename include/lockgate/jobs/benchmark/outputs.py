"""The benchmark run's outputs: one MLflow run per version, the page, the summary, then the one publish step."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.evidence import EvidenceSummary, SummaryStatus, write_summary
from lockgate.jobs.context import RunContext
from lockgate.jobs.publish import RunFiles, publish_evidence, write_report
from lockgate.registry import tags as T
from lockgate.reports.index import ReportEntry

if TYPE_CHECKING:
    from lockgate.registry.adapter import ModelRegistry
    from lockgate.registry.runs import EvidenceRun


def make_summary(
    ctx: RunContext,
    run_key: str,
    *,
    status: SummaryStatus,
    message: str | None,
    challenger: str | None,
    champion: str | None,
    details: dict[str, Any],
    created_at: datetime,
    metrics: dict[str, Any] | None = None,
    sample_sizes: dict[str, int] | None = None,
    window: tuple[datetime, datetime] | None = None,
) -> EvidenceSummary:
    """A benchmark summary (ok, invalid, or error: then without metrics)."""
    return EvidenceSummary(
        kind="benchmark",
        model_name=ctx.model,
        challenger_version=challenger,
        champion_version=champion,
        created_at=created_at,
        window_start=window[0] if window else None,
        window_end=window[1] if window else None,
        status=status,
        valid=status == "ok",
        message=message,
        metrics=metrics or {},
        sample_sizes=sample_sizes or {},
        dag_id=ctx.dag_id,
        run_id=ctx.run_id,
        run_key=run_key,
        details=details,
    )


def publish(
    summary: EvidenceSummary,
    analysis: Any,
    files: RunFiles,
    resolved: Sequence[Any],
    registry: ModelRegistry | None,
    reports_dir: Path,
) -> EvidenceSummary:
    """MLflow runs, report, summary, then the one publish step (latest copy, index entry)."""
    from lockgate.benchmark.report import render_report

    run_key = summary.run_key or files.dir.name
    runs: dict[str, EvidenceRun] = {}
    if registry is not None and resolved:
        runs = _mlflow_runs(registry, summary, resolved, run_key)
    run_ids = {role: run.run_id for role, run in runs.items()}
    summary = summary.model_copy(update={"report_path": str(files.report), "mlflow_run_ids": run_ids})
    write_report(files.report, render_report(summary, analysis, run_key))
    write_summary(summary, files.summary)
    if runs and registry is not None:
        _finish_mlflow_runs(registry, summary, runs, files.report, files.summary)
    entry = ReportEntry(
        kind="benchmark",
        model_name=summary.model_name,
        run_key=run_key,
        status=summary.status,
        title=_title(summary),
        path=str(files.report),
        model_version=summary.challenger_version,
        champion_version=summary.champion_version,
        dag_id=summary.dag_id,
        run_id=summary.run_id,
        created_at=summary.created_at,
    )
    publish_evidence(summary, files.summary, reports_dir=reports_dir, report=entry, run_key=run_key)
    return summary


def _title(summary: EvidenceSummary) -> str:
    head = f"Benchmark {summary.model_name}"
    if summary.status == "error":
        return f"{head}: error"
    if summary.status == "invalid":
        return f"{head}: invalid (too noisy)"
    ttft = summary.metrics.get("ttft_ms_p50")
    if ttft is not None and ttft.ratio is not None:
        return f"{head}: TTFT p50 x{ttft.ratio.value:.2f} (challenger v{summary.challenger_version} / champion)"
    if ttft is not None and ttft.challenger is not None:
        return f"{head}: TTFT p50 {ttft.challenger.value:.1f} ms (v{summary.challenger_version}, no champion)"
    return head


def _mlflow_runs(
    registry: ModelRegistry, summary: EvidenceSummary, resolved: Sequence[Any], run_key: str
) -> dict[str, EvidenceRun]:
    """One MLflow run per version (the previous runs of this key are deleted first)."""
    from lockgate.registry.runs import EvidenceRun

    other = {"challenger": summary.champion_version, "champion": summary.challenger_version}
    d = summary.details
    runs: dict[str, EvidenceRun] = {}
    for r in resolved:
        run = EvidenceRun.open(
            summary.model_name,
            {T.RUN_KIND: "benchmark", T.RUN_KEY: run_key, T.RUN_MODEL_VERSION: r.version},
            tags={
                T.RUN_MODEL_NAME: summary.model_name,
                T.RUN_ROLE: r.role,
                T.RUN_COMPARED_WITH: str(other.get(r.role) or ""),
                T.RUN_BENCHMARK_STATUS: summary.status,
                T.RUN_DAG_ID: summary.dag_id or "",
                T.RUN_AIRFLOW_RUN_ID: summary.run_id or "",
            },
            run_name=f"benchmark-{r.role}-v{r.version}-{run_key}",
            reuse=False,
        )
        runs[r.role] = run
        fp = d.get("fingerprint", {})
        run.log(
            metrics=_run_metrics(summary, r.role),
            params=_run_params(summary, r),
            tags={T.RUN_BENCHMARK_VALID: str(summary.valid).lower()},
            at=summary.created_at.timestamp(),
        )
        if fp:
            run.log_dict(fp, "fingerprint.json")
        registry.set_tags(summary.model_name, r.version, {T.BENCHMARK_RUN_ID: run.run_id})
    return runs


def _run_metrics(summary: EvidenceSummary, role: str) -> dict[str, float]:
    """A version's values, and on the challenger's run the ratios with their intervals."""
    metrics: dict[str, float] = {}
    for name, m in summary.metrics.items():
        est = getattr(m, role, None)
        if est is not None:
            metrics[name] = est.value
        if role == "challenger" and m.ratio is not None:
            metrics[f"ratio.{name}"] = m.ratio.value
            if m.ratio.ci_high is not None and m.ratio.ci_low is not None:
                metrics[f"ratio.{name}.ci_low"] = m.ratio.ci_low
                metrics[f"ratio.{name}.ci_high"] = m.ratio.ci_high
    return metrics


def _run_params(summary: EvidenceSummary, r: Any) -> dict[str, str]:
    """The run's parameters: the configuration, the workload and the environment's fingerprint."""
    d = summary.details
    cfg = d.get("config", {})
    fp = d.get("fingerprint", {})
    params = {
        "model_name": summary.model_name,
        "model_version": r.version,
        "role": r.role,
        "batch_sizes": ",".join(str(b) for b in cfg.get("batch_sizes", [])),
        "max_new_tokens": cfg.get("max_new_tokens"),
        "repetitions": cfg.get("repetitions"),
        "warmups": cfg.get("warmups"),
        "serving_configs": ",".join(cfg.get("serving_configs", [])),
        "prompt_source": (d.get("workload") or {}).get("source"),
        "prompt_samples": (d.get("workload") or {}).get("n"),
        "device": fp.get("device"),
        "device_name": fp.get("device_name"),
        "dtype": fp.get("dtype"),
        "torch": fp.get("torch"),
        "transformers": fp.get("transformers"),
        "cuda": fp.get("cuda"),
        "driver": fp.get("driver"),
        "fingerprint_hash": fp.get("hash"),
        "cpu_threads": cfg.get("cpu_threads"),
        "cpu_clock": cfg.get("cpu_clock"),
    }
    return {k: str(v)[:6000] for k, v in params.items() if v is not None}


def _finish_mlflow_runs(
    registry: ModelRegistry,
    summary: EvidenceSummary,
    runs: dict[str, EvidenceRun],
    report_path: Path,
    summary_path: Path,
) -> None:
    for role, run in runs.items():
        run.log_files([report_path, summary_path], "benchmark")
        version = summary.challenger_version if role == "challenger" else summary.champion_version
        if version:
            registry.set_tags(summary.model_name, version, {T.BENCHMARK_REPORT: str(report_path)})
        run.finish(failed=summary.status == "error")
