"""Every query of the live job: the bounded samples, the exact counts and percentiles (through the rollups)."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lockgate.drift.windows import ResolvedWindow, resolve_reference
from lockgate.live.compare import Group
from lockgate.live.stats import stratum_cutoffs
from lockgate.logs.aggregates import VersionCounts
from lockgate.logs.sampling import Window
from lockgate.policy.schema import ChampionBaselineWindow, Policy
from lockgate.settings import get_settings

log = logging.getLogger(__name__)


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


def relevance_texts(rows: list[dict[str, Any]], policy: Policy) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The rows with an answer, and their redacted prompts and answers: what relevance embeds."""
    from lockgate.logs.redaction import Redactor

    rows = [r for r in rows if r.get("response")]
    redact = Redactor(policy.redaction)
    return rows, [redact(r["prompt"]) or "" for r in rows], [redact(r["response"]) or "" for r in rows]


def _relevance(rows: list[dict[str, Any]], policy: Policy) -> None:
    """MiniLM cosine of each (redacted) prompt and its answer, set as the rows' `relevance`."""
    from lockgate.embeddings import cosine_similarities, embed_texts

    rows, prompts, answers = relevance_texts(rows, policy)
    if not rows:
        return
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


@dataclass(frozen=True)
class _Aggregates:
    """The exact counts (each stratification) and percentiles of both windows, and how they were computed."""

    counts: Any
    base_counts: Any
    quantiles: dict[str, dict[str, float]]
    base_quantiles: dict[str, dict[str, float]]
    quantile_source: str
    aggregation: str


def _aggregates(
    engine: Any,
    model_name: str,
    windows: tuple[Window, Window],
    versions: tuple[list[str], list[str]],
    cutoffs: tuple[list[float], list[float]],
    hours: Future[tuple[list[Any], list[Any], str]] | None,
    policy: Policy,
    cached: Any,
) -> _Aggregates:
    """From the rollups' hours when they were aggregated (`hours`), else by reading every row of both windows."""
    (current, baseline), (current_versions, base_versions), (canary_cut, base_cut) = windows, versions, cutoffs
    if hours is not None:
        from lockgate.live import rollups, sketch

        cur_hours, base_hours, aggregation = hours.result()
        return _Aggregates(
            rollups.window_counts(cur_hours, [canary_cut, base_cut]),
            rollups.window_counts(base_hours, [base_cut]),
            rollups.window_quantiles(cur_hours, current_versions),
            rollups.window_quantiles(base_hours, base_versions),
            f"from hourly rollups, within {sketch.RELATIVE_ACCURACY:.1%} of exact",
            aggregation,
        )
    from lockgate.logs.aggregates import window_counts, window_quantiles

    logs = policy.logs
    return _Aggregates(
        window_counts(engine, model_name, current, [canary_cut, base_cut], logs, cached),
        window_counts(engine, model_name, baseline, [base_cut], logs, cached),
        window_quantiles(engine, model_name, current, current_versions, logs),
        window_quantiles(engine, model_name, baseline, base_versions, logs),
        "exact",
        "every row of both windows aggregated by this run",
    )


def _lengths(rows: list[dict[str, Any]]) -> list[float]:
    return [float(r["prompt_tokens"] or 0) for r in rows]


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
    from lockgate.logs.aggregates import attach_texts, physical_columns, resolve_cached_tokens, sample_versions
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
            champ_rows = current_samples.get(champion or "", [])
            chall_rows = current_samples.get(challenger or "", []) if has_canary else []
            base_rows = base_samples.get(champion or "", [])
            canary_cut = stratum_cutoffs(_lengths(champ_rows) + _lengths(chall_rows), cfg.strata) if has_canary else []
            base_cut = stratum_cutoffs(_lengths(champ_rows) + _lengths(base_rows), cfg.strata)
            agg = _aggregates(
                engine,
                model_name,
                (current.window, baseline.window),
                (versions, [champion] if champion else []),
                (canary_cut, base_cut),
                hours,
                policy,
                cached,
            )
        if embed_relevance and cfg.relevance_sample_size > 0:
            for rows in (champ_rows, chall_rows, base_rows):
                _relevance(attach_texts(engine, rows, cfg.relevance_sample_size, logs), policy)
        return _live_inputs(
            current,
            baseline,
            (champion, challenger if has_canary else None),
            (champ_rows, chall_rows, base_rows),
            (canary_cut, base_cut),
            agg,
            cached.source,
        )
    finally:
        engine.dispose()


def _live_inputs(
    current: ResolvedWindow,
    baseline: ResolvedWindow,
    versions: tuple[str | None, str | None],
    rows: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]],
    cutoffs: tuple[list[float], list[float]],
    agg: _Aggregates,
    cache_source: str | None,
) -> LiveInputs:
    """The groups each comparison reads, from the samples and the exact counts."""
    (champion, challenger), (champ_rows, chall_rows, base_rows) = versions, rows

    def group(label: str, version: str, vc: dict[str, VersionCounts], sample: list[dict[str, Any]]) -> Group:
        return Group(label, version, vc.get(version, VersionCounts(version)), sample)

    champ = chall = base = None
    champ_counts_b: VersionCounts | None = None
    if champion is not None:
        champ = group("champion", champion, agg.counts.by_cutoffs[0], champ_rows)
        champ_counts_b = agg.counts.by_cutoffs[1].get(champion, VersionCounts(champion))
        base = group("baseline", champion, agg.base_counts.by_cutoffs[0], base_rows)
        if challenger is not None:
            chall = group("challenger", challenger, agg.counts.by_cutoffs[0], chall_rows)
    return LiveInputs(
        current=current.window,
        current_mode=current.mode,
        baseline=baseline.window,
        baseline_mode=baseline.mode,
        champion=champ,
        challenger=chall,
        baseline_group=base,
        canary_cutoffs=cutoffs[0],
        baseline_cutoffs=cutoffs[1],
        window_rows=agg.counts.rows_by_version,
        quarantined=agg.counts.quarantined,
        window_quantiles=agg.quantiles,
        baseline_quantiles=agg.base_quantiles,
        quantile_source=agg.quantile_source,
        aggregation=agg.aggregation,
        cache_source=cache_source,
        champion_counts_baseline_strata=champ_counts_b,
    )
