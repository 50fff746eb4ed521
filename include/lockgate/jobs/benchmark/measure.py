"""The benchmark's measurement: device, workload, both models loaded, the plan run and analysed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.errors import ConfigError
from lockgate.evidence import EvidenceSummary
from lockgate.jobs.benchmark.outputs import make_summary, publish
from lockgate.jobs.context import RunContext
from lockgate.jobs.publish import RunFiles
from lockgate.policy.schema import BenchmarkConfig, Policy
from lockgate.settings import get_settings

if TYPE_CHECKING:
    from lockgate.registry.adapter import ModelRegistry


@dataclass
class Measurement:
    """One benchmark run in progress: what it was asked, where it writes, what it found so far."""

    ctx: RunContext
    files: RunFiles
    cfg: BenchmarkConfig
    policy: Policy
    details: dict[str, Any]
    steps: Callable[[str], None]
    started: float
    created_at: datetime
    registry: ModelRegistry
    resolved: list[Any]
    models: list[Any]


def free_device() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _device(run: Measurement) -> Any:
    from lockgate.benchmark.environment import choose_device, fingerprint

    cfg, details = run.cfg, run.details
    device = choose_device(cfg.gpu_dtype, cfg.require_gpu)
    details["device"] = asdict(device)
    details["clock"] = (
        "CUDA events (one synchronisation per request)"
        if device.kind == "cuda"
        else ("time.thread_time (CPU time of the measuring thread)" if cfg.cpu_clock == "thread_cpu" else
              "time.perf_counter (wall time)")
    )  # fmt: skip
    details["fingerprint"] = fingerprint(device, cfg.cpu_threads if device.kind == "cpu" else None)
    run.steps(f"device: {device.kind} {device.name} ({device.dtype})")
    return device


def _load_models(run: Measurement, device: Any, cache: Path) -> None:
    from lockgate.benchmark.harness import load_model
    from lockgate.models import materialise

    run.details["models"] = {}
    for r in run.resolved:
        path = materialise(run.ctx.model, r.version, cache)
        m = load_model(r.role, r.version, path, device)
        run.models.append(m)
        run.details["models"][r.role] = {
            "version": r.version,
            "requested": r.requested,
            "n_params": m.n_params,
            "weight_bytes": m.weight_bytes,
            "load_s": round(m.load_s, 3),
            "architecture": (m.config.get("architectures") or [m.config.get("model_type")])[0],
            "shape": asdict(m.shape) if m.shape else None,
        }
    run.steps("loaded " + ", ".join(f"{m.role} v{m.version} ({m.n_params:,} parameters)" for m in run.models))


def measure_and_publish(run: Measurement) -> EvidenceSummary:
    """Device, workload, models, the interleaved measurement and its analysis; then publish the summary."""
    from lockgate.benchmark.analysis import analyse
    from lockgate.benchmark.harness import Plan, run_plan
    from lockgate.benchmark.workload import benchmark_window, fit_to_context, load_prompt_lengths
    from lockgate.settings import resolve_logs_db_url

    settings = get_settings()
    cfg, policy, model_name = run.cfg, run.policy, run.ctx.model
    device = _device(run)
    window = benchmark_window(_current_window(policy, model_name), run.ctx.data_interval)
    prompts = load_prompt_lengths(
        resolve_logs_db_url(settings), model_name, window, cfg.prompt_samples, policy.statistics.seed, policy.logs
    )
    run.steps(f"workload: {len(prompts.lengths)} prompt lengths from {prompts.source} ({prompts.detail})")
    _load_models(run, device, settings.home / "model_cache")
    limits = [m.max_positions for m in run.models if m.max_positions]
    if limits:
        prompts = fit_to_context(prompts, min(limits) - cfg.max_new_tokens)
    run.details["workload"] = prompts.describe()
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
    measurements = run_plan(run.models, prompts, plan, device, progress=run.steps)
    analysis = analyse(
        measurements,
        {m.role: m.shape for m in run.models},
        confidence=policy.statistics.confidence,
        resamples=policy.statistics.bootstrap_resamples,
        seed=policy.statistics.seed,
        max_cv=cfg.max_cv,
    )
    run.steps(f"analysed: {analysis.status}" + (f" ({analysis.message})" if analysis.message else ""))
    summary = _summary_of(run, measurements, analysis, prompts)
    out = publish(summary, analysis, run.files, run.resolved, run.registry, settings.reports_dir)
    run.steps(f"published {out.report_path} in {time.perf_counter() - run.started:.1f} s")
    return out


def _summary_of(run: Measurement, measurements: Any, analysis: Any, prompts: Any) -> EvidenceSummary:
    """The evidence summary of an analysed measurement (the headline cell's sample sizes)."""
    run.details.update(
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
    return make_summary(
        run.ctx,
        run.files.dir.name,
        status=analysis.status,
        message=message,
        challenger=next((m.version for m in run.models if m.role == "challenger"), None),
        champion=next((m.version for m in run.models if m.role == "champion"), None),
        details=run.details,
        created_at=run.created_at,
        metrics=dict(analysis.metrics),
        sample_sizes={"repetitions": cell.repetitions, "requests": cell.requests} if cell else {},
        window=(prompts.window_start, prompts.window_end) if prompts.window_start and prompts.window_end else None,
    )


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
