"""A quality run over hostile rows: no raw PII or secret in anything the run writes or hands on.

Every log row of the window carries PII and secrets in its prompt, response and context.
After the job (the DAG's three steps, called as its tasks call them), the test greps:
every file under LOCKGATE_HOME but the log database itself (reports, summaries, the
Evidently page, the reports index, the MLflow store with its params and tags), every
MLflow artifact downloaded back, every param and tag of the run, what the judge was
sent, the tasks' return values (their XComs) and every log record the job emitted
(what the task log shows).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.logs.db import make_engine
from lockgate.logs.schema import log_table
from lockgate.settings import DEFAULT_POLICY_PATH

MODEL = "lockgate-demo"

# One raw value per built-in category (see tests/unit/test_redaction.py for the full table).
RAW_PII = [
    "sk-proj-Ab3_dE4-fG5hI6jK7lM8nO9pQ0rS1tU2vW3xY4z_Zq-T3BlbkFJ",
    "sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-dCbA_98765-AAAA",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_1A2b3C4d5E6f7G8h9I0j1K2l3M4n5O6p7Q8r",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "jane.doe@example.com",
    "+44 20 7946 0958",
    "(415) 555-2671",
    "4155552671",
    "+14155552671",
    "203.0.113.77",
    "2001:db8::1",
    "::ffff:192.0.2.128",
    "GB82 WEST 1234 5698 7654 32",
    "DE89370400440532013000",
    "4111 1111 1111 1111",
    "3782 822463 10005",
    "5555555555554444",
]
# What a grep looks for: the raw value and its JSON/HTML-escaped forms (a report escapes '+', '(').
NEEDLES = sorted({v for raw in RAW_PII for v in (raw, json.dumps(raw)[1:-1], raw.replace("+", "&#43;"))})


def hostile(i: int, role: str) -> str:
    a, b, c = (RAW_PII[(i + k) % len(RAW_PII)] for k in range(3))
    return f"{role}: my key is {a}, reach me on {b} or pay to {c}."


def found_in(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from lockgate.devtools.testing.registry import sqlite_mlflow_store

    home = tmp_path_factory.mktemp("redaction") / "home"
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    data["quality"].update({"sample_size": 40, "min_samples": 5, "evidently_report": True})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))
        mp.setenv("MLFLOW_TRACKING_URI", sqlite_mlflow_store(home / "mlflow.db"))
        mp.setenv("LOCKGATE_LOGS_DB_URL", f"sqlite:///{home / 'logs.db'}")
        policy = home / "policy.yaml"
        policy.write_text(yaml.safe_dump(data))
        mp.setenv("LOCKGATE_CONFIG", str(policy))
        yield home


@pytest.mark.slow
def test_no_raw_pii_leaves_the_log_store(env: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mlflow import MlflowClient

    from lockgate.devtools.testing.judge import FakeJudgeServer
    from lockgate.evidence import evidence_payload
    from lockgate.jobs.context import RunContext
    from lockgate.jobs.quality import QualityPlan, judge_quality, plan_quality, replay_challenger

    spec = TrafficSpec(
        model_name=MODEL,
        reference_start=datetime(2026, 6, 1, tzinfo=UTC),
        reference_rows=0,
        current_rows=120,
        current_versions=[VersionTraffic("1", share=0.6), VersionTraffic("2", share=0.4)],
        rag_share=0.5,
        seed=7,
    )
    engine = make_engine(f"sqlite:///{env / 'logs.db'}")
    seed_logs(engine, spec)
    table = log_table()
    with engine.begin() as conn:
        ids = [r for (r,) in conn.execute(sa.select(table.c.request_id).order_by(table.c.request_id))]
        for i, rid in enumerate(ids):
            conn.execute(
                table.update()
                .where(table.c.request_id == rid)
                .values(
                    prompt=hostile(i, "prompt"),
                    response=hostile(i + 1, "answer"),
                    context=hostile(i + 2, "context"),
                )
            )
    engine.dispose()

    caplog.set_level(logging.DEBUG)
    with FakeJudgeServer() as server, pytest.MonkeyPatch.context() as mp:
        data = yaml.safe_load(Path(env / "policy.yaml").read_text())
        data["quality"]["judge"] = {"backend": "openai", "base_url": server.base_url, "model": "oracle"}
        (env / "policy.yaml").write_text(yaml.safe_dump(data))
        mp.setenv("LOCKGATE_CONFIG", str(env / "policy.yaml"))
        # The DAG's three tasks, each return value passed on as the DAG passes its XCom.
        plan = plan_quality(
            RunContext(MODEL, run_key="hostile-run", data_interval=(spec.current_start, spec.current_end)),
            versions={"challenger": "2", "champion": "1"},
            rubrics=["relevance", "faithfulness", "safety", "pairwise"],
        )
        plan_xcom = plan.model_dump(mode="json")
        replay_xcom = replay_challenger(QualityPlan.model_validate(plan_xcom))
        summary = judge_quality(QualityPlan.model_validate(plan_xcom), replay_xcom)
        judge_xcom = evidence_payload(summary)
        judge_requests = json.dumps(server.requests)

    assert summary.status == "ok", summary.message
    redactions = summary.details["quality"]["redactions"]
    assert {"api_key", "phone", "iban", "card", "ip", "email", "jwt", "aws_key", "github_token"} <= set(redactions)
    assert len(server.requests) > 50  # the judge did see (redacted) samples
    assert "[API_KEY]" in judge_requests and "[PHONE]" in judge_requests and "[IBAN]" in judge_requests

    leaks: dict[str, list[str]] = {}
    # Every file the run wrote, bar the log store that holds the raw rows by design.
    files = [p for p in env.rglob("*") if p.is_file() and not p.name.startswith("logs.db")]
    assert any(p.name == "report.html" for p in files) and any(p.suffix == ".json" for p in files)
    assert any("evidently" in p.name for p in files), sorted(p.name for p in files)
    for path in files:
        hits = found_in(path.read_bytes().decode("utf-8", errors="replace"))
        if hits:
            leaks[str(path.relative_to(env))] = hits

    client = MlflowClient()
    run_id = summary.mlflow_run_ids["quality"]
    run = client.get_run(run_id)
    for kind, values in (("param", run.data.params), ("tag", run.data.tags)):
        for key, value in values.items():
            if hits := found_in(f"{key}={value}"):
                leaks[f"mlflow {kind} {key}"] = hits
    artifacts = Path(client.download_artifacts(run_id, "", str(env.parent / "downloaded")))
    downloaded = [p for p in artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in downloaded)
    for path in downloaded:
        if hits := found_in(path.read_bytes().decode("utf-8", errors="replace")):
            leaks[f"mlflow artifact {path.relative_to(artifacts)}"] = hits

    for name, text in (
        ("judge requests", judge_requests),
        ("plan xcom", json.dumps(plan_xcom)),
        ("replay xcom", json.dumps(replay_xcom)),
        ("judge xcom", json.dumps(judge_xcom, default=str)),
        ("task log", "\n".join(r.getMessage() for r in caplog.records)),
    ):
        if hits := found_in(text):
            leaks[name] = hits
    assert leaks == {}
