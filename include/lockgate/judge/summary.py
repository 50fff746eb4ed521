"""`QualitySummary`: everything the quality job found, beyond the metrics the gates read.

Written as `quality_summary.json` beside the run's `summary.json` (the
`EvidenceSummary`), and carried in compact form (no per-item lists, no example
texts) in `EvidenceSummary.details["quality"]`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lockgate.evidence import Estimate, MetricEvidence
from lockgate.judge.calibration import CalibrationResult


class VersionInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["challenger", "champion"]
    version: str
    source: Literal["logs", "replay"]
    window_rows: int = Field(0, description="Rows of this version in the window.")
    sampled: int = Field(0, description="Rows drawn (usable + quarantined).")
    usable: int = 0
    answered: int = Field(0, description="Usable rows with status ok and a response: what is judged.")
    quarantined: dict[str, int] = Field(default_factory=dict)
    unscored: dict[str, int] = Field(default_factory=dict, description="Unscored judgments by reason.")


class Example(BaseModel):
    """A low-scoring sample for the report; texts are redacted (and escaped when shown)."""

    model_config = ConfigDict(extra="forbid")

    role: str
    version: str
    request_id: str
    metric: str
    value: float
    prompt: str
    response: str | None
    context: str | None = None
    rationale: str | None = None


class PairwiseInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: int = 0
    scored: int = 0
    unscored: int = 0
    win_rate: Estimate | None = None
    position_consistency: float | None = None
    how: str = ""


class QualitySummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    model_name: str
    run_key: str
    mode: Literal["traffic", "replay", "champion_only", "no_versions"]
    challenger_version: str | None = None
    champion_version: str | None = None
    window_start: str
    window_end: str
    rubrics: list[str] = Field(default_factory=list, description="Rubric ids used, e.g. relevance.v1.")
    judge: str = ""
    judge_identity: str = ""
    judge_trusted: bool = False
    judge_note: str = ""
    calibration: CalibrationResult | None = None
    versions: list[VersionInfo] = Field(default_factory=list)
    pairwise: PairwiseInfo = Field(default_factory=PairwiseInfo)
    untrusted_judge_metrics: dict[str, MetricEvidence] = Field(
        default_factory=dict, description="Judge scores computed but kept out of the evidence (calibration failed)."
    )
    redactions: dict[str, int] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    timings_s: dict[str, float] = Field(default_factory=dict)
    examples: list[Example] = Field(default_factory=list)

    def compact(self) -> dict[str, object]:
        """For `EvidenceSummary.details`: no example texts, no per-item calibration list."""
        data = self.model_dump(mode="json", exclude={"examples"})
        if data.get("calibration"):
            data["calibration"].pop("items", None)
        return data
