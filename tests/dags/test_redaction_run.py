"""A `dag.test()` run of lockgate_quality over hostile rows: no raw PII in its XComs, task logs or outputs.

Every log row of the window carries secrets and PII in prompt, response and context. After the
run, the test greps every XCom the run stored in the metadata database, everything the tasks
logged, every file under LOCKGATE_HOME but the log store itself, and the MLflow run's params,
tags and artifacts. (tests/integration/test_redaction_outputs.py does the same over the job
functions with an endpoint judge, and also checks what the judge was sent.)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.logs.db import make_engine
from lockgate.logs.schema import log_table

DAGS = Path(__file__).resolve().parents[2] / "dags"
LOGICAL = datetime(2026, 7, 2, 2, 0, tzinfo=UTC)

RAW_PII = [
    "sk-proj-Ab3_dE4-fG5hI6jK7lM8nO9pQ0rS1tU2vW3xY4z_Zq-T3BlbkFJ",
    "sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-dCbA_98765-AAAA",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_1A2b3C4d5E6f7G8h9I0j1K2l3M4n5O6p7Q8r",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "jane.doe@example.com",
    "+44 20 7946 0958",
    "4155552671",
    "2001:db8::1",
    "203.0.113.77",
    "GB82 WEST 1234 5698 7654 32",
    "3782 822463 10005",
    "4111 1111 1111 1111",
]
NEEDLES = sorted({v for raw in RAW_PII for v in (raw, json.dumps(raw)[1:-1], raw.replace("+", "&#43;"))})


def found_in(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


@pytest.fixture(scope="module")
def quality_dag(airflow_db: str, load_dag: Callable[[Path, str], Any]) -> object:
    return load_dag(DAGS / "lockgate_quality.py", "lockgate_quality")


@pytest.mark.slow
def test_no_raw_pii_in_xcoms_task_logs_or_outputs(
    quality_dag: Any, lockgate_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from mlflow import MlflowClient

    from lockgate.devtools.testing.registry import sqlite_mlflow_store

    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_mlflow_store(lockgate_env / "mlflow.db"))
    spec = TrafficSpec(
        reference_start=LOGICAL - timedelta(days=2),
        reference_days=1,
        reference_rows=0,
        current_rows=120,
        current_versions=[VersionTraffic("1", share=0.6), VersionTraffic("2", share=0.4)],
        rag_share=0.5,
        seed=43,
    )
    assert spec.current_end == LOGICAL
    engine = make_engine(f"sqlite:///{lockgate_env / 'logs.db'}")
    seed_logs(engine, spec)
    table = log_table()
    with engine.begin() as conn:
        ids = [r for (r,) in conn.execute(sa.select(table.c.request_id).order_by(table.c.request_id))]
        for i, rid in enumerate(ids):
            a, b, c = (RAW_PII[(i + k) % len(RAW_PII)] for k in range(3))
            conn.execute(
                table.update()
                .where(table.c.request_id == rid)
                .values(prompt=f"key {a} phone {b}", response=f"ok {b}, card {c}", context=f"ctx {c} {a}")
            )
    engine.dispose()

    caplog.set_level(logging.DEBUG)
    run = quality_dag.test(
        logical_date=LOGICAL,
        run_conf={
            "model": "lockgate-demo",
            "challenger_version": "2",
            "champion_version": "1",
            "sample_size": 30,
            "rubrics": ["relevance", "safety"],
        },
    )
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    # The challenger served traffic: nothing to replay, so `replay` is skipped before it takes the gpu pool.
    expected = {("watched_models", -1), ("plan", 0), ("judge", 0)}
    skipped = {("needs_replay", 0), ("replay", 0)}
    assert states == {**dict.fromkeys(expected, "success"), **dict.fromkeys(skipped, "skipped")}, states

    leaks: dict[str, list[str]] = {}
    with create_session() as session:
        xcoms = session.execute(
            sa.select(XComModel.task_id, XComModel.key, XComModel.value).where(
                XComModel.dag_id == "lockgate_quality", XComModel.run_id == run.run_id
            )
        ).all()
    assert {t for t, _, _ in xcoms} >= {"plan", "judge"}
    for task_id, key, value in xcoms:
        if hits := found_in(json.dumps(value, default=str)):
            leaks[f"xcom {task_id}.{key}"] = hits
    task_log = "\n".join(f"{r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records)
    assert "quality plan for lockgate-demo" in task_log  # the tasks' records were captured
    if hits := found_in(task_log):
        leaks["task log"] = hits

    files = [p for p in lockgate_env.rglob("*") if p.is_file() and not p.name.startswith("logs.db")]
    assert any(p.name == "report.html" for p in files)
    for path in files:
        if hits := found_in(path.read_bytes().decode("utf-8", errors="replace")):
            leaks[str(path.relative_to(lockgate_env))] = hits

    summary_path = next(p for p in files if p.name == "summary.json" and p.parent.name != "lockgate-demo")
    run_id = json.loads(summary_path.read_text())["mlflow_run_ids"]["quality"]
    client = MlflowClient()
    mlflow_run = client.get_run(run_id)
    for kind, values in (("param", mlflow_run.data.params), ("tag", mlflow_run.data.tags)):
        for key, value in values.items():
            if hits := found_in(f"{key}={value}"):
                leaks[f"mlflow {kind} {key}"] = hits
    downloaded = Path(client.download_artifacts(run_id, "", str(lockgate_env.parent / "artifacts")))
    for path in (p for p in downloaded.rglob("*") if p.is_file()):
        if hits := found_in(path.read_bytes().decode("utf-8", errors="replace")):
            leaks[f"mlflow artifact {path.relative_to(downloaded)}"] = hits
    assert leaks == {}
