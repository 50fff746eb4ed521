"""The registry vocabulary: aliases and `lockgate.*` model-version tags (docs/design.md, "Model Registry conventions").

Cheap to import (no MLflow): the DAG file and the trigger use these names too.
"""

from __future__ import annotations

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)

# Written by lockgate.
STATUS = "lockgate.status"
"""`evaluating`, `gates_failed`, `awaiting_approval`, `promoted`, `rolled_back`, `rejected`."""
EVIDENCE = "lockgate.evidence"
"""Hash of the evidence the version's latest decision used (what an approval is given on)."""
POLICY = "lockgate.policy"
DECISION = "lockgate.decision"
DECISION_REPORT = "lockgate.decision_report"
STATUS_REASON = "lockgate.status_reason"
PROMOTED_AT = "lockgate.promoted_at"
PROMOTED_FROM = "lockgate.promoted_from"
PROMOTED_BY = "lockgate.promoted_by"
REPLACED_BY = "lockgate.replaced_by"
ROLLED_BACK_AT = "lockgate.rolled_back_at"
ROLLED_BACK_TO = "lockgate.rolled_back_to"
PREVIOUS_APPROVAL = "lockgate.previous_approval"

# Set by a person (in the MLflow UI or with `lockgate approve`).
APPROVAL = "lockgate.approval"
"""`approved` or `rejected`."""
APPROVED_BY = "lockgate.approved_by"
# Bound to the approval by `lockgate approve`, or by lockgate when it first sees an approval set in the UI.
APPROVAL_EVIDENCE = "lockgate.approval_evidence"
APPROVED_AT = "lockgate.approved_at"
APPROVAL_TAGS = (APPROVAL, APPROVED_BY, APPROVAL_EVIDENCE, APPROVED_AT)

# Written only by lockgate's MLflow server app (`mlflow server --app-name lockgate-auth`), after each
# accepted write of an approval tag: who wrote it, with what permission, and the tags as they then
# stood (lockgate.registry.attestation). The app refuses any client's write of it with 403.
APPROVAL_ATTESTATION = "lockgate.approval_attestation"

# Registered-model tag: the latest alias move, as JSON, for readers of the MLflow UI.
LAST_MOVE = "lockgate.last_move"
