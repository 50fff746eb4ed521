"""The benchmark job's entry points: `run_benchmark`, the DAG task's `run_from_params`, `lockgate run benchmark`."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from lockgate.benchmark.environment import GpuRequiredError
from lockgate.errors import ConfigError, InvalidModelError, UnknownModelVersionError
from lockgate.evidence import EvidencePayload, EvidenceSummary, evidence_payload
from lockgate.jobs.benchmark.measure import Measurement, free_device, measure_and_publish
from lockgate.jobs.benchmark.outputs import make_summary, publish
from lockgate.jobs.context import RunContext
from lockgate.jobs.publish import run_files
from lockgate.policy.schema import BenchmarkConfig, Policy, load_policy
from lockgate.settings import get_settings

log = logging.getLogger(__name__)

DAG_ID = "lockgate_benchmark"


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


def run_benchmark(
    ctx: RunContext,
    versions: Sequence[str] | None = None,
    batch_sizes: Sequence[int] | None = None,
    max_new_tokens: int | None = None,
    repetitions: int | None = None,
    serving_configs: Sequence[str] | None = None,
    policy: Policy | None = None,
) -> EvidenceSummary:
    """Benchmark a model's challenger against its champion and publish the evidence.

    Args:
        ctx: the run: the registered model, its run key (default `manual__<time>`), DAG and run ids
            (recorded in the summary, the MLflow runs and the index) and data interval (the window
            whose logged prompt lengths shape the load).
        versions: None for the `challenger` and `champion` aliases; else one or two versions or
            aliases, challenger first (one: the challenger alone, no ratios).
        batch_sizes: override of `benchmark.batch_sizes`.
        max_new_tokens: override of `benchmark.max_new_tokens`.
        repetitions: override of `benchmark.repetitions`.
        serving_configs: override of `benchmark.serving_configs`.
        policy: the policy (default: `load_policy()`).

    Returns:
        The evidence summary that was written (status ok, invalid or error).
    """
    from lockgate.progress import JobSteps
    from lockgate.registry.adapter import ModelRegistry
    from lockgate.registry.versions import resolve_versions

    started = time.perf_counter()
    settings = get_settings()
    policy = policy or load_policy()
    run_key = ctx.safe_key(default_run_key())
    created_at = datetime.now(UTC)
    files = run_files("benchmark", ctx.model, run_key, settings.reports_dir)
    details: dict[str, Any] = {
        "run_key": run_key,
        "confidence": policy.statistics.confidence,
        "bootstrap_resamples": policy.statistics.bootstrap_resamples,
        "policy_hash": policy.policy_hash,
    }
    try:
        cfg = effective_config(policy.benchmark, batch_sizes, max_new_tokens, repetitions, serving_configs)
    except ConfigError as exc:
        summary = make_summary(ctx, run_key, status="error", message=str(exc), challenger=None, champion=None,
                               details={**details, "error_code": exc.code}, created_at=created_at)  # fmt: skip
        return publish(summary, None, files, [], None, settings.reports_dir)
    steps = JobSteps("benchmark", ctx.model, 8 + cfg.repetitions)
    details["config"] = cfg.model_dump(mode="json")
    run = Measurement(ctx, files, cfg, policy, details, steps, started, created_at, ModelRegistry(), [], [])
    try:
        run.resolved = resolve_versions(ctx.model, versions, run.registry)
        steps("versions: " + ", ".join(r.label() for r in run.resolved))
        return measure_and_publish(run)
    except (UnknownModelVersionError, InvalidModelError, ConfigError, GpuRequiredError) as exc:
        log.error("benchmark %s: %s", ctx.model, exc)
        summary = make_summary(
            ctx,
            run_key,
            status="error",
            message=str(exc),
            challenger=next((r.version for r in run.resolved if r.role == "challenger"), None),
            champion=next((r.version for r in run.resolved if r.role == "champion"), None),
            details={**details, "error_code": exc.code},
            created_at=created_at,
        )
        return publish(summary, None, files, run.resolved, run.registry, settings.reports_dir)
    finally:
        run.models.clear()  # free both models before the task returns
        free_device()


def run_from_params(params: dict[str, Any], ctx: RunContext) -> EvidencePayload:
    """The DAG task: Params and the run in, the Asset event's payload out (JSON-safe)."""
    if not ctx.model.strip():
        raise ConfigError("a model name is required", key="model")
    summary = run_benchmark(
        ctx,
        versions=params.get("versions") or None,
        batch_sizes=params.get("batch_sizes") or None,
        max_new_tokens=params.get("max_new_tokens"),
        repetitions=params.get("repetitions"),
        serving_configs=params.get("serving_configs") or None,
    )
    return evidence_payload(summary)


def cmd_run(args: argparse.Namespace) -> int:
    """`lockgate run benchmark --model M`: challenger against champion now, on the policy's settings."""
    summary = run_benchmark(RunContext.for_cli(args.model))
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
