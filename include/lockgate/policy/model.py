"""The decision engine's plain data: what goes in (registry state, evidence, approval) and what comes out.

Nothing here talks to MLflow, a database or the clock; `lockgate.registry` and
`lockgate.jobs.promotion` fill these in and act on them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lockgate.evidence import EvidenceKind, EvidenceSummary
from lockgate.policy.schema import Direction, GateAction, GateComparison, GateSubject

Action = Literal["promote", "await_approval", "hold", "rollback", "no_op"]
"""What the decision asks for; only `promote` and `rollback` move an alias."""

VerdictStatus = Literal["pass", "fail", "missing"]
EstimateName = Literal[
    "challenger", "champion", "model", "ratio", "difference", "baseline", "baseline_ratio", "baseline_difference"
]
VersionStatus = Literal["evaluating", "gates_failed", "awaiting_approval", "promoted", "rolled_back", "rejected"]
"""Values of the `lockgate.status` model-version tag (docs/design.md)."""

ApprovalStatus = Literal["not_required", "none", "invalid", "unlisted", "stale", "expired", "approved", "rejected"]
"""How the approval tags of a challenger were judged:

* `not_required`: the policy does not ask for approval;
* `none`: no `lockgate.approval` tag;
* `invalid`: a value other than `approved` / `rejected`, an `approved_at` in the future or
  not a time, or, with MLflow authentication on, tags the MLflow server did not attest to the
  approver (`ApprovalRecord.unverified_reason`);
* `unlisted`: set by a name that is not in the approver list (refused);
* `stale`: given on other evidence than the current (asked again);
* `expired`: older than `approval_expiry_hours` (asked again);
* `approved` / `rejected`: counted.
"""

APPROVAL_VALUES = ("approved", "rejected")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApprovalRecord(_Frozen):
    """What the registry's approval tags say, uninterpreted."""

    value: str | None = Field(None, description="`lockgate.approval` as set by a person.")
    by: str | None = Field(None, description="`lockgate.approved_by`.")
    evidence_hash: str | None = Field(None, description="The evidence hash the approval was given on.")
    at: datetime | None = Field(None, description="When it was given (or first seen by lockgate).")
    at_text: str | None = Field(None, description="`lockgate.approved_at` as written, to tell unparseable from absent.")
    authenticated_as: str | None = Field(
        None,
        description="Who an authentication system says gave it; None when the name is only asserted "
        "(a tag anyone allowed to write tags can set, or `lockgate approve --by`).",
    )
    authenticated_via: str | None = Field(
        None, description="Which system vouched for `authenticated_as` (`MLflow`); None: Airflow's inbox, or none."
    )
    attested_by: str | None = Field(
        None,
        description="The MLflow user whom the MLflow server's attestation names as the last writer of the "
        "approval tags (lockgate.registry.attestation); None without an attestation that matches the tags.",
    )
    unverified_reason: str | None = Field(
        None,
        description="Why an authentication the policy requires (`approvals.mlflow_auth`) does not vouch for "
        "the approver; set, the approval never counts.",
    )


class ApprovalCheck(_Frozen):
    status: ApprovalStatus
    by: str | None = None
    reason: str
    authenticated: bool = Field(
        False, description="The approver was authenticated; False: `by` is a name someone typed, not verified."
    )
    authenticated_via: str | None = Field(
        None, description="Which system authenticated `by` when it was not Airflow's inbox (`MLflow`)."
    )

    @property
    def auth_label(self) -> str:
        """`authenticated`, `authenticated (MLflow: <user>)` or `unauthenticated`, as the decision page and
        the audit trail show it."""
        if not self.authenticated:
            return "unauthenticated"
        return f"authenticated ({self.authenticated_via}: {self.by})" if self.authenticated_via else "authenticated"


class EvidenceRef(_Frozen):
    """Which summary of a kind the decision looked at, and whether it could be used."""

    kind: EvidenceKind
    usable: bool
    reason: str
    content_hash: str | None = None
    created_at: datetime | None = None
    age_hours: float | None = None
    report_path: str | None = None
    challenger_version: str | None = None
    champion_version: str | None = None


class PromotionInputs(_Frozen):
    """Everything the engine decides on: the registry's aliases, the evidence, the approval."""

    model_name: str
    champion: str | None = None
    challenger: str | None = None
    previous_champion: str | None = None
    evidence: dict[EvidenceKind, EvidenceSummary | None] = Field(default_factory=dict)
    evidence_errors: dict[EvidenceKind, str] = Field(
        default_factory=dict, description="Why a kind's summary could not be read (malformed file, ...)."
    )
    approval: ApprovalRecord | None = None
    policy_hash: str
    max_evidence_age_hours: float = Field(48, gt=0)
    registered_at: dict[str, datetime] = Field(
        default_factory=dict,
        description="When the aliased versions were registered, by version: evidence made before is about "
        "an earlier version with the same number.",
    )


class GateVerdict(_Frozen):
    """One gate applied to the evidence: the numbers, the bound, and pass / fail / missing."""

    gate: str
    metric: str
    kind: EvidenceKind
    action: GateAction
    comparison: GateComparison
    subject: GateSubject
    direction: Direction
    estimate: EstimateName
    status: VerdictStatus
    reason: str
    threshold: float = Field(description="As written in the policy.")
    limit: float | None = Field(None, description="The threshold in the compared unit (e.g. 1.10 for a ratio).")
    value: float | None = Field(None, description="Point estimate.")
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = Field(None, description="Level of the evidence's interval.")
    required_confidence: float | None = None
    compared: float | None = Field(None, description="What was compared with the limit: the unfavourable bound.")
    n: int | None = None
    evidence_hash: str | None = None
    report_path: str | None = None

    @property
    def blocks(self) -> bool:
        """A promotion gate that did not pass (warn gates never block)."""
        return self.action == "block_promotion" and self.status != "pass"


class Decision(_Frozen):
    """The engine's answer. `outcome`, `report_path`, `run_key` and `dry_run` are filled in by the job."""

    model_name: str
    action: Action
    champion: str | None = None
    challenger: str | None = None
    previous_champion: str | None = None
    target: str | None = Field(None, description="The version `champion` moves to (promote, rollback).")
    subject_version: str | None = Field(None, description="The version whose lockgate.status this sets.")
    subject_status: VersionStatus | None = None
    reasons: list[str] = Field(default_factory=list)
    verdicts: list[GateVerdict] = Field(default_factory=list)
    approval: ApprovalCheck | None = None
    evidence: dict[EvidenceKind, EvidenceRef] = Field(default_factory=dict)
    evidence_hash: str
    policy_hash: str
    decided_at: datetime
    # filled by lockgate.jobs.promotion
    dry_run: bool = False
    run_key: str | None = None
    outcome: str | None = Field(None, description="What the job did: moved, aborted, dry_run, unchanged, ...")
    report_path: str | None = None

    @property
    def moves(self) -> bool:
        return self.action in ("promote", "rollback")

    def verdict(self, gate: str) -> GateVerdict | None:
        for v in self.verdicts:
            if v.gate == gate:
                return v
        return None
