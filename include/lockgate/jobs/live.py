"""The production evidence job (`live`): what each version's own traffic shows in the current window.

`run_live()` is the whole job (the DAG's task, `lockgate run live`, the demo):

1. resolve the versions (aliases), the current window (the run's data interval) and the
   champion's baseline window (the days before its `lockgate.promoted_at`, trailing without one);
2. in SQL, over every row of both windows: quarantined rows by reason, then per version and
   prompt-length stratum the exact request, error, timeout, empty-response, feedback and
   cached-token counts, and (PostgreSQL) the latency percentiles; on PostgreSQL through the
   per-hour rollups (`lockgate.live.rollups`: each hour aggregated once, percentiles within
   0.5%), elsewhere by reading both windows;
3. a bounded, deterministic sample per version for the intervals (and MiniLM relevance of
   part of the answers);
4. compare the challenger with the champion in the same hours, and the champion now with its
   baseline (`lockgate.live.compare`), raw and stratified by prompt length;
5. write the page, `summary.json` (the gates read the stratified estimates) and the model's
   `latest.json` (never replacing evidence of a later window), and index the report.

A version below `live.min_requests` has no estimates: its gates are missing, never passed.
"""

from __future__ import annotations

import argparse
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.drift.windows import ResolvedWindow, resolve_current, resolve_reference
from lockgate.errors import ConfigError
from lockgate.evidence import (
    Estimate,
    EvidenceSummary,
    MetricEvidence,
    write_summary,
)
from lockgate.live.compare import LIVE_METRICS, Group, GroupComparison, Side, compare_groups
from lockgate.live.stats import Interval, requests_needed, stratum_cutoffs
from lockgate.logs.aggregates import VersionCounts
from lockgate.logs.sampling import Window
from lockgate.policy.schema import ChampionBaselineWindow, Policy, load_policy
from lockgate.reports.html import report_dir
from lockgate.settings import get_settings

log = logging.getLogger(__name__)

DAG_ID = "lockgate_live"
REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"


@dataclass
class LiveInputs:
    """Everything read from the log store for one run (the job's I/O, kept apart from the statistics)."""

    current: Window
    current_mode: str
    baseline: Window | None
    baseline_mode: str
    champion: Group | None
    challenger: Group | None
    baseline_group: Group | None
    canary_cutoffs: list[float]
    baseline_cutoffs: list[float]
    window_rows: dict[str, int]
    quarantined: dict[str, int]
    window_quantiles: dict[str, dict[str, float]]
    baseline_quantiles: dict[str, dict[str, float]]
    cache_source: str | None
    champion_counts_baseline_strata: VersionCounts | None = None  # the champion now, cut at the baseline's strata
    quantile_source: str = "exact"  # how the window percentiles were computed (shown on the page)
    aggregation: str = ""  # which hours this run aggregated and which came from the rollups


def _estimate(iv: Interval | None, confidence: float) -> Estimate | None:
    if iv is None or not np.isfinite(iv.value):
        return None
    ok = np.isfinite(iv.low) and np.isfinite(iv.high)
    return Estimate(
        value=float(iv.value),
        ci_low=float(iv.low) if ok else None,
        ci_high=float(iv.high) if ok else None,
        confidence=confidence if ok else None,
        n=iv.n,
    )


def build_metrics(
    canary: GroupComparison | None, baseline: GroupComparison | None, confidence: float
) -> dict[str, MetricEvidence]:
    """Gate-ready metrics from the stratified estimates (pure)."""
    out: dict[str, MetricEvidence] = {}
    for m in LIVE_METRICS:
        fields: dict[str, Any] = {"unit": m.unit, "description": m.description}
        if canary is not None:
            side: Side = canary.metrics[m.name].stratified
            fields["challenger"] = _estimate(side.a, confidence)
            fields["champion"] = _estimate(side.b, confidence)
            fields[m.comparison] = _estimate(side.compared, confidence)
        if baseline is not None:
            bside = baseline.metrics[m.name].stratified
            fields.setdefault("champion", _estimate(bside.a, confidence))
            if fields["champion"] is None:
                fields["champion"] = _estimate(bside.a, confidence)
            fields["baseline"] = _estimate(bside.b, confidence)
            fields[f"baseline_{m.comparison}"] = _estimate(bside.compared, confidence)
        if any(v is not None for k, v in fields.items() if k not in ("unit", "description")):
            out[m.name] = MetricEvidence(**fields)
    return out


def requests_needed_by_gate(
    policy: Policy, model_name: str, metrics: dict[str, MetricEvidence], canary_requests: int, min_requests: int
) -> list[dict[str, Any]]:
    """For each live gate comparing challenger and champion: how many canary requests resolve its threshold."""
    from lockgate.policy.gates import estimate_name, limit_of

    rows = []
    for gate in policy.model(model_name).gates:
        if gate.kind != "live" or gate.comparison == "absolute" or gate.subject != "challenger":
            continue
        metric = metrics.get(gate.metric_name)
        est = getattr(metric, estimate_name(gate)) if metric is not None else None
        limit = limit_of(gate)
        needed: int | None
        if est is None or est.ci_low is None or est.ci_high is None:
            needed = None
            note = (
                f"below live.min_requests ({min_requests}): at least that many"
                if canary_requests < min_requests
                else "no estimate"
            )
        else:
            needed = requests_needed(est.value, est.ci_low, est.ci_high, canary_requests, limit, gate.comparison)
            note = "resolved now" if needed is not None and needed <= canary_requests else "to resolve the threshold"
        rows.append(
            {
                "gate": gate.name,
                "metric": gate.metric,
                "limit": limit,
                "canary_requests": canary_requests,
                "needed": needed,
                "note": note,
            }
        )
    return rows


def _relevance(rows: list[dict[str, Any]], policy: Policy) -> None:
    """MiniLM cosine of each (redacted) prompt and its answer, set as the rows' `relevance`."""
    from lockgate.embeddings import cosine_similarities, embed_texts
    from lockgate.logs.redaction import Redactor

    rows = [r for r in rows if r.get("response")]
    if not rows:
        return
    redact = Redactor(policy.redaction)
    prompts = [redact(r["prompt"]) or "" for r in rows]
    answers = [redact(r["response"]) or "" for r in rows]
    vectors = embed_texts(prompts + answers)
    sims = cosine_similarities(vectors[: len(rows)], vectors[len(rows) :])
    for r, sim in zip(rows, sims, strict=True):
        r["relevance"] = float(sim)
        # the texts were only needed for the embedding; nothing downstream keeps them
        del r["prompt"], r["response"]


def _aggregate_by_hour(
    engine: Any,
    model_name: str,
    current: Window,
    baseline: Window,
    policy: Policy,
    cached: Any,
    now: datetime | None,
) -> tuple[list[Any], list[Any], str]:
    """Both windows' hours through the rollups (`lockgate.live.rollups`), and what was read how."""
    from lockgate.live import rollups
    from lockgate.logs.db import make_engine
    from lockgate.settings import resolve_state_db_url

    state = make_engine(resolve_state_db_url(get_settings()))
    at = now or datetime.now(UTC)
    settle = policy.live.rollup_settle_hours
    try:
        cur, cur_use = rollups.aggregate_window(
            engine, state, model_name, current, policy.logs, cached, now=at, settle_hours=settle
        )
        base, base_use = rollups.aggregate_window(
            engine, state, model_name, baseline, policy.logs, cached, now=at, settle_hours=settle
        )
    finally:
        state.dispose()
    return cur, base, f"current window: {cur_use.describe()}; baseline window: {base_use.describe()}"


def read_inputs(
    model_name: str,
    champion: str | None,
    challenger: str | None,
    promoted_at: datetime | None,
    current: ResolvedWindow,
    policy: Policy,
    *,
    embed_relevance: bool = True,
    now: datetime | None = None,
) -> LiveInputs:
    """Every query of the job. Per window: the bounded samples of every version, then the exact counts
    (rows, quarantine, each stratification) and (PostgreSQL) the percentiles, from the per-hour rollups
    where the policy keeps them (`now`: the run's time, which decides the hours that have settled)."""
    from lockgate.logs.aggregates import (
        attach_texts,
        physical_columns,
        resolve_cached_tokens,
        sample_versions,
        window_counts,
        window_quantiles,
    )
    from lockgate.logs.db import make_engine
    from lockgate.settings import resolve_logs_db_url

    cfg, logs = policy.live, policy.logs
    seed = policy.statistics.seed
    engine = make_engine(resolve_logs_db_url(get_settings()))
    try:
        cached = resolve_cached_tokens(engine, logs, physical_columns(engine, logs))
        baseline = resolve_reference(ChampionBaselineWindow(days=cfg.baseline_days), current.window, promoted_at)
        has_canary = challenger is not None and challenger != champion
        versions = [v for v in (champion, challenger if has_canary else None) if v]
        use_rollups = cfg.rollups and engine.dialect.name == "postgresql"
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockgate-rollups") as pool:
            # The rollups need no sample: the database aggregates the new hours while this thread draws them.
            hours = (
                pool.submit(
                    _aggregate_by_hour, engine, model_name, current.window, baseline.window, policy, cached, now
                )
                if use_rollups
                else None
            )
            current_samples = sample_versions(
                engine, model_name, current.window, versions, cfg.sample_size, seed, logs, cached
            )
            base_samples = (
                sample_versions(engine, model_name, baseline.window, [champion], cfg.sample_size, seed, logs, cached)
                if champion
                else {}
            )

            def lengths(rows: list[dict[str, Any]]) -> list[float]:
                return [float(r["prompt_tokens"] or 0) for r in rows]

            champ_rows = current_samples.get(champion or "", [])
            chall_rows = current_samples.get(challenger or "", []) if has_canary else []
            base_rows = base_samples.get(champion or "", [])
            canary_cut = stratum_cutoffs(lengths(champ_rows) + lengths(chall_rows), cfg.strata) if has_canary else []
            base_cut = stratum_cutoffs(lengths(champ_rows) + lengths(base_rows), cfg.strata)
            if hours is not None:
                from lockgate.live import rollups, sketch

                cur_hours, base_hours, aggregation = hours.result()
                counts = rollups.window_counts(cur_hours, [canary_cut, base_cut])
                base_counts = rollups.window_counts(base_hours, [base_cut])
                quantiles = rollups.window_quantiles(cur_hours, versions)
                base_quantiles = rollups.window_quantiles(base_hours, [champion] if champion else [])
                quantile_source = f"from hourly rollups, within {sketch.RELATIVE_ACCURACY:.1%} of exact"
            else:
                counts = window_counts(engine, model_name, current.window, [canary_cut, base_cut], logs, cached)
                base_counts = window_counts(engine, model_name, baseline.window, [base_cut], logs, cached)
                quantiles = window_quantiles(engine, model_name, current.window, versions, logs)
                base_quantiles = window_quantiles(
                    engine, model_name, baseline.window, [champion] if champion else [], logs
                )
                quantile_source = "exact"
                aggregation = "every row of both windows aggregated by this run"
        if embed_relevance and cfg.relevance_sample_size > 0:
            for rows in (champ_rows, chall_rows, base_rows):
                _relevance(attach_texts(engine, rows, cfg.relevance_sample_size, logs), policy)

        def group(label: str, version: str, vc: dict[str, VersionCounts], rows: list[dict[str, Any]]) -> Group:
            return Group(label, version, vc.get(version, VersionCounts(version)), rows)

        champ = chall = base = None
        champ_counts_b: VersionCounts | None = None
        if champion is not None:
            champ = group("champion", champion, counts.by_cutoffs[0], champ_rows)
            champ_counts_b = counts.by_cutoffs[1].get(champion, VersionCounts(champion))
            base = group("baseline", champion, base_counts.by_cutoffs[0], base_rows)
            if has_canary and challenger is not None:
                chall = group("challenger", challenger, counts.by_cutoffs[0], chall_rows)
        return LiveInputs(
            current=current.window,
            current_mode=current.mode,
            baseline=baseline.window,
            baseline_mode=baseline.mode,
            champion=champ,
            challenger=chall,
            baseline_group=base,
            canary_cutoffs=canary_cut,
            baseline_cutoffs=base_cut,
            window_rows=counts.rows_by_version,
            quarantined=counts.quarantined,
            window_quantiles=quantiles,
            baseline_quantiles=base_quantiles,
            quantile_source=quantile_source,
            aggregation=aggregation,
            cache_source=cached.source,
            champion_counts_baseline_strata=champ_counts_b,
        )
    finally:
        engine.dispose()


def evaluate(
    inputs: LiveInputs, policy: Policy, model_name: str
) -> tuple[GroupComparison | None, GroupComparison | None, dict[str, Any]]:
    """Both comparisons from the inputs (pure), with the reasons any of them is missing."""
    cfg, stats = policy.live, policy.statistics
    problems: dict[str, Any] = {}
    canary = baseline = None
    champ, chall, base = inputs.champion, inputs.challenger, inputs.baseline_group
    if champ is None:
        problems["champion"] = "the model has no champion (alias 'champion')"
        return None, None, problems
    if champ.requests < cfg.min_requests:
        problems["champion"] = (
            f"{champ.requests} champion requests in the window, live.min_requests is {cfg.min_requests}"
        )
        return None, None, problems
    if chall is None:
        problems["challenger"] = "no challenger (alias 'challenger') other than the champion"
    elif chall.requests < cfg.min_requests:
        problems["challenger"] = (
            f"{chall.requests} canary requests in the window, live.min_requests is {cfg.min_requests}"
        )
    else:
        canary = compare_groups(
            chall,
            champ,
            inputs.canary_cutoffs,
            confidence=stats.confidence,
            resamples=cfg.bootstrap_resamples,
            seed=stats.seed,
        )
    if base is None or base.requests < cfg.min_requests:
        n = base.requests if base is not None else 0
        problems["baseline"] = f"{n} champion requests in its baseline window, live.min_requests is {cfg.min_requests}"
    else:
        counts = inputs.champion_counts_baseline_strata or champ.counts
        champ_b = Group(champ.label, champ.version, counts, champ.sample)
        baseline = compare_groups(
            champ_b,
            base,
            inputs.baseline_cutoffs,
            confidence=stats.confidence,
            resamples=cfg.bootstrap_resamples,
            seed=stats.seed + 1,
        )
    return canary, baseline, problems


def _interval_json(iv: Interval | None) -> dict[str, float | int] | None:
    if iv is None:
        return None
    return {"value": iv.value, "low": iv.low, "high": iv.high, "n": iv.n}


def comparison_details(cmp: GroupComparison | None) -> dict[str, Any] | None:
    """A comparison as JSON (raw and stratified), for the page and for scripts."""
    if cmp is None:
        return None
    return {
        "a": cmp.a_label,
        "b": cmp.b_label,
        "a_requests": cmp.a_requests,
        "b_requests": cmp.b_requests,
        "cutoffs": cmp.cutoffs,
        "weights": {str(k): v for k, v in cmp.weights.items()},
        "strata_counts": {g: {str(k): v for k, v in c.items()} for g, c in cmp.strata_counts.items()},
        "metrics": {
            name: {
                "comparison": m.metric.comparison,
                "unit": m.metric.unit,
                "raw": {k: _interval_json(getattr(m.raw, k)) for k in ("a", "b", "compared")},
                "stratified": {k: _interval_json(getattr(m.stratified, k)) for k in ("a", "b", "compared")},
            }
            for name, m in cmp.metrics.items()
        },
    }


def run_live(
    model_name: str,
    *,
    run_key: str | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    data_interval: tuple[datetime, datetime] | None = None,
    policy: Policy | None = None,
    now: datetime | None = None,
    embed_relevance: bool = True,
) -> EvidenceSummary:
    """Run the production evidence job for one watched model and publish its summary (see the module doc)."""
    from lockgate.jobs.publish import publish_evidence
    from lockgate.live.report import render_live_page
    from lockgate.registry.versions import registry_context
    from lockgate.reports.index import ReportEntry

    started = time.perf_counter()
    policy = policy or load_policy()
    watched = policy.model(model_name)
    settings = get_settings()
    registry = registry_context(model_name)
    current = resolve_current(watched.windows.current, data_interval, now or datetime.now(UTC))
    run_key = run_key or f"manual__{current.window.start:%Y%m%dT%H%M%S}__{current.window.end:%Y%m%dT%H%M%S}"
    from lockgate.progress import JobSteps

    steps = JobSteps("live", model_name, 4)
    steps(
        f"run {run_key}: window {current.window}, champion {registry.champion_version}, "
        f"challenger {registry.challenger_version or '-'}"
    )
    inputs = read_inputs(
        model_name,
        registry.champion_version,
        registry.challenger_version,
        registry.champion_promoted_tag,
        current,
        policy,
        embed_relevance=embed_relevance,
    )
    read = [g for g in (inputs.champion, inputs.challenger, inputs.baseline_group) if g is not None]
    steps("read: " + ", ".join(f"{g.label} {g.requests} requests ({len(g.sample)} sampled)" for g in read))
    canary, baseline, problems = evaluate(inputs, policy, model_name)
    steps("compared: " + ("complete" if not problems else "; ".join(f"{k}: {v}" for k, v in problems.items())))
    confidence = policy.statistics.confidence
    metrics = build_metrics(canary, baseline, confidence)
    canary_requests = inputs.challenger.requests if inputs.challenger is not None else 0
    needed = requests_needed_by_gate(policy, model_name, metrics, canary_requests, policy.live.min_requests)
    status = "ok" if "champion" not in problems else "insufficient_data"
    out_dir = report_dir("live", model_name, run_key, settings.reports_dir)
    report_path = out_dir / REPORT_FILE
    sample_sizes = {
        g.label: len(g.sample) for g in (inputs.champion, inputs.challenger, inputs.baseline_group) if g is not None
    }
    details: dict[str, Any] = {
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
        "requests": {
            g.label: g.requests for g in (inputs.champion, inputs.challenger, inputs.baseline_group) if g is not None
        },
        "window_rows_by_version": inputs.window_rows,
        "window_quantiles": inputs.window_quantiles,
        "baseline_quantiles": inputs.baseline_quantiles,
        "kv_cache_source": inputs.cache_source,
        "problems": problems,
        "requests_needed": needed,
        "canary": comparison_details(canary),
        "champion_vs_baseline": comparison_details(baseline),
        "min_requests": policy.live.min_requests,
        "relevance_rows": {
            g.label: g.relevance_rows
            for g in (inputs.champion, inputs.challenger, inputs.baseline_group)
            if g is not None
        },
        "timings_s": {"total": time.perf_counter() - started},
    }
    evidence = EvidenceSummary(
        kind="live",
        model_name=model_name,
        challenger_version=registry.challenger_version if inputs.challenger is not None else None,
        champion_version=registry.champion_version,
        created_at=datetime.now(UTC),
        window_start=inputs.current.start,
        window_end=inputs.current.end,
        status=status,
        valid=status == "ok",
        message="; ".join(f"{k}: {v}" for k, v in problems.items()) or None,
        metrics=metrics,
        sample_sizes=sample_sizes,
        quarantined=inputs.quarantined,
        report_path=str(report_path),
        dag_id=dag_id,
        run_id=run_id,
        details=details,
    )
    summary_path = write_summary(evidence, out_dir / SUMMARY_FILE)
    html_text = render_live_page(evidence, run_key=run_key)
    tmp = out_dir / (REPORT_FILE + ".tmp")
    tmp.write_text(html_text, encoding="utf-8")
    tmp.replace(report_path)
    entry = ReportEntry(
        kind="live",
        model_name=model_name,
        run_key=run_key,
        status=status if status != "ok" else ("warn" if problems else "ok"),
        title=f"Production evidence {model_name}: champion {registry.champion_version}, "
        f"challenger {registry.challenger_version or '-'} ({canary_requests} canary requests)",
        path=str(report_path),
        model_version=registry.challenger_version,
        champion_version=registry.champion_version,
        dag_id=dag_id,
        run_id=run_id,
        created_at=evidence.created_at,
    )
    publish_evidence(evidence, summary_path, reports_dir=settings.reports_dir, report=entry, run_key=run_key)
    steps(f"done in {time.perf_counter() - started:.1f} s: {status}; report {report_path}")
    return evidence


def asset_extra(evidence: EvidenceSummary) -> dict[str, Any]:
    """The Asset event's extra: what a consumer needs to find and trust the summary."""
    return {
        "kind": evidence.kind,
        "model": evidence.model_name,
        "status": evidence.status,
        "champion_version": evidence.champion_version,
        "challenger_version": evidence.challenger_version,
        "window_end": evidence.window_end.isoformat() if evidence.window_end else None,
        "evidence_hash": evidence.content_hash,
        "summary": str(Path(evidence.report_path or ".").with_name(SUMMARY_FILE)),
    }


def cmd_run(args: argparse.Namespace) -> int:
    """`lockgate run live --model M`: one run on the policy's current window (ending now)."""
    evidence = run_live(args.model)
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


def run_from_params(
    params: dict[str, Any],
    *,
    data_interval: tuple[datetime, datetime] | None,
    dag_id: str | None,
    run_id: str | None,
) -> dict[str, Any]:
    """The DAG task: Params in, the asset event's extra out (JSON-able)."""
    model = str(params.get("model") or "").strip()
    if not model:
        raise ConfigError("a model name is required", key="model")
    evidence = run_live(model, run_key=run_id, dag_id=dag_id, run_id=run_id, data_interval=data_interval)
    return asset_extra(evidence)
