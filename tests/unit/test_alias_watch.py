"""The registry watch's poll against the webhook receiver: one event per new challenger, never two."""

from __future__ import annotations

import asyncio

import pytest

from lockgate.devtools.testing.registry import MemoryStateStore
from lockgate.registry import registration
from lockgate.registry.alias_watch import STATE_KEY, ChallengerAliasTrigger


def test_a_challenger_the_webhook_recorded_during_a_poll_is_not_reported_again(monkeypatch) -> None:
    """The webhook receiver records version 2 (and fires the Asset itself) while a poll reads the registry:
    that poll sees version 2 and must not fire it a second time; a later move to 3 fires once."""
    store = MemoryStateStore({STATE_KEY: {"m": "1"}})
    reads: list[dict[str, str | None]] = []

    def read_challengers(tracking_uri: str, model_names: tuple[str, ...]) -> dict[str, str | None]:
        poll = len(reads) + 1
        if poll == 2:  # the alias moves to 2 and the receiver records it, between the poll's steps
            store.values[STATE_KEY] = {"m": "2"}
        now = {"m": {1: "1", 2: "2"}.get(poll, "3")}
        reads.append(now)
        return now

    config = registration.WatchConfig(enabled=True, poll_seconds=0, tracking_uri="unused", model_names=("m",))
    monkeypatch.setattr(registration, "load_watch_config", lambda: config)
    monkeypatch.setattr(registration, "read_challengers", read_challengers)
    monkeypatch.setattr(registration, "undecided_versions", lambda uri, versions: set(versions))

    async def watch() -> list[dict]:
        trigger = ChallengerAliasTrigger()
        trigger.asset_state_store = store  # type: ignore[attr-defined]
        stream = trigger.run()
        events: list[dict] = []

        async def consume() -> None:
            async for event in stream:
                events.append(event.payload)

        consumer = asyncio.create_task(consume())
        try:
            while len(reads) < 6:
                await asyncio.sleep(0.01)
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await stream.aclose()
        return events

    events = asyncio.run(watch())
    assert [(e["model"], e["version"], e["previous_version"]) for e in events] == [("m", "3", "2")]
    assert store.values[STATE_KEY] == {"m": "3"}


@pytest.mark.parametrize("stored", [None, {}])
def test_without_a_state_the_first_poll_reports_only_an_undecided_challenger(monkeypatch, stored) -> None:
    store = MemoryStateStore({} if stored is None else {STATE_KEY: stored})
    reads: list[int] = []

    def read_challengers(tracking_uri: str, model_names: tuple[str, ...]) -> dict[str, str | None]:
        reads.append(1)
        return {"decided": "4", "undecided": "7", "none": None}

    config = registration.WatchConfig(
        enabled=True, poll_seconds=0, tracking_uri="unused", model_names=("decided", "undecided", "none")
    )
    monkeypatch.setattr(registration, "load_watch_config", lambda: config)
    monkeypatch.setattr(registration, "read_challengers", read_challengers)
    monkeypatch.setattr(registration, "undecided_versions", lambda uri, versions: {"undecided"} & set(versions))

    async def first_events() -> list[dict]:
        trigger = ChallengerAliasTrigger()
        trigger.asset_state_store = store  # type: ignore[attr-defined]
        stream = trigger.run()
        events = []
        try:
            events.append((await asyncio.wait_for(anext(stream), 5)).payload)
            while len(reads) < 3:  # two more polls: nothing more
                events.append((await asyncio.wait_for(anext(stream), 0.2)).payload)
        except TimeoutError:
            pass
        finally:
            await stream.aclose()
        return events

    events = asyncio.run(first_events())
    assert [(e["model"], e["version"], e["previous_version"]) for e in events] == [("undecided", "7", None)]
