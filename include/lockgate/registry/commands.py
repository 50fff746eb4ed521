"""`lockgate approve` and `lockgate status MODEL`: the approval and the state of a model, from a terminal."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime

from lockgate.errors import LockgateError
from lockgate.policy.schema import Policy, load_policy
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry, normalise_version
from lockgate.registry.audit import (
    APPROVAL_LOCK_TIMEOUT_S,
    AuditEntry,
    list_audit,
    list_decisions,
    list_intents,
    model_lock,
    record_audit,
    state_engine,
)

log = logging.getLogger(__name__)


class ApprovalError(LockgateError):
    """An approval that cannot be given: an unlisted name, a version that is not awaiting one."""

    code = "approval_refused"


def mlflow_user() -> str | None:
    """The user whose MLflow credentials this process writes tags with, read as the MLflow client reads them:
    MLFLOW_TRACKING_USERNAME, else MLflow's credentials file (~/.mlflow/credentials, `mlflow login`)."""
    from mlflow.utils.credentials import read_mlflow_creds

    user = str(read_mlflow_creds().username or "").strip()
    return user or None


def resolve_approver(by: str | None, credentials_user: str | None) -> str:
    """The approver's name: `--by`, or the MLflow user; never a name other than the one whose credentials write.

    Raises:
        ApprovalError: no name at all, or `--by` names someone other than the MLflow user.
    """
    name = (by or "").strip()
    if credentials_user is None:
        if not name:
            raise ApprovalError("give your name with --by (or set MLFLOW_TRACKING_USERNAME to approve as that user)")
        return name
    if name and name != credentials_user:
        raise ApprovalError(
            f"--by {name!r} is not the MLflow user {credentials_user!r} whose credentials write the approval; "
            "approve as yourself (omit --by), or with that person's own credentials"
        )
    return credentials_user


def approve(
    model_name: str,
    version: str,
    by: str | None,
    *,
    reject: bool = False,
    policy: Policy | None = None,
    registry: ModelRegistry | None = None,
    state_url: str | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """Set the approval tags on the challenger, bound to the evidence its decision page shows.

    The same tags a person can set in the MLflow UI (`lockgate.approval`, `lockgate.approved_by`),
    plus the evidence hash they are given on and the time. Lockgate moves the champion on its next
    check, if the evidence has not changed by then.

    With MLflow credentials (MLFLOW_TRACKING_USERNAME, or MLflow's credentials file), the approver
    is that user: `by` may be omitted and may not name anyone else. Without `approvals.mlflow_auth`
    the approval is recorded as unauthenticated: lockgate reads it back from a tag, and a tag does
    not say who wrote it. With it, the caller's own credentials are required, and the approval is
    read back as lockgate's MLflow app attested it: authenticated (MLflow: <user>), or refused.

    Args:
        model_name: a watched model.
        version: the challenger version.
        by: the approver's name; must be in the policy's approver list (None: the MLflow user).
        reject: reject instead of approve.
        policy: the policy (default: `load_policy()`).
        registry: the registry adapter (default: the configured MLflow).
        state_url: lockgate's state database for the audit row.
        now: the approval time (default: the clock).

    Returns:
        The tags that were set.

    Raises:
        ApprovalError: `by` is not a listed approver (the refusal is recorded), the version is not
            the challenger, or it has no decision (evidence) yet to approve; with
            `approvals.mlflow_auth`, no MLflow credentials, or tags the MLflow server did not
            attest to the caller (set, but they will not count).
    """
    policy = policy or load_policy()
    wm = policy.model(model_name)
    credentials_user = mlflow_user()
    mlflow_auth = policy.approvals.mlflow_auth
    if mlflow_auth and credentials_user is None:
        raise ApprovalError(
            "MLflow authentication is on (approvals.mlflow_auth): approve with your own MLflow credentials "
            "(MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLflow's credentials file); "
            "a name after --by is not enough"
        )
    name = resolve_approver(by, credentials_user)
    registry = registry or ModelRegistry()
    when = now or datetime.now(UTC)
    how = f"`lockgate approve` with the MLflow credentials of {credentials_user}" if credentials_user else None
    v = normalise_version(version) or ""
    value = "rejected" if reject else "approved"
    engine = state_engine(state_url)
    # One answer at a time per model, and none while a promotion of it runs: two approvers
    # answering at once would otherwise interleave their tag writes and leave one person's
    # name on the other's verdict (each tag is its own MLflow write).
    with model_lock(engine, model_name, timeout_s=APPROVAL_LOCK_TIMEOUT_S):
        tags = registry.version_tags(model_name, v)  # raises UnknownModelVersionError first
        evidence = tags.get(T.EVIDENCE)
        if name not in wm.approvers:
            with engine.begin() as conn:
                record_audit(
                    conn,
                    AuditEntry(
                        model_name=model_name,
                        kind="approval_refused",
                        actor=name or "unknown",
                        version=v,
                        evidence_hash=evidence,
                        policy_hash=policy.policy_hash,
                        message=f"{value} with `lockgate approve` by {name!r}, who is not in the approver list",
                        at=when,
                        dedupe_key=f"approval_refused:{model_name}:{v}:{value}:{name}:{evidence}:cli",
                    ),
                )
            raise ApprovalError(
                f"{name!r} is not an approver of {model_name} (approvers: {', '.join(wm.approvers)}); "
                "nothing was set, and the attempt is recorded"
            )
        challenger = registry.state(model_name).challenger
        if challenger != v:
            raise ApprovalError(f"version {v} is not the challenger of {model_name} (the challenger is {challenger})")
        if evidence is None and not reject:
            raise ApprovalError(
                f"{model_name} version {v} has no decision yet: run `lockgate run promotion --model {model_name}` "
                "first; an approval counts only for the evidence it is given on"
            )
        values: dict[str, str | None] = {
            T.APPROVAL: value,
            T.APPROVED_BY: name,
            T.APPROVAL_EVIDENCE: evidence,
            T.APPROVED_AT: when.isoformat(),
        }
        registry.set_tags(model_name, v, values)
        approval_auth = "unauthenticated"
        if mlflow_auth:
            approval_auth = _attested_label(registry, model_name, v, name)
        kind = "approval" if not reject else "rejection"
        with engine.begin() as conn:
            record_audit(
                conn,
                AuditEntry(
                    model_name=model_name,
                    kind=kind,
                    actor=name,
                    version=v,
                    approved_by=name,
                    evidence_hash=evidence,
                    policy_hash=policy.policy_hash,
                    message=f"{value} with {how or '`lockgate approve --by`'}",
                    at=when,
                    dedupe_key=f"{kind}:{model_name}:{v}:{value}:{name}:{evidence}",
                    approval_auth=approval_auth,
                ),
            )
    log.info("%s version %s %s by %s on evidence %s", model_name, v, value, name, evidence)
    return {k: val for k, val in values.items() if val is not None}


def _attested_label(registry: ModelRegistry, model_name: str, version: str, name: str) -> str:
    """`authenticated (MLflow: <name>)` when lockgate's MLflow app attests the tags just written to `name`.

    Raises:
        ApprovalError: the server did not attest them to `name` (not running lockgate's app, another
            write came between): the tags are set, and the next promotion run refuses them.
    """
    from lockgate.registry.adapter import approval_record
    from lockgate.registry.attestation import MLFLOW, require_mlflow_authentication

    written = registry.version_tags(model_name, version)
    judged = require_mlflow_authentication(approval_record(written), written, model_name, version)
    if judged is None or judged.authenticated_as != name:
        why = judged.unverified_reason if judged is not None else "the approval tags are gone"
        raise ApprovalError(f"the approval tags are set, but lockgate will not count them: {why}")
    return f"authenticated ({MLFLOW}: {name})"


def cmd_approve(args: argparse.Namespace) -> int:
    """`lockgate approve MODEL VERSION [--by NAME] [--reject]`."""
    tags = approve(args.model, args.version, args.by, reject=bool(args.reject))
    verb = "rejected" if args.reject else "approved"
    print(f"{args.model} version {args.version} {verb} by {tags[T.APPROVED_BY]}")
    for key, value in tags.items():
        print(f"  {key} = {value}")
    if not args.reject:
        print("lockgate moves the champion alias on its next check (or: lockgate run promotion --model MODEL)")
    return 0


def _fmt_time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def model_status(
    model_name: str,
    *,
    limit: int = 10,
    policy: Policy | None = None,
    registry: ModelRegistry | None = None,
    state_url: str | None = None,
) -> str:
    """Aliases, pending approvals, recent decisions and recent audit events of a model, as text."""
    policy = policy or load_policy()
    registry = registry or ModelRegistry()
    engine = state_engine(state_url)
    state = registry.state(model_name)
    lines = [f"model {model_name}  (policy {policy.policy_hash})"]
    try:
        approvers = policy.model(model_name).approvers
        lines.append(f"approvers: {', '.join(approvers) or '-'}")
    except LockgateError:
        lines.append("not watched by the policy")
    lines.append("aliases:")
    for alias, version in state.as_dict().items():
        if version is None:
            lines.append(f"  {alias:<18} -")
            continue
        tags = registry.version_tags(model_name, version)
        lines.append(
            f"  {alias:<18} version {version:<5} status {tags.get(T.STATUS, '-'):<18} "
            f"evidence {tags.get(T.EVIDENCE, '-')}"
        )
    pending = registry.versions_with_status(model_name, "awaiting_approval")
    lines.append("pending approvals:")
    if not pending:
        lines.append("  none")
    for version, tags in pending:
        lines.append(f"  version {version}: evidence {tags.get(T.EVIDENCE, '-')}")
        if tags.get(T.DECISION_REPORT):
            lines.append(f"    decision page: {tags[T.DECISION_REPORT]}")
        if policy.approvals.mlflow_auth:
            lines.append(f"    approve with your MLflow credentials: lockgate approve {model_name} {version}")
        else:
            lines.append(f"    approve: lockgate approve {model_name} {version} --by <name>")
        lines.append(f"    or set tags {T.APPROVAL}=approved and {T.APPROVED_BY}=<name> in the MLflow UI")
        lines.append("    or, authenticated: trigger lockgate_promotion and answer in Airflow's Required actions")
    unfinished = [i for i in list_intents(engine, model_name, limit=limit) if i.status == "open"]
    if unfinished:
        lines.append("unfinished moves (the next promotion run finishes them):")
    for i in unfinished:
        planned = ", ".join(f"{m.alias} {m.from_version or '-'} -> {m.to_version or '-'}" for m in i.moves)
        lines.append(
            f"  {_fmt_time(i.created_at)}  {i.action} of run {i.run_key}, approved by {i.approved_by or '-'}: "
            f"{i.done} of {len(i.moves)} done ({planned})"
        )
    lines.append("recent decisions:")
    decisions = list_decisions(engine, model_name, limit=limit)
    if not decisions:
        lines.append("  none")
    for d in decisions:
        lines.append(
            f"  {_fmt_time(d.decided_at)}  {d.action:<15} {d.outcome or '-':<10} champion {d.champion or '-'}  "
            f"challenger {d.challenger or '-'}  run {d.run_key}"
        )
    lines.append("recent audit events:")
    events = list_audit(engine, model_name, limit=limit)
    if not events:
        lines.append("  none")
    for e in events:
        move = f" {e.alias}: {e.from_version or '-'} -> {e.to_version or '-'}" if e.alias else ""
        target = f" version {e.version}" if e.version and not e.alias else ""
        auth = f" ({e.approval_auth})" if e.approval_auth and e.kind in ("approval", "rejection") else ""
        lines.append(
            f"  {_fmt_time(e.at)}  {e.kind:<16} by {e.actor}{auth}{move}{target}  evidence {e.evidence_hash or '-'}"
        )
    return "\n".join(lines)


def cmd_model_status(args: argparse.Namespace) -> int:
    """`lockgate status MODEL [--limit N]`."""
    print(model_status(args.model, limit=int(getattr(args, "limit", 10) or 10)))
    return 0
