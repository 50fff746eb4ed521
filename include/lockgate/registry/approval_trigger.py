"""A deferrable wait for an approval: polls the challenger's tags from Airflow's triggerer, not a worker slot.

The trigger fires when a person set `lockgate.approval` (any value: the promotion job judges it),
when the challenger alias or the version's evidence changed (a new decision is due), or when the
deadline passes (the next scheduled run checks again). It never waits without a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from lockgate.registry import tags as T


def check_approval_tags(tracking_uri: str, model_name: str, version: str, evidence_hash: str) -> dict[str, Any] | None:
    """One poll (blocking; run in a thread): an event payload when the wait is over, else None."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    model = client.get_registered_model(model_name)
    challenger = (model.aliases or {}).get(T.CHALLENGER)
    base = {"model": model_name, "version": version}
    if challenger is None or str(challenger) != version:
        return {**base, "status": "changed", "reason": f"the challenger is now {challenger}"}
    tags = dict(client.get_model_version(model_name, version).tags or {})
    if tags.get(T.APPROVAL, "").strip():
        return {**base, "status": "answered", "value": tags[T.APPROVAL], "by": tags.get(T.APPROVED_BY)}
    if tags.get(T.EVIDENCE) != evidence_hash:
        return {**base, "status": "changed", "reason": "the version was decided on other evidence since"}
    return None


class ApprovalTrigger(BaseTrigger):
    """Fires once: an approval tag appeared, the challenger or its evidence changed, or the deadline passed."""

    def __init__(
        self,
        model_name: str,
        version: str,
        evidence_hash: str,
        tracking_uri: str,
        deadline: str,
        poll_seconds: float = 30.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.model_name = model_name
        self.version = version
        self.evidence_hash = evidence_hash
        self.tracking_uri = tracking_uri
        self.deadline = deadline
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model_name": self.model_name,
                "version": self.version,
                "evidence_hash": self.evidence_hash,
                "tracking_uri": self.tracking_uri,
                "deadline": self.deadline,
                "poll_seconds": self.poll_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = datetime.fromisoformat(self.deadline)
        while True:
            try:
                # MlflowClient blocks: keep the triggerer's event loop free for other triggers.
                found = await asyncio.to_thread(
                    check_approval_tags, self.tracking_uri, self.model_name, self.version, self.evidence_hash
                )
            except Exception as exc:  # noqa: BLE001 - a registry blip is retried at the next poll, until the deadline
                self.log.warning("approval poll of %s %s failed: %s", self.model_name, self.version, exc)
                found = None
            if found is not None:
                yield TriggerEvent(found)  # type: ignore[no-untyped-call]
                return
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                timeout = {"model": self.model_name, "version": self.version, "status": "timeout"}
                yield TriggerEvent({**timeout, "deadline": self.deadline})  # type: ignore[no-untyped-call]
                return
            await asyncio.sleep(min(self.poll_seconds, remaining))
