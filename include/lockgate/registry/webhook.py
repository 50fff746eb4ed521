"""MLflow's registry webhooks as the fast path of evaluation on registration.

MLflow 3 servers can POST `model_version_alias.created` to a URL, signed with a shared secret
(HMAC-SHA256 over `<delivery id>.<timestamp>.<body>`, header `X-MLflow-Signature: v1,<base64>`).
Lockgate's plugin receives it (lockgate.registry.webhook_receiver) and fires the same
`lockgate_challenger_alias` Asset the triggerer's poll fires (lockgate.registry.alias_watch): the
webhook answers within a second, the poll is the safety net for a server without webhooks or a
lost delivery. Both record the version they reported in the Asset's state store, so a challenger
is reported once whichever path sees it first.

Pure functions here (signature, payload), plus `ensure_mlflow_webhook`, which registers the webhook
in MLflow once (idempotent: it updates the one lockgate made, by name).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from lockgate.errors import LockgateError
from lockgate.registry import tags as T

SOURCE = "mlflow.webhook"
WEBHOOK_NAME = "lockgate-challenger-alias"
EVENT = "model_version_alias.created"
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
# A signed delivery older (or newer) than this is refused: a captured request cannot be replayed later.
MAX_SKEW_S = 300


class WebhookRejected(LockgateError):
    """A delivery that is not from the registry lockgate trusts (no or bad signature, stale)."""

    code = "webhook_rejected"


def signature_for(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """MLflow's signature of a delivery (`v1,<base64 HMAC-SHA256>`)."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_delivery(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """Raise `WebhookRejected` unless the delivery is signed with `secret` and recent."""
    lower = {k.lower(): v for k, v in headers.items()}
    signature = lower.get(SIGNATURE_HEADER.lower(), "")
    timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    delivery_id = lower.get(DELIVERY_ID_HEADER.lower(), "")
    if not (signature and timestamp and delivery_id):
        raise WebhookRejected("unsigned delivery: the MLflow webhook must be created with lockgate's secret")
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookRejected(f"{TIMESTAMP_HEADER} is not a Unix time: {timestamp[:40]!r}") from None
    if abs(now - sent) > MAX_SKEW_S:
        raise WebhookRejected(f"delivery time {sent} is more than {MAX_SKEW_S} s from now: refused as a replay")
    if not hmac.compare_digest(signature, signature_for(secret, delivery_id, timestamp, body)):
        raise WebhookRejected("bad signature: not signed with lockgate's webhook secret")


def challenger_from_delivery(
    message: Any, watched: Collection[str], now: datetime | None = None
) -> tuple[dict[str, Any] | None, str]:
    """(event payload, why): the payload when the delivery sets `challenger` on a watched model, else None."""
    if not isinstance(message, dict):
        return None, "the body is not a JSON object"
    if (message.get("entity"), message.get("action")) != ("model_version_alias", "created"):
        return None, f"event {message.get('entity')}.{message.get('action')} is not {EVENT}"
    data = message.get("data")
    if not isinstance(data, dict):
        return None, "no `data` object"
    name, alias, version = data.get("name"), data.get("alias"), data.get("version")
    if not (isinstance(name, str) and isinstance(alias, str) and version is not None):
        return None, "`data` lacks name, alias or version"
    if alias != T.CHALLENGER:
        return None, f"alias {alias!r} is not {T.CHALLENGER!r}"
    if name not in watched:
        return None, f"model {name!r} is not watched by the policy"
    at = (now or datetime.now(UTC)).isoformat()
    payload = {"model": name, "version": str(version), "previous_version": None, "seen_at": at, "source": SOURCE}
    return payload, "a new challenger"


def ensure_mlflow_webhook(tracking_uri: str, url: str, secret: str) -> str:
    """Create (or update) lockgate's webhook in the MLflow server; returns its id (idempotent)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    existing = [w for w in client.list_webhooks() if w.name == WEBHOOK_NAME]
    if existing:
        hook = client.update_webhook(existing[0].webhook_id, url=url, events=[EVENT], secret=secret, status="ACTIVE")
    else:
        hook = client.create_webhook(
            name=WEBHOOK_NAME,
            url=url,
            events=[EVENT],
            secret=secret,
            description="lockgate: evaluate a new challenger at once (see lockgate.registry.webhook)",
        )
    return str(hook.webhook_id)
