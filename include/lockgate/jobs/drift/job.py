"""The drift job's entry points (`run_drift`, the DAG task's `run_from_params`, `lockgate run drift`) and steps."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lockgate.drift.summary import DriftSummary, WindowSample, to_evidence
from lockgate.drift.windows import ResolvedWindow, resolve_current, resolve_reference
from lockgate.errors import ConfigError, InsufficientDataError
from lockgate.evidence import EvidencePayload, EvidenceSummary, evidence_payload
from lockgate.jobs.context import RunContext
from lockgate.jobs.drift.compare import EVIDENTLY_FILE, compare_frames, insufficient, window_sample
from lockgate.jobs.drift.outputs import log_to_mlflow, mlflow_run_for, report_entry, write_outputs
from lockgate.jobs.publish import RunFiles, publish_evidence, run_files
from lockgate.logs.sampling import LogSample, Window
from lockgate.policy.schema import ChampionBaselineWindow, Policy, WatchedModel, load_policy
from lockgate.registry.versions import RegistryContext, registry_context
from lockgate.settings import Settings, get_settings

if TYPE_CHECKING:
    from lockgate.drift.analysis import EmbedFn

log = logging.getLogger(__name__)

DAG_ID = "lockgate_drift"


def default_run_key(current: Window) -> str:
    """A run key for runs outside Airflow: the current window, so rerunning the same window replaces it."""
    return f"manual__{current.start:%Y%m%dT%H%M%S}__{current.end:%Y%m%dT%H%M%S}"


@dataclass(frozen=True)
class _Windows:
    current: ResolvedWindow
    reference: ResolvedWindow | None
    reference_problem: str | None
    reference_mode: str


def _resolve_windows(
    ctx: RunContext,
    watched: WatchedModel,
    registry: RegistryContext,
    reference_window: Window | None,
    current_window: Window | None,
) -> _Windows:
    if current_window is not None:
        current = ResolvedWindow(current_window, "fixed (run parameter)")
    else:
        current = resolve_current(watched.windows.current, ctx.data_interval, ctx.now or datetime.now(UTC))
    if reference_window is not None:
        reference = ResolvedWindow(reference_window, "fixed (run parameter)")
        return _Windows(current, reference, None, reference.mode)
    reference_cfg = watched.windows.reference
    anchor = (
        registry.champion_promoted_tag
        if isinstance(reference_cfg, ChampionBaselineWindow)
        else registry.champion_promoted_at
    )
    try:
        resolved = resolve_reference(reference_cfg, current.window, anchor)
    except InsufficientDataError as exc:
        return _Windows(current, None, str(exc), reference_cfg.mode)
    return _Windows(current, resolved, None, resolved.mode)


def _sample_windows(
    model_name: str, windows: _Windows, n: int, policy: Policy, settings: Settings
) -> tuple[LogSample | None, LogSample]:
    """Both windows' deterministic, redacted samples (no reference sample when it did not resolve)."""
    from lockgate.logs.db import make_engine
    from lockgate.logs.redaction import Redactor
    from lockgate.logs.sampling import sample_inference_logs
    from lockgate.settings import resolve_logs_db_url

    engine = make_engine(resolve_logs_db_url(settings))
    seed = policy.statistics.seed
    try:
        reference = None
        if windows.reference is not None:
            reference = sample_inference_logs(
                engine, model_name, windows.reference.window, n, seed, None, policy.logs, Redactor(policy.redaction)
            )
        current = sample_inference_logs(
            engine, model_name, windows.current.window, n, seed, None, policy.logs, Redactor(policy.redaction)
        )
    finally:
        engine.dispose()
    return reference, current


def _compare(
    model_name: str,
    policy: Policy,
    samples: tuple[LogSample | None, LogSample],
    sides: tuple[WindowSample, WindowSample],
    windows: _Windows,
    files: RunFiles,
    embed: EmbedFn | None,
) -> DriftSummary:
    cfg = policy.drift
    (ref_sample, cur_sample), (reference_ws, current_ws) = samples, sides
    config_dump = cfg.model_dump(mode="json")
    if windows.reference_problem is not None or ref_sample is None:
        problem = windows.reference_problem or "the reference window could not be sampled"
        return insufficient(model_name, problem, cfg.fdr_alpha, reference_ws, current_ws, config_dump)
    if reference_ws.usable < cfg.min_rows or current_ws.usable < cfg.min_rows:
        problem = (
            f"too few usable rows: reference {reference_ws.usable}, current {current_ws.usable} "
            f"(drift.min_rows is {cfg.min_rows})"
        )
        return insufficient(model_name, problem, cfg.fdr_alpha, reference_ws, current_ws, config_dump)
    return compare_frames(
        model_name,
        ref_sample.to_frame(),
        cur_sample.to_frame(),
        policy,
        reference_ws,
        current_ws,
        files.dir,
        embed=embed,
    )


def run_drift(
    ctx: RunContext,
    *,
    reference_window: Window | None = None,
    current_window: Window | None = None,
    sample_size: int | None = None,
    policy: Policy | None = None,
    embed: EmbedFn | None = None,
) -> EvidenceSummary:
    """Run the drift job for one model and write its evidence. See the package docstring.

    Args:
        ctx: the run: the model (watched by the policy), its run key (default: derived from the current
            window), DAG and run ids, data interval (the current window unless overridden), `now` (the
            end of the current window when there is neither an override nor a data interval).
        reference_window: overrides the policy's reference window.
        current_window: overrides the policy's current window.
        sample_size: rows per window; default the policy's `drift.sample_size`.
        policy: default: `load_policy()`.
        embed: texts -> embeddings; default: the packaged MiniLM.
    """
    from lockgate.progress import JobSteps

    started = time.perf_counter()
    policy = policy or load_policy()
    watched = policy.model(ctx.model)
    n = sample_size or policy.drift.sample_size
    if n <= 0:
        raise ConfigError(f"sample size must be positive, got {n}", key="sample_size")
    settings = get_settings()
    t0 = time.perf_counter()
    registry = registry_context(ctx.model)
    timings: dict[str, float] = {"registry": time.perf_counter() - t0}
    windows = _resolve_windows(ctx, watched, registry, reference_window, current_window)
    run_key = ctx.key(default_run_key(windows.current.window))
    steps = JobSteps("drift", ctx.model, 5)
    reference_text = windows.reference.window if windows.reference else "unresolved"
    steps(
        f"run {run_key}: reference {reference_text} ({windows.reference_mode}), current {windows.current.window} "
        f"({windows.current.mode}), {n} rows per window"
    )
    t0 = time.perf_counter()
    ref_sample, cur_sample = _sample_windows(ctx.model, windows, n, policy, settings)
    timings["sampling"] = time.perf_counter() - t0
    reference_ws = window_sample("reference", windows.reference, watched.windows.reference.mode, ref_sample)
    current_ws = window_sample("current", windows.current, windows.current.mode, cur_sample)
    steps(
        f"sampled: reference {reference_ws.usable} usable of {reference_ws.window_rows} in window "
        f"({sum(reference_ws.quarantined.values())} quarantined), current {current_ws.usable} usable of "
        f"{current_ws.window_rows} ({sum(current_ws.quarantined.values())} quarantined)"
    )
    files = run_files("drift", ctx.model, run_key, settings.reports_dir)
    drift = _compare(ctx.model, policy, (ref_sample, cur_sample), (reference_ws, current_ws), windows, files, embed)
    steps(
        f"compared: {drift.status}"
        + (f", {len(drift.drifted_columns)} of {drift.n_tested} columns drift" if drift.status == "ok" else "")
    )
    if drift.evidently_report is None and (files / EVIDENTLY_FILE).exists():
        (files / EVIDENTLY_FILE).unlink()  # a previous run of this key must not show a report this run did not make
    drift = drift.model_copy(update={"timings_s": {**timings, **drift.timings_s}})
    evidence = _publish(ctx, run_key, drift, files, registry, settings, steps)
    steps(
        f"done in {time.perf_counter() - started:.1f} s: {drift.status}, share {drift.drift_share}, "
        f"drifted {drift.drifted_columns}; report {files.report}"
    )
    return evidence


def _publish(
    ctx: RunContext,
    run_key: str,
    drift: DriftSummary,
    files: RunFiles,
    registry: RegistryContext,
    settings: Settings,
    steps: Callable[[str], None],
) -> EvidenceSummary:
    """The MLflow run, the files, then the one publish step."""
    t0 = time.perf_counter()
    mlflow_run = mlflow_run_for(ctx.model, run_key)
    drift = drift.model_copy(update={"timings_s": {"mlflow_run": time.perf_counter() - t0, **drift.timings_s}})
    created_at = datetime.now(UTC)
    evidence = to_evidence(
        drift,
        created_at=created_at,
        challenger_version=registry.challenger_version,
        champion_version=registry.champion_version,
        report_path=str(files.report),
        dag_id=ctx.dag_id,
        run_id=ctx.run_id,
        mlflow_run_ids={"drift": mlflow_run.run_id},
    ).model_copy(update={"run_key": run_key})
    summary_path = write_outputs(files, drift, evidence, run_key, registry)
    log_to_mlflow(mlflow_run, files.dir, drift, evidence.content_hash)
    steps(f"report and summary written, MLflow run {mlflow_run.run_id} logged")
    entry = report_entry(ctx, run_key, drift, files, registry, created_at)
    publish_evidence(evidence, summary_path, reports_dir=settings.reports_dir, report=entry, run_key=run_key)
    return evidence


def drift_summary_of(evidence: EvidenceSummary) -> DriftSummary:
    """The `DriftSummary` carried in an evidence summary's details."""
    return DriftSummary.model_validate(evidence.details["drift"])


def cmd_run(args: argparse.Namespace) -> int:
    """`lockgate run drift --model M`: one run on the policy's windows (current window ends now)."""
    evidence = run_drift(RunContext.for_cli(args.model))
    drift = drift_summary_of(evidence)
    if drift.status != "ok":
        print(f"drift {args.model}: insufficient data ({drift.message}); report {evidence.report_path}")
        return 0
    print(
        f"drift {args.model}: share {drift.drift_share:.3f} ({len(drift.drifted_columns)} of {drift.n_tested} "
        f"tested columns: {', '.join(drift.drifted_columns) or 'none'}); report {evidence.report_path}"
    )
    return 0


def _param_time(params: dict[str, Any], key: str) -> datetime | None:
    value = params.get(key)
    if value in (None, ""):
        return None
    try:
        t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"not an ISO date-time: {value!r}", key=key) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _param_window(params: dict[str, Any], prefix: str) -> Window | None:
    start, end = _param_time(params, f"{prefix}_start"), _param_time(params, f"{prefix}_end")
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise ConfigError(f"give both {prefix}_start and {prefix}_end, or neither", key=f"{prefix}_start")
    if end <= start:
        raise ConfigError(f"{prefix}_end must be after {prefix}_start", key=f"{prefix}_end")
    return Window(start, end)


def run_from_params(params: dict[str, Any], ctx: RunContext) -> EvidencePayload:
    """The DAG task: Params and the run in, the Asset event's payload out (JSON-able).

    Params: optional `reference_start`/`reference_end`, `current_start`/`current_end`
    (ISO date-times; both or neither), optional `sample_size`.
    """
    if not ctx.model.strip():
        raise ConfigError("a model name is required", key="model")
    size = params.get("sample_size")
    evidence = run_drift(
        ctx,
        reference_window=_param_window(params, "reference"),
        current_window=_param_window(params, "current"),
        sample_size=int(size) if size not in (None, "") else None,
    )
    return evidence_payload(evidence)
