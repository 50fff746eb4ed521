"""The demo's progress lines: each task's state change once, mapped instances by index."""

from __future__ import annotations

from typing import Any

from lockgate.airflow_api import AirflowClient, task_state_changes


def test_each_state_change_is_reported_once() -> None:
    seen: dict[str, str] = {}
    first = [
        {"task_id": "watched_models", "map_index": -1, "state": "success", "start_date": "2026-01-01T00:00:00Z"},
        {"task_id": "drift_report", "map_index": 0, "state": "running", "start_date": "2026-01-01T00:00:05Z"},
        {"task_id": "drift_report", "map_index": 1, "state": None, "start_date": None},
    ]
    assert task_state_changes(first, seen) == ["watched_models: success", "drift_report[0]: running"]
    assert task_state_changes(first, seen) == []
    later = [dict(first[0]), {**first[1], "state": "success"}, {**first[2], "state": "failed"}]
    assert task_state_changes(later, seen) == ["drift_report[0]: success", "drift_report[1]: failed"]


class _FakeAirflow(AirflowClient):
    """Answers the two GETs of a wait from a script of (run state, task instances) polls."""

    def __init__(self, polls: list[tuple[str, list[dict[str, Any]]]]) -> None:
        super().__init__("http://airflow.invalid", "u", "p")
        self.polls = polls
        self.i = 0

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        state, tis = self.polls[min(self.i, len(self.polls) - 1)]
        if path.endswith("/taskInstances"):
            self.i += 1
            return {"task_instances": tis}
        return {"state": state}


def test_wait_for_run_reports_progress_until_the_run_ends() -> None:
    ti = {"task_id": "live_evidence", "map_index": 0, "start_date": "2026-01-01T00:00:00Z"}
    client = _FakeAirflow(
        [
            ("running", [{**ti, "state": "queued"}]),
            ("running", [{**ti, "state": "running"}]),
            ("success", [{**ti, "state": "success"}]),
        ]
    )
    lines: list[str] = []
    assert client.wait_for_run("lockgate_live", "r1", timeout=10, poll=0, progress=lines.append) == "success"
    assert lines == ["live_evidence[0]: queued", "live_evidence[0]: running", "live_evidence[0]: success"]


class _FakeAirflowWithLogs(_FakeAirflow):
    """Also serves the running task's log, growing by one progress line per poll."""

    def __init__(self, polls: list[tuple[str, list[dict[str, Any]]]], logs: list[list[Any]]) -> None:
        super().__init__(polls)
        self.logs = logs
        self.log_paths: list[str] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if "/logs/" in path:
            self.log_paths.append(f"{path}?map_index={kwargs['params']['map_index']}")
            return {"content": self.logs[min(self.i - 1, len(self.logs) - 1)]}
        return super().request(method, path, **kwargs)


def test_wait_for_run_relays_the_running_jobs_own_progress_once() -> None:
    ti = {"task_id": "drift_report", "map_index": 1, "try_number": 1, "start_date": "2026-01-01T00:00:00Z"}
    step1 = {"event": "drift m step 1/5: windows (0.1 s)", "logger": "lockgate.progress", "level": "info"}
    noise = {"event": "HTTP Request: GET ...", "logger": "httpx", "level": "info"}
    step2 = {"event": "drift m step 2/5: sampled (2.0 s)", "logger": "lockgate.progress", "level": "info"}
    client = _FakeAirflowWithLogs(
        [
            ("running", [{**ti, "state": "running"}]),
            ("running", [{**ti, "state": "running"}]),
            ("success", [{**ti, "state": "success"}]),
        ],
        logs=[[step1, noise], [step1, noise, step2]],
    )
    lines: list[str] = []
    client.wait_for_run("lockgate_drift", "r1", timeout=10, poll=0, progress=lines.append)
    assert lines == [
        "drift_report[1]: running",
        "  drift_report[1]: drift m step 1/5: windows (0.1 s)",
        "  drift_report[1]: drift m step 2/5: sampled (2.0 s)",
        "drift_report[1]: success",
    ]
    assert client.log_paths[0] == "/api/v2/dags/lockgate_drift/dagRuns/r1/taskInstances/drift_report/logs/1?map_index=1"
