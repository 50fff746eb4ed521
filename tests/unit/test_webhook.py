"""MLflow's registry webhook: who is trusted, and which deliveries mean a new challenger."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from lockgate.registry.webhook import (
    WebhookRejected,
    challenger_from_delivery,
    signature_for,
    verify_delivery,
)

SECRET = "s3cret-of-the-stack"
NOW = 1_765_000_000.0
BODY = json.dumps(
    {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "x",
        "data": {"name": "bot", "alias": "challenger", "version": "7"},
    }
).encode()


def _headers(signature: str, timestamp: str = str(int(NOW)), delivery: str = "d-1") -> dict[str, str]:
    return {"X-MLflow-Signature": signature, "X-MLflow-Timestamp": timestamp, "X-MLflow-Delivery-Id": delivery}


def test_a_delivery_signed_the_way_mlflow_signs_is_trusted() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    mlflow_signature = _generate_hmac_signature(SECRET, "d-1", str(int(NOW)), BODY.decode())
    assert signature_for(SECRET, "d-1", str(int(NOW)), BODY) == mlflow_signature
    verify_delivery(SECRET, _headers(mlflow_signature), BODY, now=NOW + 10)
    # Header names are case-insensitive (proxies and ASGI servers lower-case them).
    verify_delivery(SECRET, {k.lower(): v for k, v in _headers(mlflow_signature).items()}, BODY, now=NOW)


@pytest.mark.parametrize(
    ("headers", "body", "now", "said"),
    [
        ({}, BODY, NOW, "unsigned delivery"),
        (_headers(signature_for("another-secret", "d-1", str(int(NOW)), BODY)), BODY, NOW, "bad signature"),
        (_headers(signature_for(SECRET, "d-1", str(int(NOW)), BODY)), BODY.replace(b"7", b"8"), NOW, "bad signature"),
        (_headers(signature_for(SECRET, "d-1", str(int(NOW)), BODY)), BODY, NOW + 301, "replay"),
        (_headers(signature_for(SECRET, "d-1", "soon", BODY), timestamp="soon"), BODY, NOW, "not a Unix time"),
    ],
    ids=["unsigned", "other-secret", "tampered-body", "stale", "bad-timestamp"],
)
def test_an_unsigned_forged_tampered_or_stale_delivery_is_refused(headers, body, now, said) -> None:
    with pytest.raises(WebhookRejected, match=said):
        verify_delivery(SECRET, headers, body, now=now)


def test_setting_challenger_on_a_watched_model_is_a_new_challenger() -> None:
    at = datetime(2026, 12, 6, 9, tzinfo=UTC)
    payload, why = challenger_from_delivery(json.loads(BODY), {"bot"}, now=at)
    assert payload == {
        "model": "bot",
        "version": "7",
        "previous_version": None,
        "seen_at": at.isoformat(),
        "source": "mlflow.webhook",
    }
    assert why == "a new challenger"


@pytest.mark.parametrize(
    ("message", "said"),
    [
        ({"entity": "model_version", "action": "created", "data": {}}, "is not model_version_alias.created"),
        (
            {
                "entity": "model_version_alias",
                "action": "created",
                "data": {"name": "bot", "alias": "champion", "version": "7"},
            },
            "'champion' is not",
        ),
        (
            {
                "entity": "model_version_alias",
                "action": "created",
                "data": {"name": "other", "alias": "challenger", "version": "1"},
            },
            "not watched",
        ),
        ({"entity": "model_version_alias", "action": "created", "data": "x"}, "no `data`"),
        ({"entity": "model_version_alias", "action": "created", "data": {"name": "bot"}}, "lacks"),
        (["not", "an", "object"], "not a JSON object"),
    ],
    ids=["other-event", "other-alias", "unwatched", "no-data", "incomplete", "not-object"],
)
def test_every_other_delivery_is_ignored_with_a_reason(message, said) -> None:
    payload, why = challenger_from_delivery(message, {"bot"})
    assert payload is None and said in why
