"""Which challengers are new, and which models a run triggered by the registry watch serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from lockgate.registry.registration import models_from_registration_events, new_challengers

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def test_a_challenger_moved_to_another_version_is_new_and_nothing_else_is() -> None:
    seen = {"a": "3", "b": None, "c": "1", "d": "2"}
    current = {"a": "4", "b": "1", "c": "1", "d": None, "e": "7"}
    events = new_challengers(seen, current, now=NOW)
    assert [(e["model"], e["version"], e["previous_version"]) for e in events] == [("a", "4", "3"), ("b", "1", None)]
    assert events[0]["seen_at"] == NOW.isoformat()
    assert events[0]["source"] == "lockgate.alias_watch"


def test_at_first_sight_only_a_challenger_lockgate_has_not_decided_on_is_new() -> None:
    # The watch's first poll, or a model just added to the policy: no last-seen version to compare.
    assert new_challengers({}, {"a": "1", "b": "2"}, now=NOW) == []
    events = new_challengers({"c": "1"}, {"a": "1", "b": "2", "c": "1"}, undecided={"b"}, now=NOW)
    assert [(e["model"], e["version"], e["previous_version"]) for e in events] == [("b", "2", None)]


@dataclass(frozen=True)
class _Asset:
    name: str


@dataclass
class _Event:
    extra: dict = field(default_factory=dict)


def test_a_run_triggered_by_the_watch_serves_the_models_its_events_name() -> None:
    watch = _Asset("lockgate_challenger_alias")
    events = {
        watch: [
            _Event({"from_trigger": True, "payload": {"model": "support-bot", "version": "4"}}),
            _Event({"from_trigger": True, "payload": {"model": "support-bot", "version": "5"}}),
            _Event({"model": "search-ranker"}),  # posted through Airflow's REST API
            _Event({"unrelated": 1}),
        ]
    }
    assert models_from_registration_events(events) == ["support-bot", "search-ranker"]


def test_a_scheduled_or_other_asset_run_is_not_narrowed() -> None:
    assert models_from_registration_events(None) is None
    assert models_from_registration_events({}) is None
    evidence = {_Asset("lockgate_benchmark_summary"): [_Event({"model": "support-bot"})]}
    assert models_from_registration_events(evidence) is None
