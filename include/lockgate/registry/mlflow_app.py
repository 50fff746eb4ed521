"""lockgate's MLflow server app: MLflow's basic-auth app, plus a record of who wrote each approval.

Run the MLflow server with it (entry point `mlflow.app: lockgate-auth`, declared in pyproject.toml)::

    MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/auth.ini MLFLOW_FLASK_SERVER_SECRET_KEY=... \\
    MLFLOW_AUTH_ADMIN_PASSWORD=... mlflow server --app-name lockgate-auth ...

Everything MLflow's `basic-auth` app does (users, per-model permissions, `auth.ini`) stays as it
is. On top of it:

* after MLflow accepted a write or deletion of an approval tag (`lockgate.approval`,
  `lockgate.approved_by`, `lockgate.approval_evidence`, `lockgate.approved_at`) on a model
  version, over the REST API (`/api/2.0/mlflow/model-versions/set-tag`, `.../delete-tag`) or the
  UI's (`/ajax-api/2.0/...`), the server writes `lockgate.approval_attestation`: the
  authenticated user, their permission on the registered model, the approval tags as they now
  are, the version's `lockgate.evidence` and the server's time (`attestation.Attestation`);
* a client that sets or deletes `lockgate.approval_attestation`, or creates a model version
  carrying it (`copy_model_version` of an approved version does), gets 403, admins included:
  only the server writes it.

MLflow's own authorization runs first, so a user without EDIT on the model never reaches this
code for a tag write; the permission is still recorded, and lockgate's reader decides what counts
(`attestation.COUNTED_PERMISSIONS`).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lockgate.registry import tags as T
from lockgate.registry.attestation import ADMIN, Attestation, approval_tags

if TYPE_CHECKING:
    from flask import Flask, Response

log = logging.getLogger(__name__)

_ATTEST_LOCK = threading.Lock()
"""One attestation at a time in a worker: two approval writes racing read and write the same tag.
Across workers a lost race leaves a record that no longer matches the tags, which never counts."""


@functools.cache
def _routes() -> dict[tuple[str, str], str]:
    """(path, method) of the model-version calls this app watches: `set`, `delete`, `create`."""
    from mlflow.protos.model_registry_pb2 import CreateModelVersion, DeleteModelVersionTag, SetModelVersionTag
    from mlflow.server.handlers import get_endpoints

    kinds: dict[type, str] = {SetModelVersionTag: "set", DeleteModelVersionTag: "delete", CreateModelVersion: "create"}
    return {
        (path, method): kind
        for path, kind, methods in get_endpoints(lambda request_class: kinds.get(request_class))
        if isinstance(kind, str)
        for method in methods
    }


def _params() -> dict[str, Any]:
    """The request's parameters: the JSON body, or the query string (a DELETE may send either)."""
    from flask import request

    body = request.get_json(force=True, silent=True)
    params: dict[str, Any] = dict(request.args)
    if isinstance(body, dict):
        params.update(body)
    return params


def _forbidden(message: str) -> Response:
    from flask import Response

    body = {"error_code": "PERMISSION_DENIED", "message": message}
    return Response(json.dumps(body), status=403, mimetype="application/json")


def refuse_attestation_writes() -> Response | None:
    """Before a request: 403 for a client's write of `lockgate.approval_attestation` (admins included)."""
    from flask import request

    kind = _routes().get((request.path, request.method))
    if kind is None:
        return None
    params = _params()
    if kind in ("set", "delete"):
        touched = params.get("key") == T.APPROVAL_ATTESTATION
    else:
        tags = params.get("tags")
        touched = isinstance(tags, list) and any(
            isinstance(t, dict) and t.get("key") == T.APPROVAL_ATTESTATION for t in tags
        )
    if not touched:
        return None
    user = _user() or "an unauthenticated client"
    log.warning("refused %s of %s by %s on %s", kind, T.APPROVAL_ATTESTATION, user, params.get("name"))
    return _forbidden(
        f"{T.APPROVAL_ATTESTATION} is written by the MLflow server only (lockgate's app records who wrote "
        "the approval tags); set lockgate.approval and lockgate.approved_by instead, or copy a version "
        "without that tag"
    )


def _user() -> str | None:
    from flask import g

    user = g.get("mlflow_authenticated_user")
    return str(user) if user else None


def _permission(user: str, model: str) -> str:
    """The user's permission on the registered model as MLflow's auth app resolves it, or `admin`."""
    from mlflow.server import auth

    if auth.store.get_user(user).is_admin:
        return ADMIN
    # The same resolution MLflow's validators use: a grant to the user or a role, else default_permission.
    return str(auth._get_registered_model_permission(model).name)


def attest_approval_writes(response: Response) -> Response:
    """After a request: record who wrote an approval tag that MLflow accepted."""
    from flask import request

    if not 200 <= response.status_code < 300:
        return response
    if _routes().get((request.path, request.method)) not in ("set", "delete"):
        return response
    params = _params()
    if params.get("key") not in T.APPROVAL_TAGS:
        return response
    user = _user()
    if user is None:  # the auth app authenticated every request that reached here; be safe anyway
        log.error("approval tag written without an authenticated user: not attested")
        return response
    model, version = str(params["name"]), str(params["version"])
    from mlflow.entities.model_registry import ModelVersionTag
    from mlflow.server.handlers import _get_model_registry_store

    store = _get_model_registry_store()
    with _ATTEST_LOCK:
        current = store.get_model_version(model, version).tags
        attestation = Attestation(
            model=model,
            version=version,
            user=user,
            permission=_permission(user, model),
            at=datetime.now(UTC),
            tags=approval_tags(current),
            evidence=current.get(T.EVIDENCE),
        )
        store.set_model_version_tag(model, version, ModelVersionTag(T.APPROVAL_ATTESTATION, attestation.to_json()))
    log.info("attested %s of %s version %s by %s (%s)", params["key"], model, version, user, attestation.permission)
    return response


def create_app(app: Flask | None = None) -> Any:
    """The `lockgate-auth` MLflow app: MLflow's `basic-auth` app with approval attestations.

    Args:
        app: the MLflow Flask app (default: `mlflow.server.app`).

    Returns:
        What MLflow's `basic-auth` factory returns (a FastAPI app under uvicorn, else the Flask app).
    """
    from mlflow.server import app as mlflow_app
    from mlflow.server.auth import create_app as create_auth_app

    flask_app = app if app is not None else mlflow_app
    served = create_auth_app(flask_app)
    # Registered after MLflow's hooks: authentication and MLflow's own authorization run first, so
    # `g.mlflow_authenticated_user` is set and a refused write never reaches the attestation.
    flask_app.before_request(refuse_attestation_writes)
    flask_app.after_request(attest_approval_writes)
    return served
