"""The live job's entry points: `run_live`, the DAG task's `run_from_params`, `lockgate run live`."""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime
from typing import Any

from lockgate.drift.windows import resolve_current
from lockgate.errors import ConfigError
from lockgate.evidence import EvidencePayload, EvidenceSummary, MetricEvidence, evidence_payload, write_summary
from lockgate.jobs.context import RunContext
from lockgate.jobs.live.estimates import build_metrics, comparison_details, evaluate, requests_needed_by_gate
from lockgate.jobs.live.inputs import LiveInputs, read_inputs
from lockgate.jobs.publish import RunFiles, publish_evidence, run_files, write_report
from lockgate.live.compare import GroupComparison
from lockgate.policy.schema import Policy, load_policy
from lockgate.registry.versions import RegistryContext
from lockgate.reports.index import ReportEntry
from lockgate.settings import get_settings

log = logging.getLogger(__name__)

DAG_ID = "lockgate_live"


def run_live(ctx: RunContext, *, policy: Policy | None = None, embed_relevance: bool = True) -> EvidenceSummary:
    """Run the production evidence job for one watched model and publish its summary (see the package doc).

    `ctx.data_interval` (else `ctx.now`, else the clock) ends the current window; `ctx.now` also decides
    which hours of the rollups have settled.
    """
    from lockgate.progress import JobSteps
    from lockgate.registry.versions import registry_context

    started = time.perf_counter()
    policy = policy or load_policy()
    watched = policy.model(ctx.model)
    registry = registry_context(ctx.model)
    current = resolve_current(watched.windows.current, ctx.data_interval, ctx.now or datetime.now(UTC))
    run_key = ctx.key(f"manual__{current.window.start:%Y%m%dT%H%M%S}__{current.window.end:%Y%m%dT%H%M%S}")
    steps = JobSteps("live", ctx.model, 4)
    steps(
        f"run {run_key}: window {current.window}, champion {registry.champion_version}, "
        f"challenger {registry.challenger_version or '-'}"
    )
    inputs = read_inputs(
        ctx.model,
        registry.champion_version,
        registry.challenger_version,
        registry.champion_promoted_tag,
        current,
        policy,
        embed_relevance=embed_relevance,
        now=ctx.now,
    )
    read = [g for g in (inputs.champion, inputs.challenger, inputs.baseline_group) if g is not None]
    steps("read: " + ", ".join(f"{g.label} {g.requests} requests ({len(g.sample)} sampled)" for g in read))
    canary, baseline, problems = evaluate(inputs, policy, ctx.model)
    steps("compared: " + ("complete" if not problems else "; ".join(f"{k}: {v}" for k, v in problems.items())))
    metrics = build_metrics(canary, baseline, policy.statistics.confidence)
    canary_requests = inputs.challenger.requests if inputs.challenger is not None else 0
    needed = requests_needed_by_gate(policy, ctx.model, metrics, canary_requests, policy.live.min_requests)
    files = run_files("live", ctx.model, run_key, get_settings().reports_dir)
    details = _details(inputs, (canary, baseline), problems, needed, policy.live.min_requests)
    details["timings_s"] = {"total": time.perf_counter() - started}
    evidence = _evidence(ctx, run_key, registry, inputs, metrics, problems, details, files)
    summary_path = write_summary(evidence, files.summary)
    from lockgate.live.report import render_live_page

    write_report(files.report, render_live_page(evidence, run_key=run_key))
    entry = _report_entry(ctx, run_key, registry, evidence, bool(problems), canary_requests, files)
    publish_evidence(evidence, summary_path, reports_dir=get_settings().reports_dir, report=entry, run_key=run_key)
    steps(f"done in {time.perf_counter() - started:.1f} s: {evidence.status}; report {files.report}")
    return evidence


def _details(
    inputs: LiveInputs,
    comparisons: tuple[GroupComparison | None, GroupComparison | None],
    problems: dict[str, Any],
    needed: list[dict[str, Any]],
    min_requests: int,
) -> dict[str, Any]:
    """The summary's `details`: windows, counts, percentiles and both comparisons, for the page and scripts."""
    groups = [g for g in (inputs.champion, inputs.challenger, inputs.baseline_group) if g is not None]
    canary, baseline = comparisons
    return {
        "quantile_source": inputs.quantile_source,
        "aggregation": inputs.aggregation,
        "current_window": {
            "start": inputs.current.start.isoformat(),
            "end": inputs.current.end.isoformat(),
            "mode": inputs.current_mode,
        },
        "baseline_window": {
            "start": inputs.baseline.start.isoformat() if inputs.baseline else None,
            "end": inputs.baseline.end.isoformat() if inputs.baseline else None,
            "mode": inputs.baseline_mode,
        },
        "requests": {g.label: g.requests for g in groups},
        "window_rows_by_version": inputs.window_rows,
        "window_quantiles": inputs.window_quantiles,
        "baseline_quantiles": inputs.baseline_quantiles,
        "kv_cache_source": inputs.cache_source,
        "problems": problems,
        "requests_needed": needed,
        "canary": comparison_details(canary),
        "champion_vs_baseline": comparison_details(baseline),
        "min_requests": min_requests,
        "relevance_rows": {g.label: g.relevance_rows for g in groups},
    }


def _evidence(
    ctx: RunContext,
    run_key: str,
    registry: RegistryContext,
    inputs: LiveInputs,
    metrics: dict[str, MetricEvidence],
    problems: dict[str, Any],
    details: dict[str, Any],
    files: RunFiles,
) -> EvidenceSummary:
    status = "ok" if "champion" not in problems else "insufficient_data"
    groups = [g for g in (inputs.champion, inputs.challenger, inputs.baseline_group) if g is not None]
    return EvidenceSummary(
        kind="live",
        model_name=ctx.model,
        challenger_version=registry.challenger_version if inputs.challenger is not None else None,
        champion_version=registry.champion_version,
        created_at=datetime.now(UTC),
        window_start=inputs.current.start,
        window_end=inputs.current.end,
        status=status,
        valid=status == "ok",
        message="; ".join(f"{k}: {v}" for k, v in problems.items()) or None,
        metrics=metrics,
        sample_sizes={g.label: len(g.sample) for g in groups},
        quarantined=inputs.quarantined,
        report_path=str(files.report),
        dag_id=ctx.dag_id,
        run_id=ctx.run_id,
        run_key=run_key,
        details=details,
    )


def _report_entry(
    ctx: RunContext,
    run_key: str,
    registry: RegistryContext,
    evidence: EvidenceSummary,
    problems: bool,
    canary_requests: int,
    files: RunFiles,
) -> ReportEntry:
    return ReportEntry(
        kind="live",
        model_name=ctx.model,
        run_key=run_key,
        status=evidence.status if evidence.status != "ok" else ("warn" if problems else "ok"),
        title=f"Production evidence {ctx.model}: champion {registry.champion_version}, "
        f"challenger {registry.challenger_version or '-'} ({canary_requests} canary requests)",
        path=str(files.report),
        model_version=registry.challenger_version,
        champion_version=registry.champion_version,
        dag_id=ctx.dag_id,
        run_id=ctx.run_id,
        created_at=evidence.created_at,
    )


def cmd_run(args: argparse.Namespace) -> int:
    """`lockgate run live --model M`: one run on the policy's current window (ending now)."""
    evidence = run_live(RunContext.for_cli(args.model))
    problems = evidence.details.get("problems") or {}
    print(f"live {args.model}: {evidence.status}" + (f" ({'; '.join(problems.values())})" if problems else ""))
    for name in ("ttft_ms_p90", "tpot_ms_p50", "error_rate", "refusal_rate", "relevance"):
        m = evidence.metrics.get(name)
        if m is None:
            continue
        for label in ("ratio", "difference", "baseline_ratio", "baseline_difference"):
            e = getattr(m, label)
            if e is not None:
                print(f"  {name:22} {label:20} {e.value:.4g} [{e.ci_low}, {e.ci_high}]")
    print(f"  report {evidence.report_path}")
    return 0


def run_from_params(params: dict[str, Any], ctx: RunContext) -> EvidencePayload:
    """The DAG task: the run in (its window: the data interval, else the run's own time), the payload out."""
    if not ctx.model.strip():
        raise ConfigError("a model name is required", key="model")
    return evidence_payload(run_live(ctx.interval_or_run_after()))
