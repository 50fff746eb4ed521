"""Judge results in MLflow's GenAI views: traces with assessments under the quality run, on a real `mlflow server`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.logs.db import make_engine
from lockgate.settings import DEFAULT_POLICY_PATH

pytestmark = pytest.mark.slow
MODEL = "lockgate-demo"


def relevance_with_rationale(payload: dict[str, object]) -> str:
    from lockgate.devtools.testing.judge import make_oracle

    label = make_oracle()(payload)
    return f"{label}\nThe answer addresses the request." if label.isdigit() else label


def test_quality_run_logs_traces_with_judge_assessments(
    mlflow_server: str, lockgate_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from lockgate.devtools.testing.judge import FakeJudgeServer
    from lockgate.jobs.context import RunContext
    from lockgate.jobs.quality import run_quality

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    s = TrafficSpec(
        model_name=MODEL,
        reference_start=datetime(2026, 8, 1, tzinfo=UTC),
        reference_rows=0,
        current_rows=200,
        current_versions=[VersionTraffic("1", share=0.6), VersionTraffic("2", share=0.4)],
        pii_rate=0.5,
        seed=61,
    )
    seed_logs(make_engine(f"sqlite:///{lockgate_env / 'logs.db'}"), s)
    policy = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    with FakeJudgeServer(answer=relevance_with_rationale, logprobs=False) as server:
        policy["quality"].update(
            sample_size=40,
            min_samples=5,
            evidently_report=False,
            mlflow_assessments=6,
            judge={"backend": "openai", "base_url": server.base_url, "model": "oracle", "logprobs": False},
        )
        (lockgate_env / "policy.yaml").write_text(yaml.safe_dump(policy))
        monkeypatch.setenv("LOCKGATE_CONFIG", str(lockgate_env / "policy.yaml"))
        ctx = RunContext(MODEL, run_key="mlflow-run", data_interval=(s.current_start, s.current_end))
        kwargs = {"versions": {"challenger": "2", "champion": "1"}, "rubrics": ["relevance", "safety"]}
        summary = run_quality(ctx, **kwargs)  # type: ignore[arg-type]
        again = run_quality(ctx, **kwargs)  # type: ignore[arg-type]

    run_id = summary.mlflow_run_ids["quality"]
    assert again.mlflow_run_ids["quality"] == run_id
    client = mlflow.MlflowClient(mlflow_server)
    experiment_id = client.get_run(run_id).info.experiment_id
    traces = client.search_traces(locations=[experiment_id], run_id=run_id, max_results=100)
    assert len(traces) == 12  # 6 per version, and a rerun replaced its traces instead of adding more
    roles = sorted(t.info.tags["lockgate.role"] for t in traces)
    assert roles == ["challenger"] * 6 + ["champion"] * 6
    for t in traces:
        inputs = json.dumps(t.data.spans[0].inputs)
        assert "@example.com" not in inputs  # what MLflow shows is the redacted text the judge saw
        by_name = {a.name: a for a in t.info.assessments}
        assert set(by_name) == {"relevance", "safety"}
        rel = by_name["relevance"]
        assert (
            rel.source.source_type == "LLM_JUDGE"
            and rel.source.source_id == summary.details["quality"]["judge_identity"]
        )
        assert 1 <= rel.feedback.value <= 5 and rel.rationale == "The answer addresses the request."
        assert rel.metadata["rubric"] == "relevance.v1" and rel.metadata["judge_trusted"] == "true"
        assert by_name["safety"].feedback.value in (0.0, 1.0)
    notes = summary.details["quality"]["notes"]
    assert any("12 sampled requests" in n and run_id in n for n in notes)


def test_a_calibration_set_kept_as_an_mlflow_evaluation_dataset(
    mlflow_server: str, lockgate_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lockgate judge push-set` copies a two-labeller JSONL set to an MLflow evaluation dataset;
    `mlflow:NAME` reads it back (items, labellers, provenance) and calibrates on it like the file."""
    from lockgate.errors import ConfigError
    from lockgate.judge.calibration import calibrate, load_calibration_set, push_calibration_set
    from lockgate.judge.scoring import JudgeRequest, Judgment
    from lockgate.policy.schema import QualityConfig, StatisticsConfig

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    rows = [
        {
            "id": f"r{n:02d}",
            "rubric": "relevance",
            "prompt": f"question {n}",
            "response": f"answer {n}",
            "labels": {"alice": 1 + n % 5, "bob": (1 + n % 5) if n >= 4 else 5 - n % 5},
        }
        for n in range(20)
    ] + [{"id": "todo", "rubric": "relevance", "prompt": "q", "response": "a", "labels": {}}]
    path = lockgate_env / "support_v1.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    path.with_name("support_v1.meta.yaml").write_text(
        "name: support_v1\ndescription: Rated support answers.\nlabels_from: people\n"
        "method: Two support agents labelled each answer independently.\n"
        "labellers:\n  - id: alice\n    description: support agent\n  - id: bob\n"
    )
    from_file = load_calibration_set(path)
    push_calibration_set(path, "support-calibration-v1")
    with pytest.raises(ConfigError, match="exists"):
        push_calibration_set(path, "support-calibration-v1")  # labels are never merged silently

    from_mlflow = load_calibration_set("mlflow:support-calibration-v1")
    assert from_mlflow.location == "mlflow:support-calibration-v1" and from_mlflow.path is None
    assert [i.model_dump() for i in from_mlflow.items] == [i.model_dump() for i in from_file.items]
    assert from_mlflow.manifest.labels_from == "people"
    assert [lab.id for lab in from_mlflow.manifest.labellers] == ["alice", "bob"]
    assert from_mlflow.manifest.method == from_file.manifest.method
    assert load_calibration_set("mlflow:support-calibration-v1").hash == from_mlflow.hash  # stable

    truth = {i.id: i.score for i in from_mlflow.items}

    def judge(requests: list[JudgeRequest]) -> list[Judgment]:
        return [Judgment(r.item_id, r.rubric.id, score=round(truth[r.item_id])) for r in requests]

    config = QualityConfig(calibration_set="mlflow:support-calibration-v1")
    result = calibrate(
        judge,
        judge="openai:http://x/v1:m",
        description="d",
        rubrics=["relevance"],
        config=config,
        statistics=StatisticsConfig(bootstrap_resamples=200),
        redact=lambda text: text,
    )
    assert result.set_path == "mlflow:support-calibration-v1" and result.set_name == "support-calibration-v1"
    assert result.n_items == 20 and result.passed
    (pair,) = result.labeller_agreement
    assert (pair.a, pair.b, pair.n) == ("alice", "bob", 20)
    with pytest.raises(ConfigError, match="no MLflow evaluation dataset named 'nope'"):
        load_calibration_set("mlflow:nope")
