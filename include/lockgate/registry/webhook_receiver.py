"""The receiving end of MLflow's registry webhook, served by the Lockgate plugin inside Airflow's API server.

`POST /lockgate-hooks/mlflow`: MLflow cannot log in to Airflow, so this route is outside Airflow's
login and trusts a delivery only when it is signed with `LOCKGATE_MLFLOW_WEBHOOK_SECRET` (HMAC, at
most 5 minutes old: lockgate.registry.webhook). Without that secret the route answers 404 and does
nothing. A signed `model_version_alias.created` that sets `challenger` on a watched model fires the
`lockgate_challenger_alias` Asset (what `POST /api/v2/assets/events` does) and records the version
in the Asset's state store, where the triggerer's poll reads it: the poll then does not report the
same challenger again, and a delivery for a challenger the poll already reported is not recorded twice.
Deliveries are recorded one at a time (a retry arriving while the first delivery is handled finds
the version recorded), so one alias move is one event (tests/dags/test_webhook_receiver.py).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from lockgate.registry.alias_watch import STATE_KEY
from lockgate.registry.webhook import WebhookRejected, challenger_from_delivery, verify_delivery

ASSET_NAME = "lockgate_challenger_alias"
MAX_BODY_BYTES = 64 * 1024
_record_lock = threading.Lock()

app = FastAPI(title="Lockgate webhooks", docs_url=None, redoc_url=None, openapi_url=None)


def _secret() -> str | None:
    from lockgate.settings import get_settings

    return get_settings().mlflow_webhook_secret


def _watched_models() -> list[str]:
    from lockgate.policy.schema import load_policy

    return [m.name for m in load_policy().models]


def record_new_challenger(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Fire the Asset for `payload` unless this version was already reported; (outcome, payload sent)."""
    from airflow._shared.state import AssetScope, AssetStateStoreWriterKind
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.state.metastore import _get_db_backend
    from airflow.utils.session import create_session
    from sqlalchemy import select

    # One delivery at a time reads and writes the state, or a retry that arrives while the first
    # delivery is handled reads the same state and fires a second event: the lock for the threads
    # of this API server process, the asset row's lock (FOR UPDATE, until the commit) for the other
    # processes where the metadata database has row locks (PostgreSQL, MySQL; on SQLite, which has
    # none, the process lock covers the API server's default of one worker process).
    with _record_lock, create_session() as session:
        asset = session.scalar(
            select(AssetModel)
            .join(AssetActive, (AssetActive.name == AssetModel.name) & (AssetActive.uri == AssetModel.uri))
            .where(AssetModel.name == ASSET_NAME)
            .with_for_update(of=AssetModel)
        )
        if asset is None:
            return "no_asset", payload
        backend = _get_db_backend()
        scope = AssetScope(asset_id=asset.id)
        raw = backend.get(scope, STATE_KEY, session=session)
        seen = json.loads(raw) if raw else {}
        seen = seen if isinstance(seen, dict) else {}
        model, version = payload["model"], payload["version"]
        if seen.get(model) == version:
            return "already_reported", payload
        sent = {**payload, "previous_version": seen.get(model)}
        asset_manager.register_asset_change(
            asset=asset, extra={"from_webhook": True, "payload": sent}, source_is_api=True, session=session
        )
        backend.set_asset_state_store(
            scope, STATE_KEY, json.dumps({**seen, model: version}), kind=AssetStateStoreWriterKind.API, session=session
        )
    return "reported", sent


@app.post("/mlflow")
async def mlflow_webhook(request: Request) -> dict[str, Any]:
    secret = _secret()
    if not secret:
        raise HTTPException(404, "lockgate's MLflow webhook receiver is off: LOCKGATE_MLFLOW_WEBHOOK_SECRET is unset")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, f"a webhook delivery is at most {MAX_BODY_BYTES} bytes")
    try:
        verify_delivery(secret, dict(request.headers), body, time.time())
    except WebhookRejected as exc:
        raise HTTPException(401, str(exc)) from None
    try:
        message = json.loads(body)
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    try:
        watched = await run_in_threadpool(_watched_models)
    except Exception as exc:  # noqa: BLE001 - MLflow retries a 5xx; the poll catches up meanwhile
        raise HTTPException(503, f"the policy cannot be read: {exc}") from None
    payload, why = challenger_from_delivery(message, watched)
    if payload is None:
        return {"status": "ignored", "reason": why}
    outcome, sent = await run_in_threadpool(record_new_challenger, payload)
    if outcome == "no_asset":
        raise HTTPException(503, f"the {ASSET_NAME} Asset is not active yet (DAGs not parsed or all paused)")
    return {"status": outcome, "event": sent}
