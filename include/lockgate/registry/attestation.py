"""Approval attestations: who the MLflow server says wrote a version's approval tags.

MLflow keeps no author for a tag, so a `lockgate.approved_by` tag alone is a name anyone allowed to
write tags can type. lockgate's MLflow server app (`lockgate.registry.mlflow_app`, run as
`mlflow server --app-name lockgate-auth`) is MLflow's basic-auth app plus one rule: after each
accepted write or deletion of an approval tag (`tags.APPROVAL_TAGS`) it writes
`lockgate.approval_attestation` itself, a JSON record of

* the authenticated MLflow user who made the write and their permission on the registered model
  (`EDIT`, `MANAGE`, ..., or `admin`),
* the model and version, the approval tags as they stood after the write, the version's
  `lockgate.evidence` then (what the approver saw on the decision page) and the server's time;

and it answers 403 to any client that writes or deletes that tag, or creates a version with it.

An approval read from tags is attested when such a record exists for this model and version and
its tags equal the version's approval tags now: no approval tag changed since the write it
records (a later write through the server would have replaced it; a write around the server,
straight into its database, leaves a record that no longer matches). With `approvals.mlflow_auth`
on, `require_mlflow_authentication` counts an approval only when the attested writer is the
approver named in `lockgate.approved_by` and held `COUNTED_PERMISSIONS` on the model.

Pure: no MLflow, no clock; the server app and the promotion job supply both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lockgate.policy.model import ApprovalRecord
from lockgate.registry import tags as T

ATTESTATION_FORMAT = 1
ADMIN = "admin"
"""The permission an attestation records for an MLflow admin (who may do anything on every model)."""
COUNTED_PERMISSIONS = ("EDIT", "MANAGE", ADMIN)
"""The permissions on the registered model an approver must have had when writing the tags: EDIT is
what MLflow itself asks of a user who moves the model's aliases, so an approver may do no less by
hand than by approving. READ and USE never count (with MLflow's default `default_permission = READ`
a user needs a grant on the model)."""
ATTESTED_CLOCK_SKEW = timedelta(minutes=5)
"""How far an `approved_at` may lie after the server's time of the attested write (the approver's clock)."""
MLFLOW = "MLflow"


@dataclass(frozen=True)
class Attestation:
    """What the MLflow server recorded after the latest accepted write of an approval tag."""

    model: str
    version: str
    user: str
    permission: str
    at: datetime
    tags: dict[str, str] = field(default_factory=dict)
    """The approval tags present after the write (absent ones left out)."""
    evidence: str | None = None
    """The version's `lockgate.evidence` at the write: the evidence the approver was shown."""

    def to_json(self) -> str:
        """The tag value the server writes (compact, keys sorted)."""
        payload: dict[str, Any] = {
            "format": ATTESTATION_FORMAT,
            "model": self.model,
            "version": self.version,
            "user": self.user,
            "permission": self.permission,
            "at": self.at.astimezone(UTC).isoformat(),
            "tags": dict(sorted(self.tags.items())),
            "evidence": self.evidence,
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def approval_tags(version_tags: Mapping[str, str]) -> dict[str, str]:
    """The approval tags present among a version's tags."""
    return {k: version_tags[k] for k in T.APPROVAL_TAGS if k in version_tags}


def parse_attestation(text: str | None) -> Attestation | None:
    """The attestation in a tag value; None when it is absent, not JSON, or lacks a field."""
    if not (text or "").strip():
        return None
    try:
        data = json.loads(text or "")
        tags = data["tags"]
        at = datetime.fromisoformat(str(data["at"]))
        if data.get("format") != ATTESTATION_FORMAT or not isinstance(tags, dict) or at.tzinfo is None:
            return None
        evidence = data.get("evidence")
        return Attestation(
            model=str(data["model"]),
            version=str(data["version"]),
            user=str(data["user"]),
            permission=str(data["permission"]),
            at=at,
            tags={str(k): str(v) for k, v in tags.items()},
            evidence=None if evidence is None else str(evidence),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def matching_attestation(
    version_tags: Mapping[str, str], model: str | None = None, version: str | None = None
) -> tuple[Attestation | None, str]:
    """The attestation that vouches for the version's approval tags as they are now, or None and why not.

    Args:
        version_tags: all tags of the version.
        model: the registered model (None: not checked).
        version: the version (None: not checked).
    """
    text = version_tags.get(T.APPROVAL_ATTESTATION)
    if text is None:
        return None, (
            f"no {T.APPROVAL_ATTESTATION} tag: the tags were not written through an MLflow server running "
            "lockgate's app (mlflow server --app-name lockgate-auth)"
        )
    found = parse_attestation(text)
    if found is None:
        return None, f"{T.APPROVAL_ATTESTATION} is not an attestation lockgate's MLflow app writes"
    if model is not None and found.model != model or version is not None and found.version != str(version):
        return None, f"{T.APPROVAL_ATTESTATION} attests {found.model} version {found.version}, not this version"
    if found.tags != approval_tags(version_tags):
        return None, (
            f"the approval tags changed after the write the MLflow server attested (by {found.user}): "
            "written around the server"
        )
    return found, ""


def require_mlflow_authentication(
    record: ApprovalRecord | None, version_tags: Mapping[str, str], model: str, version: str
) -> ApprovalRecord | None:
    """The approval read from tags, judged as `approvals.mlflow_auth` asks.

    Authenticated (`authenticated_as`, `authenticated_via="MLflow"`) when the MLflow server attests
    that the approver named in `lockgate.approved_by` wrote the approval tags as they are now, with
    a permission in `COUNTED_PERMISSIONS`, and `approved_at` is no later than the server's time of
    that write (beyond `ATTESTED_CLOCK_SKEW`). Otherwise `unverified_reason` says why, and the
    engine refuses it. An approval another system already vouched for (Airflow's inbox) is left as it is.

    Args:
        record: the approval tags as `approval_record` read them (None: no approval).
        version_tags: all tags of the version.
        model: the registered model.
        version: the version.
    """
    if record is None or record.authenticated_as is not None:
        return record
    found, problem = matching_attestation(version_tags, model, version)
    if found is None:
        return record.model_copy(update={"unverified_reason": f"MLflow authentication is on and {problem}"})
    reason = _refusal(found, record, model)
    if reason is not None:
        return record.model_copy(update={"unverified_reason": reason})
    return record.model_copy(update={"authenticated_as": found.user, "authenticated_via": MLFLOW})


def _refusal(found: Attestation, record: ApprovalRecord, model: str) -> str | None:
    """Why an attested approval does not count (None: it does)."""
    by = (record.by or "").strip()
    if found.user != by:
        return f"{T.APPROVED_BY} {by!r} was written by the MLflow user {found.user!r}"
    if found.permission not in COUNTED_PERMISSIONS:
        return (
            f"the MLflow user {found.user!r} had {found.permission} permission on {model}; "
            f"{', '.join(COUNTED_PERMISSIONS)} counts"
        )
    if record.at is not None and _aware(record.at) - _aware(found.at) > ATTESTED_CLOCK_SKEW:
        return (
            f"{T.APPROVED_AT} {_aware(record.at).isoformat()} is later than the MLflow server's time of the "
            f"write, {_aware(found.at).isoformat()}"
        )
    return None


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
