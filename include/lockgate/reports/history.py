"""A model's evidence over time, kept in lockgate's state database for the history page.

Each evidence job (benchmark, drift, quality, live), where it records its report in the reports
index, also calls `record_evidence`: one row per run in `lockgate_evidence_runs` (when, status,
versions, the window, a drift run's drifted columns) and one row per published estimate in
`lockgate_evidence_metrics` (metric, role, version, value, interval, n). Rows are keyed by
(kind, model, run key) and a rerun of a run key replaces them, as it replaces the run's report.

Stored per metric are the per-version estimates (`challenger`, `champion`, `baseline` = the
champion in its own baseline window) and the model-wide one (`model`), not the ratios and
differences: a history plots each version's own values, and the comparisons are on the report
pages. A judge that failed calibration publishes no `judge_*` evidence; its scores are still
stored, marked `trusted = false`, so the page can show them as what they are.

`history_series` reads one model's runs, metrics, decisions and alias moves of a period back as
plain data (`HistoryData`) for `lockgate.reports.history_page`; nothing here scans the reports
folder.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence
from lockgate.logs.db import make_engine
from lockgate.registry import audit
from lockgate.settings import resolve_state_db_url

log = logging.getLogger(__name__)

PERIOD_DAYS: tuple[int, ...] = (7, 30, 90)
"""The periods the history page offers."""

ROLES: tuple[str, ...] = ("challenger", "champion", "baseline", "model")
"""The estimates of a `MetricEvidence` that are one version's (or the whole model's) own value."""

# Quality metrics that are about the judge, not about a version's answers.
_JUDGE_AGREEMENT = ("judge_spearman", "judge_kappa")

metadata = sa.MetaData()

runs_table = sa.Table(
    "lockgate_evidence_runs",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("run_key", sa.Text, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True)),
    sa.Column("window_end", sa.DateTime(timezone=True)),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("valid", sa.Boolean, nullable=False),
    sa.Column("challenger_version", sa.Text),
    sa.Column("champion_version", sa.Text),
    sa.Column("drifted_columns", sa.Text),  # JSON list; drift runs only
    sa.Column("message", sa.Text),
    sa.Index("ix_lockgate_evidence_runs_model_at", "model_name", "created_at"),
)

metrics_table = sa.Table(
    "lockgate_evidence_metrics",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("run_key", sa.Text, primary_key=True),
    sa.Column("metric", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, primary_key=True),
    sa.Column("version", sa.Text),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("ci_low", sa.Float),
    sa.Column("ci_high", sa.Float),
    sa.Column("confidence", sa.Float),
    sa.Column("n", sa.Integer),
    sa.Column("unit", sa.Text),
    sa.Column("trusted", sa.Boolean, nullable=False),
)


def state_engine(url: str | None = None) -> Engine:
    """An engine on lockgate's state database (`LOCKGATE_STATE_DB_URL`) with the tables the history uses."""
    engine = make_engine(url or resolve_state_db_url())
    _ensure_tables(engine)
    return engine


def _ensure_tables(engine: Engine) -> None:
    metadata.create_all(engine, checkfirst=True)
    audit.metadata.create_all(engine, checkfirst=True)


# --------------------------------------------------------------------------- writing


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def metric_rows(summary: EvidenceSummary, run_key: str) -> list[dict[str, Any]]:
    """The rows `record_evidence` stores for one summary (pure)."""
    versions = {
        "challenger": summary.challenger_version,
        "champion": summary.champion_version,
        "baseline": summary.champion_version,
        "model": None,
    }
    sources: list[tuple[Mapping[str, MetricEvidence], bool]] = [(_untrusted_judge_metrics(summary), False)]
    sources.append((summary.metrics, True))  # last, so published evidence wins over a same-named untrusted one
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for metrics, trusted in sources:
        for name, evidence in metrics.items():
            for role in ROLES:
                est: Estimate | None = getattr(evidence, role)
                value = _finite(est.value) if est is not None else None
                if est is None or value is None:
                    continue
                rows[(name, role)] = {
                    "kind": summary.kind,
                    "model_name": summary.model_name,
                    "run_key": run_key,
                    "metric": name,
                    "role": role,
                    "version": versions[role],
                    "value": value,
                    "ci_low": _finite(est.ci_low),
                    "ci_high": _finite(est.ci_high),
                    "confidence": est.confidence,
                    "n": est.n,
                    "unit": evidence.unit,
                    "trusted": trusted,
                }
    return list(rows.values())


def _untrusted_judge_metrics(summary: EvidenceSummary) -> dict[str, MetricEvidence]:
    """Judge scores a quality run left out of its evidence (failed or missing calibration)."""
    if summary.kind != "quality":
        return {}
    quality = summary.details.get("quality")
    raw = quality.get("untrusted_judge_metrics") if isinstance(quality, Mapping) else None
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for name, data in raw.items():
        try:
            out[str(name)] = MetricEvidence.model_validate(data)
        except ValueError as exc:  # a summary from an older version of the job: skip, say which
            log.warning("untrusted judge metric %s of %s not stored: %s", name, summary.model_name, exc)
    return out


def _drifted_columns(summary: EvidenceSummary) -> list[str] | None:
    if summary.kind != "drift":
        return None
    drift = summary.details.get("drift")
    columns = drift.get("drifted_columns") if isinstance(drift, Mapping) else None
    return [str(c) for c in columns] if isinstance(columns, list) else None


def run_row(summary: EvidenceSummary, run_key: str) -> dict[str, Any]:
    """The `lockgate_evidence_runs` row of one summary (pure)."""
    drifted = _drifted_columns(summary)
    return {
        "kind": summary.kind,
        "model_name": summary.model_name,
        "run_key": run_key,
        "created_at": summary.created_at,
        "window_start": summary.window_start,
        "window_end": summary.window_end,
        "status": summary.status,
        "valid": summary.valid,
        "challenger_version": summary.challenger_version,
        "champion_version": summary.champion_version,
        "drifted_columns": json.dumps(drifted) if drifted is not None else None,
        "message": summary.message,
    }


def _replace_run(conn: Connection, run: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> None:
    for table in (metrics_table, runs_table):
        conn.execute(
            table.delete().where(
                table.c.kind == run["kind"],
                table.c.model_name == run["model_name"],
                table.c.run_key == run["run_key"],
            )
        )
    conn.execute(runs_table.insert().values(**run))
    if rows:
        conn.execute(metrics_table.insert(), list(rows))


def record_evidence(summary: EvidenceSummary, run_key: str, engine: Engine | None = None) -> int:
    """Store a finished run's metrics for the history; a rerun of `run_key` replaces its rows.

    Returns the number of metric rows stored.
    """
    own = engine is None
    e = state_engine() if engine is None else engine
    try:
        if not own:
            _ensure_tables(e)
        run = run_row(summary, run_key)
        rows = metric_rows(summary, run_key)
        try:
            with e.begin() as conn:
                _replace_run(conn, run, rows)
        except sa.exc.IntegrityError:
            # Two writers of the same run key at once: both deleted nothing, one insert lost. Once more
            # replaces the winner's rows with this run's, as a rerun would.
            with e.begin() as conn:
                _replace_run(conn, run, rows)
    finally:
        if own:
            e.dispose()
    log.info("history: %d %s metrics of %s run %s stored", len(rows), summary.kind, summary.model_name, run_key)
    return len(rows)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ChartSpec:
    """One time series chart of the history page: a metric of a kind, the roles it plots."""

    key: str
    kind: str
    metric: str
    title: str
    unit: str
    roles: tuple[str, ...] = ("champion", "challenger")
    note: str = ""


CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("benchmark-ttft", "benchmark", "ttft_ms_p50", "Benchmark: time to first token, p50", "ms"),
    ChartSpec("benchmark-tpot", "benchmark", "tpot_ms_p50", "Benchmark: time per output token, p50", "ms"),
    ChartSpec("live-ttft", "live", "ttft_ms_p90", "Production: time to first token, p90", "ms"),
    ChartSpec("live-tpot", "live", "tpot_ms_p50", "Production: time per output token, p50", "ms"),
    ChartSpec(
        "drift-share",
        "drift",
        "drift_share",
        "Drift share",
        "share of tested columns",
        ("model",),
        "the share of tested columns that drift in the current window; the drifted columns are listed per run",
    ),
    ChartSpec("quality-relevance", "quality", "embedding_relevance", "Quality: relevance (MiniLM)", "cosine"),
    ChartSpec("live-relevance", "live", "relevance", "Production: relevance (MiniLM)", "cosine"),
    ChartSpec("live-error-rate", "live", "error_rate", "Production: error rate", "share of requests"),
    ChartSpec("live-refusal-rate", "live", "refusal_rate", "Production: refusal rate", "share of sampled answers"),
)
"""The fixed charts; the judge's rubrics (`judge_<rubric>`) add one chart each (`charts_for`)."""


@dataclass(frozen=True)
class Point:
    """One stored estimate placed at the time its run created the evidence."""

    at: datetime
    value: float
    run_key: str
    role: str
    version: str | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    n: int | None = None
    unit: str | None = None
    trusted: bool = True


@dataclass(frozen=True)
class EvidenceRun:
    kind: str
    run_key: str
    at: datetime
    status: str
    valid: bool
    challenger_version: str | None = None
    champion_version: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    drifted_columns: tuple[str, ...] | None = None
    message: str | None = None


@dataclass(frozen=True)
class DecisionMark:
    """A decision, or an unbroken series of equal ones (same action and versions) shown once."""

    at: datetime
    action: str
    outcome: str | None
    champion: str | None
    challenger: str | None
    target: str | None
    run_key: str
    report_path: str | None = None
    reasons: tuple[str, ...] = ()
    repeats: int = 1
    last_at: datetime | None = None


@dataclass(frozen=True)
class AliasMove:
    at: datetime
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    removed: bool = False
    message: str | None = None


@dataclass(frozen=True)
class HistoryData:
    model_name: str
    since: datetime
    until: datetime
    runs: tuple[EvidenceRun, ...] = ()
    points: Mapping[tuple[str, str], tuple[Point, ...]] = field(default_factory=dict)
    """(kind, metric) -> points, oldest first."""
    decisions: tuple[DecisionMark, ...] = ()
    alias_moves: tuple[AliasMove, ...] = ()
    known_model: bool = True

    @property
    def days(self) -> int:
        return max(1, round((self.until - self.since) / timedelta(days=1)))

    @property
    def empty(self) -> bool:
        return not (self.runs or self.decisions or self.alias_moves)


def charts_for(data: HistoryData) -> list[ChartSpec]:
    """The fixed charts, then one per judge rubric that has scores in the period."""
    judge = sorted(
        metric
        for kind, metric in data.points
        if kind == "quality" and metric.startswith("judge_") and metric not in _JUDGE_AGREEMENT
    )
    extra = [
        ChartSpec(
            f"quality-{m.replace('_', '-')}",
            "quality",
            m,
            f"Quality: LLM judge, {m.removeprefix('judge_')}",
            _judge_unit(data.points[("quality", m)]),
        )
        for m in judge
    ]
    return [*CHARTS, *extra]


def _judge_unit(points: Sequence[Point]) -> str:
    # The quality job names the unit ("score 1-5", "share", a custom rubric's own); a rubric whose
    # scale changed within the period has no single one.
    units = {p.unit for p in points if p.unit}
    return units.pop() if len(units) == 1 else "score"


def _utc(t: datetime | None) -> datetime | None:
    # SQLite gives naive datetimes back; lockgate stores UTC only.
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _metric_filter() -> Any:
    fixed = [sa.and_(metrics_table.c.kind == c.kind, metrics_table.c.metric == c.metric) for c in CHARTS]
    judge = sa.and_(
        metrics_table.c.kind == "quality",
        metrics_table.c.metric.like("judge\\_%", escape="\\"),
        metrics_table.c.metric.not_in(_JUDGE_AGREEMENT),
    )
    return sa.or_(*fixed, judge)


def collapse_decisions(rows: Iterable[Mapping[Any, Any]]) -> list[DecisionMark]:
    """Decisions as markers, oldest first (pure).

    Dry runs and `no_op` decisions are left out, and an unbroken series of equal decisions (the
    same action about the same champion and challenger, e.g. a hold every 30 minutes) is one
    marker at its first time, with its count and last time.
    """
    marks: list[DecisionMark] = []
    for r in rows:
        if r["dry_run"] or r["action"] == "no_op":
            continue
        at = _aware(r["decided_at"])
        last = marks[-1] if marks else None
        if (
            last is not None
            and (last.action, last.champion, last.challenger) == (r["action"], r["champion"], r["challenger"])
            and last.outcome == r["outcome"]
        ):
            marks[-1] = replace(last, repeats=last.repeats + 1, last_at=at)
            continue
        reasons = r.get("reasons") or "[]"
        marks.append(
            DecisionMark(
                at=at,
                action=r["action"],
                outcome=r["outcome"],
                champion=r["champion"],
                challenger=r["challenger"],
                target=r["target"],
                run_key=r["run_key"],
                report_path=r["report_path"],
                reasons=tuple(json.loads(reasons)) if isinstance(reasons, str) else tuple(reasons),
                last_at=at,
            )
        )
    return marks


def history_series(engine: Engine, model_name: str, since: datetime, until: datetime | None = None) -> HistoryData:
    """One model's evidence, decisions and alias moves with `since <= time <= until` (default now)."""
    _ensure_tables(engine)
    since = _aware(since)
    end = _aware(until) if until is not None else datetime.now(UTC)
    r, m = runs_table.c, metrics_table.c
    in_period = (r.model_name == model_name, r.created_at >= since, r.created_at <= end)
    d, a = audit.decisions_table.c, audit.audit_table.c
    with engine.connect() as conn:
        run_rows = conn.execute(sa.select(runs_table).where(*in_period).order_by(r.created_at, r.kind)).mappings()
        runs = tuple(_run(row) for row in run_rows)
        joined = metrics_table.join(
            runs_table, sa.and_(m.kind == r.kind, m.model_name == r.model_name, m.run_key == r.run_key)
        )
        metric_rows_ = conn.execute(
            sa.select(metrics_table, r.created_at)
            .select_from(joined)
            .where(*in_period, _metric_filter())
            .order_by(r.created_at, m.metric, m.role)
        ).mappings()
        points: dict[tuple[str, str], list[Point]] = {}
        for row in metric_rows_:
            points.setdefault((row["kind"], row["metric"]), []).append(
                Point(
                    at=_aware(row["created_at"]),
                    value=float(row["value"]),
                    run_key=row["run_key"],
                    role=row["role"],
                    version=row["version"],
                    ci_low=row["ci_low"],
                    ci_high=row["ci_high"],
                    confidence=row["confidence"],
                    n=row["n"],
                    unit=row["unit"],
                    trusted=bool(row["trusted"]),
                )
            )
        decision_rows = conn.execute(
            sa.select(
                d.decided_at,
                d.action,
                d.outcome,
                d.dry_run,
                d.champion,
                d.challenger,
                d.target,
                d.run_key,
                d.report_path,
                d.reasons,
            )
            .where(d.model_name == model_name, d.decided_at >= since, d.decided_at <= end)
            .order_by(d.decided_at, d.id)
        ).mappings()
        decisions = tuple(collapse_decisions(decision_rows))
        # Only the columns every version of the audit table has (an older one may lack approval_auth).
        move_rows = conn.execute(
            sa.select(a.at, a.kind, a.alias, a.from_version, a.to_version, a.actor, a.message)
            .where(
                a.model_name == model_name,
                a.kind.in_(audit.ALIAS_KINDS),
                a.alias.is_not(None),
                a.at >= since,
                a.at <= end,
            )
            .order_by(a.at, a.id)
        ).mappings()
        moves = tuple(
            AliasMove(
                at=_aware(row["at"]),
                alias=row["alias"],
                from_version=row["from_version"],
                to_version=row["to_version"] if row["kind"] == "alias_move" else None,
                actor=row["actor"],
                removed=row["kind"] == "alias_removed",
                message=row["message"],
            )
            for row in move_rows
        )
        known = bool(runs or decisions or moves) or _has_any_row(conn, model_name)
    return HistoryData(
        model_name=model_name,
        since=since,
        until=end,
        runs=runs,
        points={k: tuple(v) for k, v in points.items()},
        decisions=decisions,
        alias_moves=moves,
        known_model=known,
    )


def _run(row: Mapping[Any, Any]) -> EvidenceRun:
    drifted = json.loads(row["drifted_columns"]) if row["drifted_columns"] else None
    return EvidenceRun(
        kind=row["kind"],
        run_key=row["run_key"],
        at=_aware(row["created_at"]),
        status=row["status"],
        valid=bool(row["valid"]),
        challenger_version=row["challenger_version"],
        champion_version=row["champion_version"],
        window_start=_utc(row["window_start"]),
        window_end=_utc(row["window_end"]),
        drifted_columns=tuple(drifted) if drifted is not None else None,
        message=row["message"],
    )


def _has_any_row(conn: Connection, model_name: str) -> bool:
    """Whether lockgate has ever recorded anything about the model (at any time)."""
    for column in (runs_table.c.model_name, audit.decisions_table.c.model_name, audit.audit_table.c.model_name):
        if conn.execute(sa.select(column).where(column == model_name).limit(1)).first() is not None:
            return True
    return False


def history_models(engine: Engine) -> list[str]:
    """Every model lockgate has recorded evidence, decisions or alias moves of, sorted."""
    _ensure_tables(engine)
    names: set[str] = set()
    with engine.connect() as conn:
        for column in (runs_table.c.model_name, audit.decisions_table.c.model_name, audit.audit_table.c.model_name):
            names.update(v for (v,) in conn.execute(sa.select(column).distinct()) if v)
    return sorted(names)


def period_start(days: int, now: datetime | None = None) -> datetime:
    """The start of the last `days` days; `days` must be one of `PERIOD_DAYS`."""
    if days not in PERIOD_DAYS:
        raise ValueError(f"days must be one of {', '.join(map(str, PERIOD_DAYS))}, not {days}")
    return (now or datetime.now(UTC)) - timedelta(days=days)
