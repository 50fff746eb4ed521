"""The triggerer's watch on the registry: a new `challenger` becomes an Airflow Asset event within one poll.

`ChallengerAliasTrigger` is the watcher of the `lockgate_challenger_alias` Asset (lockgate.assets):
it runs in Airflow's triggerer, not in a worker slot, reads every watched model's `challenger`
alias each `registration.poll_seconds`, and yields one event per model whose challenger moved to a
version it has not seen there. The versions last seen are kept in the Asset's state store, so a
triggerer restart neither re-fires old challengers nor misses one set while it was down. At its
very first poll (and for a model just added to the policy) there is nothing seen to compare with:
a challenger lockgate has not decided on yet fires, one it has decided on does not.

Airflow runs an Asset's watcher only while a DAG scheduled on that Asset is unpaused
(`lockgate_benchmark` or `lockgate_quality`).

Where the MLflow server can reach Airflow's API server, its registry webhook is the fast path
(lockgate.registry.webhook: the plugin fires the same Asset within a second and records the
version in the same state store, which this poll reads each time, so nothing is reported twice).
The poll works on every registry lockgate supports (an `mlflow server` of any 3.x, one without
webhooks, the embedded SQLite store of the demo) and catches a lost delivery; one poll is one small
REST read per watched model.

Importing this module must stay cheap: DAG files import it at parse time through lockgate.assets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

STATE_KEY = "challengers"
# When the policy cannot be read or the registry answers nothing, the next try waits this long.
RETRY_SECONDS = 30.0


class ChallengerAliasTrigger(BaseEventTrigger):
    """Fires `{"model", "version", "previous_version", "seen_at", "source"}` for each new challenger; never ends."""

    def __init__(self, retry_seconds: float = RETRY_SECONDS) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.retry_seconds = retry_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"retry_seconds": self.retry_seconds})

    async def _load_seen(self) -> dict[str, str | None] | None:
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return None
        try:
            value = await store.aget(STATE_KEY)
        except Exception as exc:  # noqa: BLE001 - without the store the watch starts from what it sees now
            self.log.warning("cannot read the watch's state (%s): the aliases seen now are the baseline", exc)
            return None
        return {str(k): (None if v is None else str(v)) for k, v in value.items()} if isinstance(value, dict) else None

    async def _save_seen(self, seen: dict[str, str | None]) -> None:
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return
        try:
            await store.aset(STATE_KEY, dict(seen))
        except Exception as exc:  # noqa: BLE001 - kept in memory; a restart would take a new baseline
            self.log.warning("cannot save the watch's state: %s", exc)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from lockgate.registry.registration import (
            load_watch_config,
            new_challengers,
            read_challengers,
            undecided_versions,
        )

        seen: dict[str, str | None] | None = None
        while True:
            # The policy is read at each poll: a model added to it is watched without a restart.
            try:
                config = await asyncio.to_thread(load_watch_config)
            except Exception as exc:  # noqa: BLE001 - an invalid policy pauses the watch, it does not end it
                self.log.warning("registration watch paused, the policy cannot be read: %s", exc)
                await asyncio.sleep(self.retry_seconds)
                continue
            if not config.enabled:
                await asyncio.sleep(config.poll_seconds)
                continue
            try:
                # MlflowClient blocks: keep the triggerer's event loop free for other triggers.
                current = await asyncio.to_thread(read_challengers, config.tracking_uri, config.model_names)
                # The state is read at each poll, after the registry: the plugin's webhook receiver records
                # there what it reported, and a version it recorded while this poll read the registry must
                # not be reported twice (never raises: without the store, what is seen now is the baseline).
                stored = await self._load_seen()
                if stored is not None:
                    seen = stored if seen is None else {**seen, **stored}
                first_sight = {m: v for m, v in current.items() if v is not None and (seen is None or m not in seen)}
                undecided = set()
                if first_sight:
                    undecided = await asyncio.to_thread(undecided_versions, config.tracking_uri, first_sight)
            except Exception as exc:  # noqa: BLE001 - a registry outage is retried at the next poll
                self.log.warning("registration watch: cannot read the registry at %s: %s", config.tracking_uri, exc)
                await asyncio.sleep(config.poll_seconds)
                continue
            if seen is None:
                seen = {}
            events = new_challengers(seen, current, undecided)
            for payload in events:
                self.log.info("new challenger: %s version %s", payload["model"], payload["version"])
                # Event before state: a crash in between fires the event again (the evaluation is
                # idempotent), never loses it.
                yield TriggerEvent(payload)  # type: ignore[no-untyped-call]
            if current != seen:
                seen = {**seen, **current}
                await self._save_seen(seen)
            await asyncio.sleep(config.poll_seconds)
