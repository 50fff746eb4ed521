"""A small client for Airflow 3's REST API v2, as a user (or the demo) drives it.

Token auth (`POST /auth/token`), unpause, trigger a run with conf, poll it to the
end with a deadline, and read its task instances. Used by `lockgate demo` and the
end-to-end tests; no Airflow import needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from lockgate.errors import LockgateError, ServiceUnavailableError

log = logging.getLogger(__name__)

TERMINAL = {"success", "failed"}


class AirflowRunFailed(LockgateError):
    code = "dag_run_failed"


@dataclass
class AirflowClient:
    base_url: str
    username: str
    password: str
    timeout: float = 30.0
    _token: str | None = field(default=None, init=False, repr=False)

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url.rstrip("/"), timeout=self.timeout)

    def token(self) -> str:
        if self._token:
            return self._token
        try:
            with self._client() as c:
                r = c.post("/auth/token", json={"username": self.username, "password": self.password})
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError("Airflow API server", self.base_url, type(exc).__name__) from None
        if r.status_code >= 400:
            raise LockgateError(f"Airflow refused the login of {self.username!r}: HTTP {r.status_code} {r.text[:200]}")
        self._token = str(r.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token()}"}
        try:
            with self._client() as c:
                r = c.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError("Airflow API server", self.base_url, type(exc).__name__) from None
        if r.status_code >= 400:
            raise LockgateError(f"Airflow API {method} {path}: HTTP {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        """Wait until the DAG processor has parsed `dag_id` (a new file takes a moment)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                return dict(self.request("GET", f"/api/v2/dags/{dag_id}"))
            except LockgateError as exc:
                last = str(exc)
            time.sleep(2)
        raise LockgateError(f"DAG {dag_id} did not appear in Airflow within {timeout:.0f} s ({last})")

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        body = {"logical_date": None, "conf": conf or {}}
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        log.info("triggered %s run %s", dag_id, run["dag_run_id"])
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 900,
        poll: float = 3,
        progress: Callable[[str], None] | None = None,
    ) -> str:
        """Poll until the run ends; returns its state. Raises when the deadline passes.

        With `progress`, each task's state change is reported as it is seen ("drift_report[1]: running").
        """
        deadline = time.monotonic() + timeout
        state = "queued"
        seen: dict[str, str] = {}
        reported: dict[str, int] = {}
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if progress is not None:
                instances = self.task_instances(dag_id, run_id)
                for line in task_state_changes(instances, seen):
                    progress(line)
                for line in self._job_progress(dag_id, run_id, instances, reported):
                    progress(line)
            if state in TERMINAL:
                return state
            time.sleep(poll)
        raise LockgateError(f"{dag_id} run {run_id} still {state} after {timeout:.0f} s")

    def _job_progress(
        self, dag_id: str, run_id: str, instances: list[dict[str, Any]], reported: dict[str, int]
    ) -> list[str]:
        """The job's own progress lines (lockgate.progress) that running tasks logged since the last poll."""
        lines: list[str] = []
        for ti in instances:
            if ti.get("state") != "running":
                continue
            name = task_name(ti)
            task_path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti.get('task_id')}"
            path = f"{task_path}/logs/{ti.get('try_number') or 1}"
            try:
                data = self.request("GET", path, params={"map_index": ti.get("map_index", -1)})
            except LockgateError:
                continue  # a log not served yet: the next poll tries again
            events = progress_events((data or {}).get("content") or [])
            key = f"{name}#{ti.get('try_number')}"
            lines += [f"  {name}: {event}" for event in events[reported.get(key, 0) :]]
            reported[key] = len(events)
        return lines

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        data = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return list(data.get("task_instances", []))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.request("GET", path, params={"deserialize": True}).get("value")

    def run_and_wait(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        timeout: float = 900,
        progress: Callable[[str], None] | None = None,
    ) -> tuple[str, str]:
        self.wait_for_dag(dag_id)
        self.unpause(dag_id)
        run_id = self.trigger(dag_id, conf)
        state = self.wait_for_run(dag_id, run_id, timeout=timeout, progress=progress)
        if state != "success":
            failed = [t["task_id"] for t in self.task_instances(dag_id, run_id) if t.get("state") == "failed"]
            raise AirflowRunFailed(f"{dag_id} run {run_id} ended {state}; failed tasks: {failed}")
        return run_id, state


PROGRESS_LOGGER = "lockgate.progress"


def progress_events(content: list[Any]) -> list[str]:
    """The lockgate.progress messages of a task log as Airflow's log API returns it (structured or raw lines)."""
    events: list[str] = []
    for entry in content:
        if isinstance(entry, dict):
            if entry.get("logger") == PROGRESS_LOGGER and entry.get("event"):
                events.append(str(entry["event"]))
        elif isinstance(entry, str) and PROGRESS_LOGGER in entry:
            events.append(entry.strip())
    return events


def task_name(ti: dict[str, Any]) -> str:
    """`drift_report[1]` for a mapped instance, the task id otherwise."""
    index = ti.get("map_index", -1)
    return f"{ti.get('task_id')}[{index}]" if index is not None and index >= 0 else str(ti.get("task_id"))


def task_state_changes(task_instances: list[dict[str, Any]], seen: dict[str, str]) -> list[str]:
    """Lines for the task instances whose state changed since `seen` (updated in place), in start order.

    A mapped instance is named with its index (`drift_report[1]`); a task not yet scheduled has no state.
    """
    lines = []
    ordered = sorted(task_instances, key=lambda t: (t.get("start_date") or "~", t.get("task_id") or ""))
    for ti in ordered:
        name = task_name(ti)
        state = ti.get("state")
        if not state or seen.get(name) == state:
            continue
        seen[name] = state
        lines.append(f"{name}: {state}")
    return lines
