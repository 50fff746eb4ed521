"""The benchmark job: challenger against champion, side by side, on production-shaped load.

1. resolve the versions (the `challenger` and `champion` aliases unless given);
2. choose the device (GPU in the policy's dtype; CPU in float32 unless the policy requires a GPU);
3. sample prompt lengths from the inference logs of the window (a fixed synthetic set without logs);
4. download and load both versions; warm up; measure every serving configuration and batch size,
   the versions interleaved request by request (`lockgate.benchmark.harness`);
5. turn the measurements into metrics with bootstrap intervals and challenger/champion ratios,
   and decide whether the run is steady enough to use (`lockgate.benchmark.analysis`);
6. write `report.html` and `summary.json` into `report_dir("benchmark", model, run_key)`, copy the
   summary to the model's `latest.json`, log one MLflow run per version (metrics, params,
   fingerprint, report; tagged with the model version, which gets `lockgate.benchmark_run_id`),
   and index the report.

Bad input (an unknown version or alias, a version that is not a causal LM or lacks artifacts,
no GPU where the policy requires one, invalid overrides) ends in an `error` summary and a report
that says what went wrong; out of memory at one batch size skips that size and goes on. A
run too noisy to trust is `invalid`. Neither kind is used by a gate. Everything is keyed by
`run_key`: running a key again replaces its outputs and its MLflow runs.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.benchmark.environment import GpuRequiredError
from lockgate.errors import ConfigError, InvalidModelError, UnknownModelVersionError
from lockgate.evidence import EvidenceSummary, SummaryStatus, write_summary
from lockgate.policy.schema import BenchmarkConfig, Policy, load_policy
from lockgate.registry import tags as T
from lockgate.reports.html import report_dir, safe_segment
from lockgate.settings import get_settings

if TYPE_CHECKING:
    from lockgate.registry.adapter import ModelRegistry
    from lockgate.registry.runs import EvidenceRun

log = logging.getLogger(__name__)

DAG_ID = "lockgate_benchmark"
REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"
HEADLINE_EXTRA = ("ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50", "decode_tokens_per_s", "peak_memory_mb")


def default_run_key() -> str:
    return f"manual__{datetime.now(UTC):%Y%m%dT%H%M%S}"


def effective_config(
    base: BenchmarkConfig,
    batch_sizes: Sequence[int] | None = None,
    max_new_tokens: int | None = None,
    repetitions: int | None = None,
    serving_configs: Sequence[str] | None = None,
) -> BenchmarkConfig:
    """The policy's benchmark section with a run's overrides, validated like the policy.

    Raises:
        ConfigError: an override is invalid; the message names it.
    """
    from pydantic import ValidationError

    from lockgate.settings import format_validation_error

    overrides: dict[str, Any] = {}
    if batch_sizes:
        overrides["batch_sizes"] = list(batch_sizes)
    if max_new_tokens is not None:
        overrides["max_new_tokens"] = max_new_tokens
    if repetitions is not None:
        overrides["repetitions"] = repetitions
    if serving_configs:
        overrides["serving_configs"] = list(serving_configs)
    if not overrides:
        return base
    try:
        return BenchmarkConfig.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        key, msg = format_validation_error(exc)
        raise ConfigError(f"invalid benchmark override ({msg})", key=f"benchmark.{key}") from None


def _summary(
    model_name: str,
    *,
    status: SummaryStatus,
    message: str | None,
    challenger: str | None,
    champion: str | None,
    dag_id: str | None,
    run_id: str | None,
    details: dict[str, Any],
    created_at: datetime,
    metrics: dict[str, Any] | None = None,
    sample_sizes: dict[str, int] | None = None,
    window: tuple[datetime, datetime] | None = None,
) -> EvidenceSummary:
    return EvidenceSummary(
        kind="benchmark",
        model_name=model_name,
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
        dag_id=dag_id,
        run_id=run_id,
        details=details,
    )


def run_benchmark(
    model_name: str,
    versions: Sequence[str] | None = None,
    batch_sizes: Sequence[int] | None = None,
    max_new_tokens: int | None = None,
    repetitions: int | None = None,
    run_key: str | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    data_interval: tuple[datetime, datetime] | None = None,
    serving_configs: Sequence[str] | None = None,
    policy: Policy | None = None,
) -> EvidenceSummary:
    """Benchmark a model's challenger against its champion and publish the evidence.

    Args:
        model_name: the registered model.
        versions: None for the `challenger` and `champion` aliases; else one or two versions or
            aliases, challenger first (one: the challenger alone, no ratios).
        batch_sizes: override of `benchmark.batch_sizes`.
        max_new_tokens: override of `benchmark.max_new_tokens`.
        repetitions: override of `benchmark.repetitions`.
        run_key: names the outputs (the DAG passes its run id); default `manual__<time>`.
        dag_id: recorded in the summary, the MLflow runs and the reports index.
        run_id: recorded likewise.
        data_interval: the DAG run's data interval: the window whose logged prompt lengths shape the load.
        serving_configs: override of `benchmark.serving_configs`.
        policy: the policy (default: `load_policy()`).

    Returns:
        The evidence summary that was written (status ok, invalid or error).
    """
    started = time.perf_counter()
    settings = get_settings()
    policy = policy or load_policy()
    run_key = safe_segment(run_key or default_run_key())
    created_at = datetime.now(UTC)
    out_dir = report_dir("benchmark", model_name, run_key, settings.reports_dir)
    base_details: dict[str, Any] = {
        "run_key": run_key,
        "confidence": policy.statistics.confidence,
        "bootstrap_resamples": policy.statistics.bootstrap_resamples,
        "policy_hash": policy.policy_hash,
    }
    try:
        cfg = effective_config(policy.benchmark, batch_sizes, max_new_tokens, repetitions, serving_configs)
    except ConfigError as exc:
        summary = _summary(
            model_name,
            status="error",
            message=str(exc),
            challenger=None,
            champion=None,
            dag_id=dag_id,
            run_id=run_id,
            details={**base_details, "error_code": exc.code},
            created_at=created_at,
        )
        return _publish(summary, None, out_dir, run_key, [], None, settings.reports_dir)
    from lockgate.progress import JobSteps

    steps = JobSteps("benchmark", model_name, 8 + cfg.repetitions)
    details: dict[str, Any] = {**base_details, "config": cfg.model_dump(mode="json")}

    from lockgate.registry.adapter import ModelRegistry
    from lockgate.registry.versions import resolve_versions

    registry = ModelRegistry()
    resolved: list[Any] = []
    models: list[Any] = []
    try:
        resolved = resolve_versions(model_name, versions, registry)
        steps("versions: " + ", ".join(r.label() for r in resolved))
        return _measure_and_publish(
            model_name, resolved, models, cfg, policy, details, steps, run_key, out_dir, created_at,
            dag_id, run_id, data_interval, registry, started,
        )  # fmt: skip
    except (UnknownModelVersionError, InvalidModelError, ConfigError, GpuRequiredError) as exc:
        log.error("benchmark %s: %s", model_name, exc)
        challenger = next((r.version for r in resolved if r.role == "challenger"), None)
        champion = next((r.version for r in resolved if r.role == "champion"), None)
        summary = _summary(
            model_name,
            status="error",
            message=str(exc),
            challenger=challenger,
            champion=champion,
            dag_id=dag_id,
            run_id=run_id,
            details={**details, "error_code": exc.code},
            created_at=created_at,
        )
        return _publish(summary, None, out_dir, run_key, resolved, registry, settings.reports_dir)
    finally:
        models.clear()  # free both models before the task returns
        _free_device()


def _free_device() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _measure_and_publish(
    model_name: str,
    resolved: list[Any],
    models: list[Any],
    cfg: BenchmarkConfig,
    policy: Policy,
    details: dict[str, Any],
    steps: Callable[[str], None],
    run_key: str,
    out_dir: Path,
    created_at: datetime,
    dag_id: str | None,
    run_id: str | None,
    data_interval: tuple[datetime, datetime] | None,
    registry: ModelRegistry,
    started: float,
) -> EvidenceSummary:
    from lockgate.benchmark.analysis import analyse
    from lockgate.benchmark.environment import choose_device, fingerprint
    from lockgate.benchmark.harness import Plan, load_model, run_plan
    from lockgate.benchmark.workload import benchmark_window, fit_to_context, load_prompt_lengths
    from lockgate.models import materialise
    from lockgate.settings import resolve_logs_db_url

    settings = get_settings()
    device = choose_device(cfg.gpu_dtype, cfg.require_gpu)
    details["device"] = asdict(device)
    details["clock"] = (
        "CUDA events (one synchronisation per request)"
        if device.kind == "cuda"
        else ("time.thread_time (CPU time of the measuring thread)" if cfg.cpu_clock == "thread_cpu" else
              "time.perf_counter (wall time)")
    )  # fmt: skip
    details["fingerprint"] = fingerprint(device, cfg.cpu_threads if device.kind == "cpu" else None)
    steps(f"device: {device.kind} {device.name} ({device.dtype})")

    window_policy = _current_window(policy, model_name)
    window = benchmark_window(window_policy, data_interval)
    prompts = load_prompt_lengths(
        resolve_logs_db_url(settings), model_name, window, cfg.prompt_samples, policy.statistics.seed, policy.logs
    )
    steps(f"workload: {len(prompts.lengths)} prompt lengths from {prompts.source} ({prompts.detail})")

    details["models"] = {}
    for r in resolved:
        path = materialise(model_name, r.version, settings.home / "model_cache")
        m = load_model(r.role, r.version, path, device)
        models.append(m)
        details["models"][r.role] = {
            "version": r.version,
            "requested": r.requested,
            "n_params": m.n_params,
            "weight_bytes": m.weight_bytes,
            "load_s": round(m.load_s, 3),
            "architecture": (m.config.get("architectures") or [m.config.get("model_type")])[0],
            "shape": asdict(m.shape) if m.shape else None,
        }
    steps("loaded " + ", ".join(f"{m.role} v{m.version} ({m.n_params:,} parameters)" for m in models))

    limits = [m.max_positions for m in models if m.max_positions]
    if limits:
        prompts = fit_to_context(prompts, min(limits) - cfg.max_new_tokens)
    details["workload"] = prompts.describe()
    plan = Plan(
        batch_sizes=tuple(sorted(cfg.batch_sizes)),
        new_tokens=cfg.max_new_tokens,
        repetitions=cfg.repetitions,
        warmups=cfg.warmups,
        configs=tuple(cfg.serving_configs),
        seed=policy.statistics.seed,
        cpu_threads=cfg.cpu_threads,
        cpu_clock=cfg.cpu_clock,
    )
    measurements = run_plan(models, prompts, plan, device, progress=steps)
    analysis = analyse(
        measurements,
        {m.role: m.shape for m in models},
        confidence=policy.statistics.confidence,
        resamples=policy.statistics.bootstrap_resamples,
        seed=policy.statistics.seed,
        max_cv=cfg.max_cv,
    )
    steps(f"analysed: {analysis.status}" + (f" ({analysis.message})" if analysis.message else ""))
    details.update(
        {
            "headline": analysis.headline,
            "problems": analysis.problems,
            "notes": [*measurements.notes, *analysis.notes],
            "failures": [asdict(f) for f in measurements.failures],
            "cells": [_cell_details(c) for c in analysis.cells],
            "process": measurements.process,
            "setup_s": measurements.setup_s,
            "measure_wall_s": round(measurements.wall_s, 3),
        }
    )
    if measurements.failures and analysis.status == "ok":
        skipped = "; ".join(
            f"{f.config} at {'every batch size' if f.batch_size is None else f'batch size {f.batch_size}'}: {f.kind}"
            for f in measurements.failures
        )
        message: str | None = f"skipped {skipped}"
    else:
        message = analysis.message
    cell = next((c for c in analysis.cells if analysis.headline and c.batch_size == analysis.headline["batch_size"]
                 and c.config == analysis.headline["config"]), None)  # fmt: skip
    sample_sizes = {"repetitions": cell.repetitions, "requests": cell.requests} if cell else {}
    summary = _summary(
        model_name,
        status=analysis.status,
        message=message,
        challenger=next((m.version for m in models if m.role == "challenger"), None),
        champion=next((m.version for m in models if m.role == "champion"), None),
        dag_id=dag_id,
        run_id=run_id,
        details=details,
        created_at=created_at,
        metrics=dict(analysis.metrics),
        sample_sizes=sample_sizes,
        window=(prompts.window_start, prompts.window_end) if prompts.window_start and prompts.window_end else None,
    )
    out = _publish(summary, analysis, out_dir, run_key, resolved, registry, settings.reports_dir)
    steps(f"published {out.report_path} in {time.perf_counter() - started:.1f} s")
    return out


def _current_window(policy: Policy, model_name: str) -> Any:
    from lockgate.policy.schema import DataIntervalWindow

    try:
        return policy.model(model_name).windows.current
    except ConfigError:
        # A model the policy does not watch can still be benchmarked, on the default window.
        return DataIntervalWindow()


def _cell_details(cell: Any) -> dict[str, Any]:
    """A cell's distributions and noise for the summary (the raw samples stay in the report)."""
    per_role = {
        role: {k: v for k, v in info.items() if k != "samples_ms"} for role, info in cell.per_role.items()
    }  # fmt: skip
    return {
        "config": cell.config,
        "batch_size": cell.batch_size,
        "repetitions": cell.repetitions,
        "requests": cell.requests,
        "per_role": per_role,
    }


# --------------------------------------------------------------------------- outputs


def _publish(
    summary: EvidenceSummary,
    analysis: Any,
    out_dir: Path,
    run_key: str,
    resolved: Sequence[Any],
    registry: ModelRegistry | None,
    reports_dir: Path,
) -> EvidenceSummary:
    """MLflow runs, report, summary, latest copy and index entry."""
    from lockgate.benchmark.report import render_report
    from lockgate.jobs.publish import publish_evidence
    from lockgate.reports.index import ReportEntry

    report_path = out_dir / REPORT_FILE
    summary_path = out_dir / SUMMARY_FILE
    runs: dict[str, EvidenceRun] = {}
    if registry is not None and resolved:
        runs = _mlflow_runs(registry, summary, resolved, run_key)
    run_ids = {role: run.run_id for role, run in runs.items()}
    summary = summary.model_copy(update={"report_path": str(report_path), "mlflow_run_ids": run_ids})
    html = render_report(summary, analysis, run_key)
    tmp = report_path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(report_path)
    write_summary(summary, summary_path)
    if runs and registry is not None:
        _finish_mlflow_runs(registry, summary, runs, report_path, summary_path)
    entry = ReportEntry(
        kind="benchmark",
        model_name=summary.model_name,
        run_key=run_key,
        status=summary.status,
        title=_title(summary),
        path=str(report_path),
        model_version=summary.challenger_version,
        champion_version=summary.champion_version,
        dag_id=summary.dag_id,
        run_id=summary.run_id,
        created_at=summary.created_at,
    )
    publish_evidence(summary, summary_path, reports_dir=reports_dir, report=entry, run_key=run_key)
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
        metrics: dict[str, float] = {}
        for name, m in summary.metrics.items():
            est = getattr(m, r.role, None)
            if est is not None:
                metrics[name] = est.value
            if r.role == "challenger" and m.ratio is not None:
                metrics[f"ratio.{name}"] = m.ratio.value
                if m.ratio.ci_high is not None and m.ratio.ci_low is not None:
                    metrics[f"ratio.{name}.ci_low"] = m.ratio.ci_low
                    metrics[f"ratio.{name}.ci_high"] = m.ratio.ci_high
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
        run.log(
            metrics=metrics,
            params={k: str(v)[:6000] for k, v in params.items() if v is not None},
            tags={T.RUN_BENCHMARK_VALID: str(summary.valid).lower()},
            at=summary.created_at.timestamp(),
        )
        if fp:
            run.log_dict(fp, "fingerprint.json")
        registry.set_tags(summary.model_name, r.version, {T.BENCHMARK_RUN_ID: run.run_id})
    return runs


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


# --------------------------------------------------------------------------- entry points


def asset_extra(summary: EvidenceSummary) -> dict[str, Any]:
    """What the Asset event carries: where the summary is, and the headline figures."""
    extra: dict[str, Any] = {
        "model_name": summary.model_name,
        "status": summary.status,
        "valid": summary.valid,
        "message": summary.message,
        "challenger_version": summary.challenger_version,
        "champion_version": summary.champion_version,
        "summary_path": str(Path(summary.report_path).with_name(SUMMARY_FILE)) if summary.report_path else None,
        "report_path": summary.report_path,
        "content_hash": summary.content_hash,
    }
    for name in HEADLINE_EXTRA:
        m = summary.metrics.get(name)
        if m is None:
            continue
        if m.challenger is not None:
            extra[f"{name}.challenger"] = round(m.challenger.value, 6)
        if m.champion is not None:
            extra[f"{name}.champion"] = round(m.champion.value, 6)
        if m.ratio is not None:
            extra[f"{name}.ratio"] = round(m.ratio.value, 6)
            if m.ratio.ci_high is not None and m.ratio.ci_low is not None:
                extra[f"{name}.ratio_ci"] = [round(m.ratio.ci_low, 6), round(m.ratio.ci_high, 6)]
    return extra


def run_from_params(
    params: dict[str, Any],
    data_interval: tuple[datetime, datetime] | None = None,
    dag_id: str | None = DAG_ID,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The DAG task: Params in (`model` is required), the Asset event's extra out (JSON-safe)."""
    model = str(params.get("model") or "").strip()
    if not model:
        raise ConfigError("a model name is required", key="model")
    summary = run_benchmark(
        model_name=model,
        versions=params.get("versions") or None,
        batch_sizes=params.get("batch_sizes") or None,
        max_new_tokens=params.get("max_new_tokens"),
        repetitions=params.get("repetitions"),
        serving_configs=params.get("serving_configs") or None,
        run_key=run_id,
        dag_id=dag_id,
        run_id=run_id,
        data_interval=data_interval,
    )
    return asset_extra(summary)


def cmd_run(args: argparse.Namespace) -> int:
    """`lockgate run benchmark --model M`: challenger against champion now, on the policy's settings."""
    summary = run_benchmark(args.model)
    print(f"benchmark {args.model}: {summary.status}" + (f" ({summary.message})" if summary.message else ""))
    for name in ("ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50"):
        m = summary.metrics.get(name)
        if m is None or m.challenger is None:
            continue
        line = f"  {name}: challenger {m.challenger.value:.3f}"
        if m.champion is not None:
            line += f", champion {m.champion.value:.3f}"
        if m.ratio is not None and m.ratio.ci_low is not None and m.ratio.ci_high is not None:
            line += f", ratio {m.ratio.value:.3f} [{m.ratio.ci_low:.3f}, {m.ratio.ci_high:.3f}]"
        print(line)
    print(f"report: {summary.report_path}")
    return 0 if summary.status == "ok" else 1
