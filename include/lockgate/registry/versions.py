"""Which versions the jobs work on: aliases and version numbers resolved, one way, through `ModelRegistry`.

* `resolve_versions`: the challenger and the champion a benchmark compares (explicit versions or
  aliases win, else the two aliases);
* `registry_context`: what the drift and live jobs need to place their windows (the champion, when
  it was promoted, the challenger).

The quality job reads the aliases with `ModelRegistry.state` directly. Cheap to import: MLflow is
imported when the registry is first called.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lockgate.errors import UnknownModelVersionError
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedVersion:
    """One side of a comparison: its role, registry version, and how it was named."""

    role: str  # "challenger" or "champion"
    version: str
    requested: str  # the alias or version the caller gave

    def label(self) -> str:
        return f"{self.role} v{self.version}"


def resolve_one(registry: ModelRegistry, model_name: str, ref: str, role: str) -> ResolvedVersion:
    """A version number or an alias (`champion`, `challenger`, ...) to a registered version.

    Raises:
        UnknownModelVersionError: the model, version or alias does not exist.
    """
    ref = str(ref).strip()
    what = f"version {ref}" if ref.isdigit() else f"alias {ref!r}"
    try:
        version = registry.version(model_name, ref).version if ref.isdigit() else registry.aliases(model_name).get(ref)
    except UnknownModelVersionError as exc:
        raise UnknownModelVersionError(f"model {model_name!r} has no {what} in the registry ({exc})") from None
    if version is None:
        raise UnknownModelVersionError(f"model {model_name!r} has no {what} in the registry")
    return ResolvedVersion(role, version, ref)


def resolve_versions(
    model_name: str, versions: Sequence[str] | None, registry: ModelRegistry | None = None
) -> list[ResolvedVersion]:
    """The challenger and the champion, in that order.

    Args:
        model_name: the registered model.
        versions: None for the `challenger` and `champion` aliases; else one or two version
            numbers or aliases, the first the challenger and the second the champion.
        registry: the registry to read (default: the configured one).

    Returns:
        One entry (challenger only: there is no champion yet) or two.

    Raises:
        UnknownModelVersionError: the challenger cannot be resolved, or an explicit champion cannot.
    """
    if versions is not None:
        refs = [str(v).strip() for v in versions if str(v).strip()]
        if not 1 <= len(refs) <= 2:
            raise UnknownModelVersionError(
                f"give one or two versions (challenger, then champion), got {list(versions)!r}"
            )
        registry = registry or ModelRegistry()
        out = [resolve_one(registry, model_name, refs[0], T.CHALLENGER)]
        if len(refs) == 2:
            out.append(resolve_one(registry, model_name, refs[1], T.CHAMPION))
        return out
    registry = registry or ModelRegistry()
    out = [resolve_one(registry, model_name, T.CHALLENGER, T.CHALLENGER)]
    try:
        out.append(resolve_one(registry, model_name, T.CHAMPION, T.CHAMPION))
    except UnknownModelVersionError:
        # A first version has no champion to compare with: measured alone, ratios absent.
        log.info("model %s has no champion alias: benchmarking the challenger alone", model_name)
    return out


@dataclass(frozen=True)
class RegistryContext:
    """What the registry says about the model right now (all None when it is not registered)."""

    champion_version: str | None = None
    champion_promoted_at: datetime | None = None
    challenger_version: str | None = None
    # Only the `lockgate.promoted_at` tag: a champion_baseline reference is never anchored at a creation time.
    champion_promoted_tag: datetime | None = None


def parse_promoted_at(text: str | None) -> datetime | None:
    """The `lockgate.promoted_at` tag as an aware time; None (with a warning) when it is not ISO."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        log.warning("ignoring unparseable %s %r", T.PROMOTED_AT, text)
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def registry_context(model_name: str, registry: ModelRegistry | None = None) -> RegistryContext:
    """Champion and challenger versions, and when the champion was promoted (`lockgate.promoted_at`,
    else the version's creation time). A model the registry does not know has none of them."""
    registry = registry or ModelRegistry()
    try:
        state = registry.state(model_name)
    except UnknownModelVersionError:
        return RegistryContext()
    promoted_at = tagged = None
    if state.champion is not None:
        champion = registry.version(model_name, state.champion)
        promoted_at = tagged = parse_promoted_at(champion.tags.get(T.PROMOTED_AT))
        if promoted_at is None:
            promoted_at = champion.created_at
    return RegistryContext(
        champion_version=state.champion,
        champion_promoted_at=promoted_at,
        champion_promoted_tag=tagged,
        challenger_version=state.challenger,
    )
