"""The pure decision engine: gates, thresholds and the promotion decision. No I/O, no clock."""

from lockgate.policy.engine import check_approval, decide_promotion, evidence_hash, gate_kinds
from lockgate.policy.gates import assess_evidence, estimate_name, evaluate_gate, limit_of
from lockgate.policy.model import (
    Action,
    ApprovalCheck,
    ApprovalRecord,
    ApprovalStatus,
    Decision,
    EvidenceRef,
    GateVerdict,
    PromotionInputs,
    VersionStatus,
)

__all__ = [
    "Action",
    "ApprovalCheck",
    "ApprovalRecord",
    "ApprovalStatus",
    "Decision",
    "EvidenceRef",
    "GateVerdict",
    "PromotionInputs",
    "VersionStatus",
    "assess_evidence",
    "check_approval",
    "decide_promotion",
    "estimate_name",
    "evaluate_gate",
    "evidence_hash",
    "gate_kinds",
    "limit_of",
]
