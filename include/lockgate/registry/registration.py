"""Evaluation on registration: which challengers are new, and which models an Asset-triggered run serves.

The triggerer's `ChallengerAliasTrigger` (lockgate.registry.alias_watch) reads each watched model's
`challenger` alias every `registration.poll_seconds` and, when it points at a version it has not
seen there, fires an event on the `lockgate_challenger_alias` Asset. The benchmark and quality DAGs
are scheduled on that Asset (besides their cron), and their `watched_models` task narrows such a
run to the models named by its triggering events. Pure functions here; the MLflow read is one
small blocking function the trigger runs in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lockgate.registry import tags as T

SOURCE = "lockgate.alias_watch"


@dataclass(frozen=True)
class WatchConfig:
    """What one poll needs, read from the policy and the environment at each poll."""

    enabled: bool
    poll_seconds: float
    tracking_uri: str
    model_names: tuple[str, ...]


def load_watch_config() -> WatchConfig:
    """The policy's `registration` section, its watched models and the MLflow URI (blocking)."""
    from lockgate.policy.schema import load_policy
    from lockgate.settings import get_settings, resolve_mlflow_uri

    policy = load_policy()
    settings = get_settings()
    return WatchConfig(
        enabled=policy.registration.watch,
        poll_seconds=policy.registration.poll_seconds,
        tracking_uri=settings.mlflow_tracking_uri or resolve_mlflow_uri(settings),
        model_names=tuple(m.name for m in policy.models),
    )


def read_challengers(tracking_uri: str, model_names: Iterable[str]) -> dict[str, str | None]:
    """Each model's `challenger` version now; None for a model without one or not registered yet (blocking)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found: dict[str, str | None] = {}
    for name in model_names:
        try:
            aliases = client.get_registered_model(name).aliases or {}
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            aliases = {}
        version = aliases.get(T.CHALLENGER)
        found[name] = str(version) if version is not None else None
    return found


def undecided_versions(tracking_uri: str, versions: Mapping[str, str]) -> set[str]:
    """The models among `versions` (model -> version) whose version lockgate has not decided on yet (blocking).

    Undecided: no `lockgate.evidence` tag and a `lockgate.status` that is absent or `evaluating`.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    undecided: set[str] = set()
    for model, version in versions.items():
        tags = dict(client.get_model_version(model, version).tags or {})
        if T.EVIDENCE not in tags and tags.get(T.STATUS) in (None, "", "evaluating"):
            undecided.add(model)
    return undecided


def new_challengers(
    seen: Mapping[str, str | None],
    current: Mapping[str, str | None],
    undecided: Iterable[str] = (),
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """One event payload per model whose `challenger` now points at another version than when last seen.

    A model absent from `seen` (the watch's first poll, or a model just added to the policy) has no
    last-seen version: its challenger is new only when lockgate has not decided on it yet (the
    models in `undecided`), so a first start does not re-evaluate every standing challenger, and a
    challenger set just before the watch started is not missed. An alias removed is remembered as
    None, so setting it again is new.
    """
    at = (now or datetime.now(UTC)).isoformat()
    first_sight = set(undecided)
    events: list[dict[str, Any]] = []
    for model, version in sorted(current.items()):
        if version is None:
            continue
        if model not in seen:
            if model not in first_sight:
                continue
        elif version == seen[model]:
            continue
        events.append(
            {
                "model": model,
                "version": version,
                "previous_version": seen.get(model),
                "seen_at": at,
                "source": SOURCE,
            }
        )
    return events


def models_from_registration_events(triggering_asset_events: Any) -> list[str] | None:
    """The models named by this run's `lockgate_challenger_alias` events; None when no such event triggered it.

    `triggering_asset_events` is Airflow's context entry (Asset -> events); an event fired by the
    watcher carries `{"from_trigger": true, "payload": {...}}`, one posted through the REST API
    (`POST /api/v2/assets/events`) may carry the payload's keys at the top level.
    """
    if not triggering_asset_events:
        return None
    models: list[str] = []
    registration = False
    for asset, events in dict(triggering_asset_events).items():
        if getattr(asset, "name", None) != "lockgate_challenger_alias":
            continue
        registration = True
        for event in events:
            extra = getattr(event, "extra", None) or {}
            payload = extra.get("payload") if isinstance(extra.get("payload"), dict) else extra
            model = payload.get("model") if isinstance(payload, dict) else None
            if isinstance(model, str) and model and model not in models:
                models.append(model)
    return models if registration else None
