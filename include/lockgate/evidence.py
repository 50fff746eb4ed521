"""The evidence contract: what the benchmark, drift, quality and live jobs hand to the promotion gates.

Each job writes one `EvidenceSummary` JSON per run (plus its own richer fields in
`details`). The decision engine only reads `metrics`, so a gate's `metric`
`<kind>.<name>` names `summary.metrics[name]` of the latest summary of that kind.

A metric carries up to five estimates:

* `challenger`, `champion`: each version's own value (with an interval when estimated);
* `model`: a model-wide value (drift share, error rate of the whole window);
* `ratio`: challenger / champion, with its interval;
* `difference`: challenger - champion, with its interval;
* `baseline`: the champion's value in its own baseline window (production evidence);
* `baseline_ratio`, `baseline_difference`: the champion now against that baseline.

Absent estimates, an invalid summary, a summary for other versions or an old one
all make a gate's verdict `missing`, which never passes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lockgate.errors import EvidenceError

log = logging.getLogger(__name__)

EvidenceKind = Literal["benchmark", "drift", "quality", "live"]
REPORT_FILE = "report.html"
"""Every evidence run's page, in its run folder (`jobs.publish.run_files`)."""
SUMMARY_FILE = "summary.json"
"""Every evidence run's `EvidenceSummary`, beside its page."""
SummaryStatus = Literal["ok", "insufficient_data", "invalid", "error"]


class Estimate(BaseModel):
    """A value, and for estimated metrics its confidence interval."""

    model_config = ConfigDict(extra="forbid")

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = Field(None, description="Level of [ci_low, ci_high], e.g. 0.95.")
    n: int | None = Field(None, description="Sample size behind the estimate.")

    @property
    def has_interval(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None and self.confidence is not None


class MetricEvidence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    challenger: Estimate | None = None
    champion: Estimate | None = None
    model: Estimate | None = None
    ratio: Estimate | None = None
    difference: Estimate | None = None
    baseline: Estimate | None = None
    baseline_ratio: Estimate | None = None
    baseline_difference: Estimate | None = None
    unit: str | None = None
    description: str | None = None


class EvidenceSummary(BaseModel):
    """One job's evidence about one model (and its challenger/champion versions)."""

    model_config = ConfigDict(extra="forbid")

    kind: EvidenceKind
    model_name: str
    challenger_version: str | None = None
    champion_version: str | None = None
    created_at: datetime
    window_start: datetime | None = None
    window_end: datetime | None = None
    status: SummaryStatus = "ok"
    valid: bool = True
    message: str | None = Field(None, description="Why the summary is invalid or incomplete.")
    metrics: dict[str, MetricEvidence] = Field(default_factory=dict)
    sample_sizes: dict[str, int] = Field(default_factory=dict)
    quarantined: dict[str, int] = Field(default_factory=dict, description="Quarantined rows by reason.")
    report_path: str | None = None
    mlflow_run_ids: dict[str, str] = Field(default_factory=dict)
    dag_id: str | None = None
    run_id: str | None = None
    run_key: str | None = Field(None, description="The run this summary belongs to (its folder's name).")
    details: dict[str, Any] = Field(default_factory=dict, description="Job-specific content.")

    @property
    def content_hash(self) -> str:
        """Hash of what a decision depends on (not where the report lies)."""
        payload = self.model_dump(
            mode="json",
            include={
                "kind",
                "model_name",
                "challenger_version",
                "champion_version",
                "created_at",
                "status",
                "valid",
                "metrics",
                "sample_sizes",
            },
        )
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def utcnow() -> datetime:
    return datetime.now(UTC)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it: a reader (the plugin, the promotion)
    sees the old file or the new one, never half of one. Every report page and summary is written so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_summary(summary: EvidenceSummary, path: Path) -> Path:
    return write_text_atomic(path, summary.model_dump_json(indent=2))


def read_summary(path: Path) -> EvidenceSummary:
    try:
        return EvidenceSummary.model_validate_json(path.read_text())
    except OSError as exc:
        raise EvidenceError(f"cannot read evidence summary {path}: {exc.strerror}") from None
    except ValidationError as exc:
        raise EvidenceError(f"malformed evidence summary {path}: {exc.errors()[0]['msg']}") from None


def latest_summary_path(reports_dir: Path, kind: EvidenceKind, model_name: str) -> Path:
    """Where the copy of the newest summary of a kind for a model is kept, for people and scripts.

    The authoritative latest summary is the state database's (`reports.summaries.read_latest`); the
    publish step writes this copy after it, into the reports store (`reports.store`).
    """
    return reports_dir / kind / _safe(model_name) / "latest.json"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# --------------------------------------------------------------------------- the Asset event's payload

# The metrics each kind puts in its payload's `headline` (the summary has them all).
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "benchmark": ("ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50", "decode_tokens_per_s", "peak_memory_mb"),
    "drift": ("drift_share", "drifted_columns", "error_rate", "timeout_rate"),
    "quality": ("embedding_relevance", "embedding_grounding", "error_rate", "win_rate", "unscored_rate"),
    "live": ("ttft_ms_p90", "e2e_ms_p90", "tpot_ms_p50", "error_rate", "refusal_rate", "relevance"),
}
_ESTIMATES = ("challenger", "champion", "model", "ratio", "difference", "baseline", "baseline_ratio",
              "baseline_difference")  # fmt: skip


class EvidencePayload(TypedDict):
    """The `extra` of every evidence Asset event (`lockgate_<kind>_summary`) and its task's return value.

    Small and JSON-safe: where the summary is and enough to tell what it says. A consumer that needs
    more opens `summary_path`; the gates read the latest summary in the state database
    (`reports.summaries`), never this payload.
    """

    kind: str
    model: str
    run_key: str | None
    dag_id: str | None
    run_id: str | None
    status: str
    valid: bool
    message: str | None
    challenger_version: str | None
    champion_version: str | None
    window_start: str | None
    window_end: str | None
    created_at: str
    evidence_hash: str
    summary_path: str | None
    report_path: str | None
    sample_sizes: dict[str, int]
    quarantined: dict[str, int]
    headline: dict[str, Any]
    facts: dict[str, Any]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _headline(summary: EvidenceSummary) -> dict[str, Any]:
    """`<metric>.<estimate>` -> value, and `<metric>.<estimate>_ci` -> [low, high] where there is an interval."""
    out: dict[str, Any] = {}
    for name in HEADLINE_METRICS.get(summary.kind, ()):
        metric = summary.metrics.get(name)
        if metric is None:
            continue
        for field in _ESTIMATES:
            est: Estimate | None = getattr(metric, field)
            if est is None:
                continue
            out[f"{name}.{field}"] = _round(est.value)
            if est.ci_low is not None and est.ci_high is not None:
                out[f"{name}.{field}_ci"] = [_round(est.ci_low), _round(est.ci_high)]
    return out


def _facts(summary: EvidenceSummary) -> dict[str, Any]:
    """What a kind says beyond its metrics, read from its `details` (the same keys on every run of the kind)."""
    d = summary.details
    if summary.kind == "drift":
        drift = d.get("drift") or {}
        return {
            "drift_detected": drift.get("drift_detected"),
            "drifted_columns": list(drift.get("drifted_columns") or []),
            "tested_columns": drift.get("n_tested", 0),
        }
    if summary.kind == "quality":
        return {"judge_trusted": bool(d.get("judge_trusted")), "mode": d.get("mode")}
    if summary.kind == "live":
        return {"problems": dict(d.get("problems") or {})}
    if summary.kind == "benchmark":
        return {"error_code": d.get("error_code")} if d.get("error_code") else {}
    return {}


def evidence_payload(summary: EvidenceSummary) -> EvidencePayload:
    """The one payload of every evidence kind, built from the summary a job wrote (its `report_path` set)."""
    report = Path(summary.report_path) if summary.report_path else None
    return EvidencePayload(
        kind=summary.kind,
        model=summary.model_name,
        run_key=summary.run_key,
        dag_id=summary.dag_id,
        run_id=summary.run_id,
        status=summary.status,
        valid=summary.valid,
        message=summary.message,
        challenger_version=summary.challenger_version,
        champion_version=summary.champion_version,
        window_start=summary.window_start.isoformat() if summary.window_start else None,
        window_end=summary.window_end.isoformat() if summary.window_end else None,
        created_at=summary.created_at.isoformat(),
        evidence_hash=summary.content_hash,
        summary_path=str(report.with_name(SUMMARY_FILE)) if report else None,
        report_path=summary.report_path,
        sample_sizes=dict(summary.sample_sizes),
        quarantined=dict(summary.quarantined),
        headline=_headline(summary),
        facts=_facts(summary),
    )
