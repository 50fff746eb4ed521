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
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lockgate.errors import EvidenceError

log = logging.getLogger(__name__)

EvidenceKind = Literal["benchmark", "drift", "quality", "live"]
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


def write_summary(summary: EvidenceSummary, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(summary.model_dump_json(indent=2))
    tmp.replace(path)  # atomic: a reader never sees half a summary
    return path


def read_summary(path: Path) -> EvidenceSummary:
    try:
        return EvidenceSummary.model_validate_json(path.read_text())
    except OSError as exc:
        raise EvidenceError(f"cannot read evidence summary {path}: {exc.strerror}") from None
    except ValidationError as exc:
        raise EvidenceError(f"malformed evidence summary {path}: {exc.errors()[0]['msg']}") from None


def promote_latest(summary_path: Path, latest: Path, summary: EvidenceSummary) -> bool:
    """Copy a run's summary to the model's `latest.json`, unless the latest one describes a later window.

    A backfill or a rerun of an old run must not replace fresher evidence. Returns whether it was copied.
    """
    if latest.exists():
        try:
            current: EvidenceSummary | None = read_summary(latest)
        except EvidenceError:
            current = None
        if (
            current is not None
            and current.window_end is not None
            and summary.window_end is not None
            and current.window_end > summary.window_end
        ):
            log.info("kept %s: it describes a later window (%s)", latest, current.window_end.isoformat())
            return False
    latest.parent.mkdir(parents=True, exist_ok=True)
    tmp = latest.with_suffix(".json.tmp")
    shutil.copyfile(summary_path, tmp)
    tmp.replace(latest)
    return True


def latest_summary_path(reports_dir: Path, kind: EvidenceKind, model_name: str) -> Path:
    """Where the newest summary of a kind for a model is kept (a copy of the run's)."""
    return reports_dir / kind / _safe(model_name) / "latest.json"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
