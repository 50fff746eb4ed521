"""The promotion job's reads: the aliases, the challenger's approval tags and the latest evidence of each gated kind.

Read inside the promotion lock by `job.run_promotion`, and without it by `preview`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.policy import Decision, PromotionInputs, decide_promotion, gate_kinds
from lockgate.policy.schema import Policy, load_policy
from lockgate.registry.adapter import ModelRegistry, RegistryState, approval_record
from lockgate.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)


def gather_inputs(
    model_name: str,
    policy: Policy,
    registry: ModelRegistry,
    reports_dir: Path,
    state_conn: Connection | None = None,
) -> tuple[PromotionInputs, RegistryState, dict[str, str]]:
    """Everything the engine needs, read now: aliases, evidence, the challenger's approval tags.

    With `state_conn` (lockgate's state database), an approval that lockgate received from an
    authentication system (Airflow's Required actions inbox) and that the tags still show unchanged
    is marked authenticated; without it every approval is taken as asserted. With the policy's
    `approvals.mlflow_auth`, any other approval counts only when lockgate's MLflow app attests that
    the approver wrote it (`registry.attestation.require_mlflow_authentication`).

    Returns:
        The engine's inputs, the alias state they were read from, and the challenger's tags.
    """
    wm = policy.model(model_name)
    state = registry.state(model_name)
    from lockgate.reports.summaries import read_latest

    # The state database's latest rows are the evidence (latest.json files are copies for people).
    evidence, errors = read_latest(model_name, gate_kinds(wm.gates), state_conn)
    challenger_tags: dict[str, str] = {}
    approval = None
    registered_at: dict[str, datetime] = {}
    for aliased in (v for v in dict.fromkeys((state.champion, state.challenger)) if v is not None):
        info = registry.version(model_name, aliased)
        if info.created_at is not None:
            registered_at[aliased] = info.created_at
        if aliased == state.challenger and state.challenger != state.champion:
            challenger_tags = info.tags
    if state.challenger is not None and state.challenger != state.champion:
        approval = approval_record(challenger_tags)
        if state_conn is not None:
            from lockgate.registry.audit import vouched

            approval = vouched(approval, state_conn, model_name, state.challenger)
        if policy.approvals.mlflow_auth:
            from lockgate.registry.attestation import require_mlflow_authentication

            approval = require_mlflow_authentication(approval, challenger_tags, model_name, state.challenger)
    inputs = PromotionInputs(
        model_name=model_name,
        champion=state.champion,
        challenger=state.challenger,
        previous_champion=state.previous_champion,
        evidence=evidence,
        evidence_errors=errors,
        approval=approval,
        policy_hash=policy.policy_hash,
        max_evidence_age_hours=policy.evidence.max_age_hours,
        registered_at=registered_at,
    )
    return inputs, state, challenger_tags


def preview(
    model_name: str,
    *,
    policy: Policy | None = None,
    registry: ModelRegistry | None = None,
    reports_dir: Path | None = None,
    now: datetime | None = None,
) -> Decision:
    """Decide without the lock and without writing anything (what the DAG waits on before it moves)."""
    policy = policy or load_policy()
    registry = registry or ModelRegistry()
    reports = reports_dir or get_settings().reports_dir
    inputs, _, _ = gather_inputs(model_name, policy, registry, reports)
    return decide_promotion(inputs, policy.model(model_name), now or datetime.now(UTC))
