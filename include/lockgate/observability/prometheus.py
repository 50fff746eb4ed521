"""Prometheus metrics for lockgate: each evidence job and each promotion decision pushes to a Pushgateway.

Why push, not an endpoint: lockgate's jobs are batch jobs. A benchmark, drift, quality or live
job and a promotion decision run in an Airflow task for seconds to minutes and exit; there is no
long-lived lockgate process whose `/metrics` Prometheus could scrape, and one Airflow worker
runs many models' tasks. Prometheus recommends the Pushgateway for exactly this case
("service-level batch jobs", https://prometheus.io/docs/practices/pushing/): the job pushes its
result when it finishes, the gateway keeps the last push of each group, Prometheus scrapes the
gateway (with `honor_labels: true`, so the pushed `job` and `model` labels stay as pushed).
An endpoint would need a server that re-reads every model's latest evidence and decisions on each
scrape: another service to run, for values that change a few times a day.

Groups and push semantics:

* One grouping key per (job, model): `job` is `lockgate_<kind>` for an evidence job
  (`lockgate_benchmark`, `lockgate_drift`, `lockgate_quality`, `lockgate_live`) and
  `lockgate_promotion` for a decision; `model` is the watched model. A push for one model never
  touches another model's group, nor another job's.
* Every push is a `push` (HTTP PUT, `push_to_gateway`), never `pushadd` (POST): PUT replaces the
  whole group, so the group holds exactly the latest run's values. With `pushadd` a gate whose
  evidence went missing, a version that is no longer the challenger, or an approval no longer
  pending would keep its old series, indistinguishable from a current one; `lockgate_gate_missing`
  and the absence of `lockgate_gate_value` could not be trusted.

Metrics are a side channel: `LOCKGATE_PUSHGATEWAY_URL` unset means export disabled (a debug log);
a push that fails (gateway down, refused, slow) logs a warning and never fails the job or the
decision. The evidence summaries and the decision are the product.

The catalogue (`METRICS`) is the one list of names and labels; the dashboard and the alert rules
in `docker/prometheus` and `docker/grafana` are checked against it by the tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from lockgate.evidence import EvidenceSummary, MetricEvidence

if TYPE_CHECKING:
    from lockgate.policy.model import Decision

log = logging.getLogger(__name__)

PUSH_TIMEOUT_S = 5.0
"""A gateway that does not answer delays a job at most this long."""

DECISION_JOB = "lockgate_promotion"
ACTIONS: tuple[str, ...] = ("promote", "await_approval", "hold", "rollback", "no_op")
"""Every decision action; `lockgate_decision` has one series per action, 1 for the current one."""

GATE_LABELS: tuple[str, ...] = ("model", "version", "gate", "metric", "subject", "gate_action")
ROLE_LABELS: tuple[str, ...] = ("model", "version", "role")


@dataclass(frozen=True)
class MetricSpec:
    """One gauge of the catalogue: its name, help text and label names."""

    name: str
    help: str
    labels: tuple[str, ...]


_SPECS: tuple[MetricSpec, ...] = (
    # --- gates, from each decision (job lockgate_promotion)
    MetricSpec(
        "lockgate_gate_value",
        "Point estimate a gate compared (a ratio, difference or value, per the gate's comparison); "
        "absent when the evidence is missing. version is the subject's version, empty for model-wide gates.",
        GATE_LABELS,
    ),
    MetricSpec("lockgate_gate_lower", "Lower bound of the gate's confidence interval.", GATE_LABELS),
    MetricSpec("lockgate_gate_upper", "Upper bound of the gate's confidence interval.", GATE_LABELS),
    MetricSpec(
        "lockgate_gate_threshold",
        "The gate's limit in the compared unit (e.g. 1.25 for a ratio gate tolerating 25%).",
        GATE_LABELS,
    ),
    MetricSpec("lockgate_gate_passed", "1 if the gate passed, 0 if it failed; absent when missing.", GATE_LABELS),
    MetricSpec("lockgate_gate_missing", "1 if the gate's evidence was missing (never passes), else 0.", GATE_LABELS),
    # --- the decision
    MetricSpec(
        "lockgate_decision",
        "1 for the action of the latest decision, 0 for the other actions. version: the version the decision "
        "is about (challenger, or the rollback target).",
        ("model", "version", "action"),
    ),
    MetricSpec("lockgate_decision_timestamp_seconds", "When the latest decision was taken (Unix time).", ("model",)),
    MetricSpec(
        "lockgate_alias",
        "1 for each alias (champion, challenger, previous_champion) and the version it pointed to at the decision.",
        ("model", "alias", "version"),
    ),
    MetricSpec(
        "lockgate_approval_pending_since_seconds",
        "Since when the challenger has been awaiting approval (Unix time); only while it waits.",
        ("model", "version"),
    ),
    # --- evidence, from each evidence job and from each decision
    MetricSpec(
        "lockgate_evidence_timestamp_seconds",
        "When the latest evidence summary of a kind was created (Unix time).",
        ("model", "kind"),
    ),
    MetricSpec(
        "lockgate_evidence_max_age_seconds",
        "The policy's evidence.max_age_hours, in seconds: older evidence counts as missing (from each decision).",
        ("model",),
    ),
    MetricSpec(
        "lockgate_evidence_valid", "1 if the latest evidence summary of a kind is valid, else 0.", ("model", "kind")
    ),
    MetricSpec(
        "lockgate_live_ttft_p90_ms",
        "Production p90 time to first token, ms (role: challenger, champion, or baseline = the champion's "
        "baseline window).",
        ROLE_LABELS,
    ),
    MetricSpec("lockgate_live_tpot_p50_ms", "Production median time per output token, ms.", ROLE_LABELS),
    MetricSpec("lockgate_live_error_rate", "Production share of requests with status error.", ROLE_LABELS),
    MetricSpec("lockgate_benchmark_ttft_p50_ms", "Benchmark median time to first token, ms.", ROLE_LABELS),
    MetricSpec("lockgate_benchmark_tpot_p50_ms", "Benchmark median time per output token, ms.", ROLE_LABELS),
    MetricSpec("lockgate_drift_share", "Share of tested columns that drift in the current window.", ("model",)),
    MetricSpec("lockgate_drift_drifted_columns", "Number of drifted columns in the current window.", ("model",)),
    MetricSpec("lockgate_quality_relevance", "MiniLM prompt-response relevance (cosine) per version.", ROLE_LABELS),
)

METRICS: dict[str, MetricSpec] = {s.name: s for s in _SPECS}
"""The catalogue: every metric lockgate exports, by name."""
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)


@dataclass(frozen=True)
class Point:
    """One sample: a catalogue metric, its labels, its value."""

    name: str
    labels: dict[str, str]
    value: float

    def __post_init__(self) -> None:
        spec = METRICS.get(self.name)
        if spec is None:
            raise ValueError(f"{self.name} is not in the metric catalogue")
        if set(self.labels) != set(spec.labels):
            raise ValueError(f"{self.name} takes labels {spec.labels}, got {sorted(self.labels)}")


@dataclass(frozen=True)
class Push:
    """What one push sends: the group (job, model) and its samples."""

    job: str
    model: str
    points: list[Point] = field(default_factory=list)


def _ts(t: datetime) -> float:
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()


# --------------------------------------------------------------------------- pure builders


def decision_points(
    decision: Decision, *, approval_pending_since: datetime | None = None, max_age_hours: float | None = None
) -> list[Point]:
    """The samples of one decision: its gates, its action, the aliases it saw, the evidence ages.

    `max_age_hours`: the policy's `evidence.max_age_hours`, which the stale-evidence alert compares with.
    """
    model = decision.model_name
    points: list[Point] = []
    if max_age_hours is not None:
        points.append(Point("lockgate_evidence_max_age_seconds", {"model": model}, float(max_age_hours) * 3600))
    for v in decision.verdicts:
        version = {"challenger": decision.challenger, "champion": decision.champion}.get(v.subject) or ""
        labels = {
            "model": model,
            "version": version,
            "gate": v.gate,
            "metric": v.metric,
            "subject": v.subject,
            "gate_action": v.action,
        }
        missing = v.status == "missing"
        if not missing:
            for name, value in (
                ("lockgate_gate_value", v.value),
                ("lockgate_gate_lower", v.ci_low),
                ("lockgate_gate_upper", v.ci_high),
            ):
                if value is not None:
                    points.append(Point(name, labels, float(value)))
            points.append(Point("lockgate_gate_passed", labels, 1.0 if v.status == "pass" else 0.0))
        points.append(Point("lockgate_gate_missing", labels, 1.0 if missing else 0.0))
        limit = v.limit if v.limit is not None else v.threshold
        points.append(Point("lockgate_gate_threshold", labels, float(limit)))
    about = decision.subject_version or decision.target or decision.challenger or decision.champion or ""
    for action in ACTIONS:
        points.append(
            Point(
                "lockgate_decision",
                {"model": model, "version": about, "action": action},
                float(action == decision.action),
            )
        )
    points.append(Point("lockgate_decision_timestamp_seconds", {"model": model}, _ts(decision.decided_at)))
    for alias, pointed in (
        ("champion", decision.champion),
        ("challenger", decision.challenger),
        ("previous_champion", decision.previous_champion),
    ):
        if pointed:
            points.append(Point("lockgate_alias", {"model": model, "alias": alias, "version": pointed}, 1.0))
    if decision.action == "await_approval" and decision.challenger:
        since = approval_pending_since or decision.decided_at
        points.append(
            Point(
                "lockgate_approval_pending_since_seconds",
                {"model": model, "version": decision.challenger},
                _ts(since),
            )
        )
    for kind, ref in sorted(decision.evidence.items()):
        if ref.created_at is not None:
            points.append(
                Point("lockgate_evidence_timestamp_seconds", {"model": model, "kind": kind}, _ts(ref.created_at))
            )
    return points


class _DecisionLike(Protocol):
    """A recorded decision (`lockgate.registry.audit.DecisionRow`), as far as the pending clock reads it."""

    @property
    def decided_at(self) -> datetime: ...
    @property
    def action(self) -> str: ...
    @property
    def challenger(self) -> str | None: ...
    @property
    def dry_run(self) -> bool: ...


def approval_pending_since(decision: Decision, history: Iterable[_DecisionLike]) -> datetime | None:
    """When the decision's challenger started waiting: the oldest of the unbroken run of
    `await_approval` decisions for that challenger ending at this one (history newest first).

    A new evidence hash asks for the approval again but the version has kept waiting, so it
    does not restart the clock; any other action (or another challenger) does. Dry runs are skipped.
    """
    if decision.action != "await_approval" or not decision.challenger:
        return None
    since = decision.decided_at
    for row in history:
        if row.dry_run or _ts(row.decided_at) > _ts(decision.decided_at):
            continue
        if row.action != "await_approval" or row.challenger != decision.challenger:
            break
        if _ts(row.decided_at) < _ts(since):
            since = row.decided_at
    return since


# Evidence metric -> (catalogue name, estimates exported as roles)
_ROLE_EXPORTS: dict[str, dict[str, str]] = {
    "live": {
        "ttft_ms_p90": "lockgate_live_ttft_p90_ms",
        "tpot_ms_p50": "lockgate_live_tpot_p50_ms",
        "error_rate": "lockgate_live_error_rate",
    },
    "benchmark": {"ttft_ms_p50": "lockgate_benchmark_ttft_p50_ms", "tpot_ms_p50": "lockgate_benchmark_tpot_p50_ms"},
    "quality": {"embedding_relevance": "lockgate_quality_relevance"},
}
_MODEL_EXPORTS: dict[str, dict[str, str]] = {
    "drift": {"drift_share": "lockgate_drift_share", "drifted_columns": "lockgate_drift_drifted_columns"},
}


def _role_points(name: str, summary: EvidenceSummary, metric: MetricEvidence) -> list[Point]:
    out = []
    for role, version in (
        ("challenger", summary.challenger_version),
        ("champion", summary.champion_version),
        ("baseline", summary.champion_version),  # the champion in its own baseline window
    ):
        est = getattr(metric, role)
        if est is not None and version:
            out.append(Point(name, {"model": summary.model_name, "version": version, "role": role}, float(est.value)))
    return out


def evidence_points(summary: EvidenceSummary) -> list[Point]:
    """The samples of one evidence summary: its time and validity, and the kind's headline values."""
    model = summary.model_name
    points = [
        Point("lockgate_evidence_timestamp_seconds", {"model": model, "kind": summary.kind}, _ts(summary.created_at)),
        Point("lockgate_evidence_valid", {"model": model, "kind": summary.kind}, float(summary.valid)),
    ]
    for metric_name, name in _ROLE_EXPORTS.get(summary.kind, {}).items():
        metric = summary.metrics.get(metric_name)
        if metric is not None:
            points += _role_points(name, summary, metric)
    for metric_name, name in _MODEL_EXPORTS.get(summary.kind, {}).items():
        metric = summary.metrics.get(metric_name)
        if metric is not None and metric.model is not None:
            points.append(Point(name, {"model": model}, float(metric.model.value)))
    return points


def evidence_push(summary: EvidenceSummary) -> Push:
    return Push(job=f"lockgate_{summary.kind}", model=summary.model_name, points=evidence_points(summary))


def decision_push(
    decision: Decision, *, approval_pending_since: datetime | None = None, max_age_hours: float | None = None
) -> Push:
    return Push(
        job=DECISION_JOB,
        model=decision.model_name,
        points=decision_points(decision, approval_pending_since=approval_pending_since, max_age_hours=max_age_hours),
    )


# --------------------------------------------------------------------------- pushing


def to_registry(points: Sequence[Point]) -> object:
    """A `prometheus_client.CollectorRegistry` holding `points` as gauges (only the metrics present)."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for p in points:
        if p.name not in gauges:
            spec = METRICS[p.name]
            gauges[p.name] = Gauge(p.name, spec.help, list(spec.labels), registry=registry)
        gauges[p.name].labels(**p.labels).set(p.value)
    return registry


def push(batch: Push, url: str | None = None, *, timeout_s: float = PUSH_TIMEOUT_S) -> bool:
    """Replace the (job, model) group on the Pushgateway with `batch` (HTTP PUT). True when pushed.

    `url`: the gateway (default: `LOCKGATE_PUSHGATEWAY_URL`); none configured: nothing is sent.
    Never raises: a failed push is a warning in the log.
    """
    if url is None:
        try:
            from lockgate.settings import get_settings

            url = get_settings().pushgateway_url
        except Exception as exc:  # noqa: BLE001 - metrics must never fail the job
            log.warning("metrics not pushed: cannot read the settings: %s", exc)
            return False
    if not url:
        log.debug("LOCKGATE_PUSHGATEWAY_URL is not set: %s metrics of %s not exported", batch.job, batch.model)
        return False
    try:
        from prometheus_client import push_to_gateway

        push_to_gateway(
            url,
            job=batch.job,
            registry=to_registry(batch.points),  # type: ignore[arg-type]
            grouping_key={"model": batch.model},
            timeout=timeout_s,
        )
    except Exception as exc:  # noqa: BLE001 - the evidence and the decision are the product, metrics a side channel
        log.warning(
            "could not push %s metrics of %s to the Pushgateway %s (the job goes on): %s",
            batch.job,
            batch.model,
            url,
            exc,
        )
        return False
    log.info("pushed %d %s metrics of %s to %s", len(batch.points), batch.job, batch.model, url)
    return True


def export_evidence(summary: EvidenceSummary, url: str | None = None) -> bool:
    """After an evidence job wrote its latest summary: push its values. Never raises."""
    try:
        batch = evidence_push(summary)
    except Exception as exc:  # noqa: BLE001
        log.warning("metrics of the %s evidence of %s not built: %s", summary.kind, summary.model_name, exc)
        return False
    return push(batch, url)


def export_decision(
    decision: Decision,
    url: str | None = None,
    *,
    history: Iterable[_DecisionLike] = (),
    max_age_hours: float | None = None,
) -> bool:
    """After a decision was recorded: push its gates and action. Never raises.

    `history`: the model's recorded decisions, newest first, for how long an approval has been pending.
    `max_age_hours`: the policy's `evidence.max_age_hours` (the stale-evidence alert reads it).
    """
    try:
        since = approval_pending_since(decision, history)
        batch = decision_push(decision, approval_pending_since=since, max_age_hours=max_age_hours)
    except Exception as exc:  # noqa: BLE001
        log.warning("metrics of the decision on %s not built: %s", decision.model_name, exc)
        return False
    return push(batch, url)
