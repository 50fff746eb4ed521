"""The MLflow Model Registry as lockgate sees it: three aliases, `lockgate.*` tags and approvals.

A thin layer over `MlflowClient` that:

* normalises versions to strings (MLflow returns int from a SQLite store and str over REST);
* makes every write idempotent (an alias already where it should be, or a tag already at its
  value, is not written again), so a rerun changes nothing;
* turns "no such model / version" into `UnknownModelVersionError`, and a server that does not
  answer (after MLflow's bounded retries, `lockgate.registry.client.MLFLOW_RETRY_BUDGET`) into one
  `ServiceUnavailableError` line naming it: transient, so Airflow retries it;
* calls an optional `fault_hook(step)` before and after every write, so tests can stop a
  promotion anywhere (a crash, an outage) and check what the next run makes of it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lockgate.errors import ServiceUnavailableError, UnknownModelVersionError
from lockgate.policy.model import ApprovalRecord
from lockgate.registry import tags as T
from lockgate.registry.attestation import matching_attestation

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def normalise_version(version: Any) -> str | None:
    """A version as the string MLflow's REST API uses (a SQLite store returns int); None stays None."""
    if version is None:
        return None
    text = str(version).strip()
    return text or None


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as lockgate reads it."""

    version: str
    tags: dict[str, str]
    created_at: datetime | None = None
    source: str | None = None


@dataclass(frozen=True)
class RegistryState:
    """Where the three aliases point (None: not set)."""

    champion: str | None = None
    challenger: str | None = None
    previous_champion: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {T.CHAMPION: self.champion, T.CHALLENGER: self.challenger, T.PREVIOUS_CHAMPION: self.previous_champion}


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None  # not ISO: `approval_record` keeps the text, and the engine refuses the approval


def approval_record(version_tags: Mapping[str, str]) -> ApprovalRecord | None:
    """The approval tags of a version; the evidence it was given on defaults to the version's evidence tag.

    A person approving in the MLflow UI sets only `lockgate.approval` and `lockgate.approved_by`: they
    approve what the decision page showed, whose hash is in `lockgate.evidence` until lockgate binds it.
    Where lockgate's MLflow app attested the tags as they are (`attestation.matching_attestation`),
    the evidence and the time missing from them are the ones the server recorded at the write, and
    `attested_by` names the writer (trusted only with `approvals.mlflow_auth`, see
    `attestation.require_mlflow_authentication`).
    """
    value = version_tags.get(T.APPROVAL)
    if value is None:
        return None
    at_text = version_tags.get(T.APPROVED_AT)
    evidence = version_tags.get(T.APPROVAL_EVIDENCE) or version_tags.get(T.EVIDENCE)
    at = _parse_time(at_text)
    attested, _ = matching_attestation(version_tags)
    if attested is not None:
        evidence = version_tags.get(T.APPROVAL_EVIDENCE) or attested.evidence
        at = at if at_text is not None else attested.at
    return ApprovalRecord(
        value=value,
        by=version_tags.get(T.APPROVED_BY),
        evidence_hash=evidence,
        at=at,
        at_text=at_text,
        # A tag says nothing about who wrote it: the name in it is asserted, never verified.
        authenticated_as=None,
        attested_by=attested.user if attested is not None else None,
    )


FaultHook = Callable[[str], None]
"""Called with `before:<write>` and `after:<write>` around each registry write, e.g.
`after:set_alias:champion`, `before:delete_alias:challenger`, `after:set_tag:3:lockgate.status`."""


def _unreachable(exc: BaseException) -> str | None:
    """Why an MLflow error means the server did not answer (None: it answered, with an error)."""
    import requests

    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, requests.exceptions.RequestException):
            return type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    # "failed with error code 403 != 200" is an answer (a refusal, e.g. MLflow authentication's,
    # whose body is not JSON); "failed with exception ..." or a 5xx is not.
    code = re.search(r"failed with error code (\d{3})", text)
    if code is not None and int(code.group(1)) < 500:
        return None
    if text.startswith("API request to") and "failed with" in text:
        return "no answer"
    return None


class ModelRegistry:
    """Aliases and tags of registered models in one MLflow registry."""

    def __init__(
        self, uri: str | None = None, client: MlflowClient | None = None, fault_hook: FaultHook | None = None
    ) -> None:
        """Connect to the registry at `uri` (default: `resolve_mlflow_uri()`); checks an HTTP server answers.

        Args:
            uri: the tracking and registry URI.
            client: an MLflow client to use instead of one made for `uri`.
            fault_hook: called around every write (see `FaultHook`); for tests that inject failures.
        """
        from lockgate.registry.client import bound_mlflow_retries

        bound_mlflow_retries()
        if client is None:
            from mlflow import MlflowClient

            from lockgate.registry.client import configure_mlflow

            uri = configure_mlflow(uri)
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.uri = uri
        self.client = client
        self.fault_hook = fault_hook

    def _call(self, method: str, *args: Any) -> Any:
        """One MLflow client call; a server that does not answer becomes one `ServiceUnavailableError`."""
        from mlflow.exceptions import MlflowException

        try:
            return getattr(self.client, method)(*args)
        except MlflowException as exc:
            reason = _unreachable(exc)
            if reason is None:
                raise
            from lockgate.registry.client import retry_budget_text

            where = getattr(self.client, "_registry_uri", None) or self.uri or "the configured URI"
            raise ServiceUnavailableError(
                "MLflow", str(where), f"{reason} during {method} ({retry_budget_text()})"
            ) from None

    def _write(self, step: str, method: str, *args: Any) -> None:
        if self.fault_hook is not None:
            self.fault_hook(f"before:{step}")
        self._call(method, *args)
        if self.fault_hook is not None:
            self.fault_hook(f"after:{step}")

    # ------------------------------------------------------------------ reads

    def _not_found(self, exc: Exception) -> bool:
        return getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")

    def aliases(self, model_name: str) -> dict[str, str | None]:
        """Every alias of the model and the version it points at (read fresh every call)."""
        from mlflow.exceptions import MlflowException

        try:
            model = self._call("get_registered_model", model_name)
        except MlflowException as exc:
            if self._not_found(exc):
                raise UnknownModelVersionError(f"registered model {model_name!r} does not exist") from None
            raise
        return {a: normalise_version(v) for a, v in (model.aliases or {}).items()}

    def state(self, model_name: str) -> RegistryState:
        """Where `champion`, `challenger` and `previous_champion` point now (read fresh every call)."""
        aliases = self.aliases(model_name)
        return RegistryState(
            champion=aliases.get(T.CHAMPION),
            challenger=aliases.get(T.CHALLENGER),
            previous_champion=aliases.get(T.PREVIOUS_CHAMPION),
        )

    def version(self, model_name: str, version: str) -> VersionInfo:
        """One version: its tags, when it was created and where its artifacts are."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self._call("get_model_version", model_name, str(version))
        except MlflowException as exc:
            if self._not_found(exc) or getattr(exc, "error_code", None) == "INVALID_PARAMETER_VALUE":
                raise UnknownModelVersionError(f"{model_name} version {version} does not exist") from None
            raise
        created = None
        if mv.creation_timestamp:
            created = datetime.fromtimestamp(int(mv.creation_timestamp) / 1000, tz=UTC)
        return VersionInfo(
            version=normalise_version(mv.version) or str(version),
            tags=dict(mv.tags or {}),
            created_at=created,
            source=mv.source,
        )

    def version_tags(self, model_name: str, version: str) -> dict[str, str]:
        """All tags of one version."""
        return self.version(model_name, version).tags

    def approval(self, model_name: str, version: str) -> ApprovalRecord | None:
        return approval_record(self.version_tags(model_name, version))

    def versions_with_status(self, model_name: str, status: str) -> list[tuple[str, dict[str, str]]]:
        """Versions whose `lockgate.status` is `status`, newest first, with their tags."""
        found = self._call(
            "search_model_versions", f"name = '{_quote(model_name)}' and tags.`{T.STATUS}` = '{_quote(status)}'"
        )
        out = [(normalise_version(mv.version) or "", dict(mv.tags or {})) for mv in found]
        return sorted(out, key=lambda item: int(item[0]) if item[0].isdigit() else 0, reverse=True)

    def registered_model_tags(self, model_name: str) -> dict[str, str]:
        return dict(self._call("get_registered_model", model_name).tags or {})

    # ------------------------------------------------------------------ writes (idempotent)

    def set_alias(self, model_name: str, alias: str, version: str) -> bool:
        """Point `alias` at `version`; False when it already pointed there (nothing written)."""
        if self.state(model_name).as_dict().get(alias) == str(version):
            return False
        self._write(f"set_alias:{alias}", "set_registered_model_alias", model_name, alias, str(version))
        log.info("%s: alias %s -> version %s", model_name, alias, version)
        return True

    def delete_alias(self, model_name: str, alias: str) -> bool:
        """Remove `alias`; False when it was not set."""
        if self.state(model_name).as_dict().get(alias) is None:
            return False
        self._write(f"delete_alias:{alias}", "delete_registered_model_alias", model_name, alias)
        log.info("%s: alias %s removed", model_name, alias)
        return True

    def set_tags(self, model_name: str, version: str, values: Mapping[str, str | None]) -> dict[str, str | None]:
        """Set (or, for None, delete) version tags; returns only what actually changed."""
        current = self.version_tags(model_name, version)
        changed: dict[str, str | None] = {}
        for key, value in values.items():
            if value is None:
                if key in current:
                    self._write(
                        f"delete_tag:{version}:{key}", "delete_model_version_tag", model_name, str(version), key
                    )
                    changed[key] = None
            elif current.get(key) != value:
                self._write(f"set_tag:{version}:{key}", "set_model_version_tag", model_name, str(version), key, value)
                changed[key] = value
        return changed

    def delete_tags(self, model_name: str, version: str, keys: Iterable[str]) -> dict[str, str | None]:
        return self.set_tags(model_name, version, dict.fromkeys(keys))

    def set_model_tag(self, model_name: str, key: str, value: str) -> None:
        self._write(f"set_model_tag:{key}", "set_registered_model_tag", model_name, key, value)

    def delete_model(self, model_name: str) -> bool:
        """Delete a registered model with its versions (the demo's clean slate); False when there was none."""
        from mlflow.exceptions import MlflowException

        try:
            self._write("delete_model", "delete_registered_model", model_name)
        except MlflowException as exc:
            if self._not_found(exc):
                return False
            raise
        return True


def _quote(value: str) -> str:
    # MLflow's search filter has no escape for a quote inside a string literal: refuse rather than
    # build a filter that means something else.
    if "'" in value:
        raise UnknownModelVersionError(f"cannot search for a name containing a quote: {value!r}")
    return value
