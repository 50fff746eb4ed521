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

# Model-version tags written beside the evidence.
SOURCE_PATH = "lockgate.source_path"
"""The local Hugging Face directory a version was registered from (`lockgate models register`)."""
BENCHMARK_RUN_ID = "lockgate.benchmark_run_id"
BENCHMARK_REPORT = "lockgate.benchmark_report"

# Tags of the evidence jobs' MLflow runs (`lockgate.registry.runs`). The benchmark's runs named
# their model `lockgate.model_name`, drift's and quality's `lockgate.model`; every new run of any
# kind now carries both, since searches in MLflow and people's saved filters use either.
RUN_KIND = "lockgate.kind"
RUN_KEY = "lockgate.run_key"
RUN_MODEL = "lockgate.model"
RUN_MODEL_NAME = "lockgate.model_name"
RUN_MODEL_VERSION = "lockgate.model_version"
RUN_ROLE = "lockgate.role"
RUN_COMPARED_WITH = "lockgate.compared_with"
RUN_BENCHMARK_STATUS = "lockgate.benchmark_status"
RUN_BENCHMARK_VALID = "lockgate.benchmark_valid"
RUN_DAG_ID = "lockgate.dag_id"
RUN_AIRFLOW_RUN_ID = "lockgate.airflow_run_id"
RUN_CHALLENGER_VERSION = "lockgate.challenger_version"
RUN_CHAMPION_VERSION = "lockgate.champion_version"
RUN_DRIFTED_COLUMNS = "lockgate.drifted_columns"
RUN_REFERENCE_WINDOW = "lockgate.reference_window"
RUN_CURRENT_WINDOW = "lockgate.current_window"
# A drift run also carries `STATUS` (the drift status) and `EVIDENCE` (the evidence hash).

# Tags of the quality job's traces (`lockgate.registry.genai`), one trace per sampled request.
TRACE_NAME = "lockgate.quality.sample"
"""The name of each such trace's span (not a tag, but a `lockgate.*` name all the same)."""
TRACE_REQUEST_ID = "lockgate.request_id"
TRACE_MODEL_VERSION = RUN_MODEL_VERSION
TRACE_ROLE = RUN_ROLE

# Tags of a calibration set kept as an MLflow evaluation dataset: its manifest.
DATASET_DESCRIPTION = "lockgate.description"
DATASET_LABELS_FROM = "lockgate.labels_from"
DATASET_METHOD = "lockgate.method"
DATASET_LABELLERS = "lockgate.labellers"
"""A JSON list of labeller ids or of {id, description}."""
DATASET_PUSHED_FROM = "lockgate.pushed_from"
