"""Health checks of the stack: what `up` waits on and `status` shows.

Airflow: GET /api/v2/monitor/health (no login needed) reports the metadata database and
the last heartbeat of the scheduler, triggerer and DAG processor. A heartbeat older than
the processes we just started is a previous run's job row, so it does not count.
MLflow: GET /health answers "OK".
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import httpx

from lockgate.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)

AIRFLOW_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
_HEARTBEAT_KEYS = {
    "scheduler": "latest_scheduler_heartbeat",
    "triggerer": "latest_triggerer_heartbeat",
    "dag_processor": "latest_dag_processor_heartbeat",
}
# Clocks of the CLI and of the heartbeat writer are the same machine's; this only
# absorbs the rounding of stored timestamps.
_CLOCK_SLACK_S = 2.0


def _client(timeout: float) -> httpx.Client:
    # trust_env=False: an HTTP(S)_PROXY in the environment must not capture 127.0.0.1.
    return httpx.Client(timeout=timeout, trust_env=False)


def airflow_health(base_url: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """The health document, or None when the API server does not answer (yet)."""
    try:
        with _client(timeout) as client:
            resp = client.get(f"{base_url}/api/v2/monitor/health")
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    try:
        data = resp.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _heartbeat_ts(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def component_status(health: dict[str, Any] | None, since: float | None = None) -> dict[str, str]:
    """Per component: `healthy`, `unhealthy`, `stale` (heartbeat before `since`) or `no answer`."""
    if health is None:
        return dict.fromkeys(AIRFLOW_COMPONENTS, "no answer")
    result: dict[str, str] = {}
    for name in AIRFLOW_COMPONENTS:
        part = health.get(name) or {}
        status = str(part.get("status") or "not running")
        if status == "healthy" and since is not None and name in _HEARTBEAT_KEYS:
            ts = _heartbeat_ts(part.get(_HEARTBEAT_KEYS[name]))
            if ts is None or ts + _CLOCK_SLACK_S < since:
                status = "stale"
        result[name] = status
    return result


def airflow_healthy(health: dict[str, Any] | None, since: float | None = None) -> bool:
    return all(v == "healthy" for v in component_status(health, since).values())


def mlflow_healthy(base_url: str, timeout: float = 3.0) -> bool:
    try:
        with _client(timeout) as client:
            resp = client.get(f"{base_url}/health")
    except httpx.HTTPError:
        return False
    return resp.status_code == 200


def require_mlflow(base_url: str, timeout: float = 5.0) -> None:
    """Raise one clear line naming the URL when MLflow does not answer."""
    try:
        with _client(timeout) as client:
            resp = client.get(f"{base_url}/health")
    except httpx.HTTPError as exc:
        raise ServiceUnavailableError(
            "MLflow", base_url, type(exc).__name__, hint="is `lockgate up` running?"
        ) from None
    if resp.status_code != 200:
        raise ServiceUnavailableError("MLflow", base_url, f"GET /health answered HTTP {resp.status_code}")


def airflow_token(base_url: str, username: str, password: str, timeout: float = 10.0) -> str:
    """A REST API v2 token for the simple auth manager's user."""
    try:
        with _client(timeout) as client:
            resp = client.post(f"{base_url}/auth/token", json={"username": username, "password": password})
    except httpx.HTTPError as exc:
        raise ServiceUnavailableError("Airflow API server", base_url, type(exc).__name__) from None
    if resp.status_code not in (200, 201):
        reason = f"POST /auth/token answered HTTP {resp.status_code}"
        raise ServiceUnavailableError("Airflow API server", base_url, reason)
    token = resp.json().get("access_token")
    if not isinstance(token, str):
        raise ServiceUnavailableError("Airflow API server", base_url, "POST /auth/token returned no access_token")
    return token
