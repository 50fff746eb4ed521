"""The quality job on seeded logs: the demo scenarios against the real gate, outputs, replay, trust in the judge."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.evidence import EvidenceSummary, latest_summary_path, read_summary
from lockgate.logs.db import make_engine
from lockgate.policy.gates import assess_evidence, evaluate_gate
from lockgate.policy.schema import load_policy
from lockgate.settings import DEFAULT_POLICY_PATH

MODEL = "lockgate-demo"


def spec(start: datetime, degradation: float, seed: int, current_rows: int = 1000, **kw: object) -> TrafficSpec:
    """The demo's traffic: champion "1", challenger "2" on 30% canary traffic."""
    return TrafficSpec(
        model_name=MODEL,
        reference_start=start,
        reference_rows=0,
        current_rows=current_rows,
        current_versions=[
            VersionTraffic("1", share=0.7),
            VersionTraffic("2", share=0.3, quality_degradation=degradation),
        ],
        pii_rate=0.05,
        hostile_rate=0.05,
        malformed_rate=0.01,
        seed=seed,
        **kw,  # type: ignore[arg-type]
    )


def gate(name: str) -> object:
    return next(g for g in load_policy(DEFAULT_POLICY_PATH).model(MODEL).gates if g.name == name)


def verdict(summary: EvidenceSummary, gate_name: str, challenger: str = "2", champion: str = "1") -> object:
    ref = assess_evidence("quality", summary, summary.created_at, 48, MODEL)
    return evaluate_gate(gate(gate_name), summary, ref, challenger, champion)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """LOCKGATE_HOME, reports, an embedded MLflow store and SQLite logs for this module."""
    from lockgate.devtools.testing.registry import sqlite_mlflow_store

    home = tmp_path_factory.mktemp("quality") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))
        mp.setenv("MLFLOW_TRACKING_URI", sqlite_mlflow_store(home / "mlflow.db"))
        mp.setenv("LOCKGATE_LOGS_DB_URL", f"sqlite:///{home / 'logs.db'}")
        mp.delenv("LOCKGATE_CONFIG", raising=False)
        yield home


def write_policy(home: Path, mp: pytest.MonkeyPatch, **quality: object) -> Path:
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    for key, value in quality.items():
        if key == "judge":
            data["quality"]["judge"] = value
        else:
            data["quality"][key] = value
    path = home / f"policy-{abs(hash(json.dumps(quality, sort_keys=True, default=str)))}.yaml"
    path.write_text(yaml.safe_dump(data))
    mp.setenv("LOCKGATE_CONFIG", str(path))
    return path


@pytest.mark.postgres
@pytest.mark.slow
def test_demo_scenarios_at_the_default_sample_size_against_the_relevance_gate(pg_url: str) -> None:
    """healthy passes relevance_regression at sample_size 200; quality-regression fails it."""
    import sqlalchemy as sa

    from lockgate.jobs.quality import QualityPlan, _embedding_scores, _sample
    from lockgate.judge.evaluation import Sample, build_metrics, version_scores

    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS inference_logs"))
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert policy.quality.sample_size == 200
    scenarios = {
        "healthy": spec(datetime(2026, 2, 1, tzinfo=UTC), 0.0, seed=11),
        "quality-regression": spec(datetime(2026, 3, 1, tzinfo=UTC), 0.6, seed=12),
    }
    samples: dict[str, dict[str, list[Sample]]] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_LOGS_DB_URL", pg_url)
        for name, s in scenarios.items():
            seed_logs(engine, s, policy.logs)
            plan = QualityPlan(
                model_name=MODEL,
                run_key=name,
                challenger_version="2",
                champion_version="1",
                window_start=s.current_start,
                window_end=s.current_end,
                sample_size=policy.quality.sample_size,
                rubrics=["relevance"],
                seed=policy.statistics.seed,
                mode="traffic",
                run_dir="/nonexistent",
            )
            samples[name] = {v: [Sample.from_row(r) for r in _sample(plan, policy, v).rows] for v in ("1", "2")}
    everything = [x for per in samples.values() for rows in per.values() for x in rows]
    relevance, grounding = _embedding_scores(everything)  # MiniLM once for both scenarios
    results = {}
    for name, per in samples.items():
        ch = version_scores("2", per["2"], relevance, grounding, {}, [])
        cp = version_scores("1", per["1"], relevance, grounding, {}, [])
        assert 190 <= ch.sampled <= 200 and 190 <= cp.sampled <= 200  # 200 drawn, malformed rows quarantined
        metrics = build_metrics(
            ch, cp, policy.statistics, paired=False, min_samples=policy.quality.min_samples, include_judge=False
        )
        summary = EvidenceSummary(
            kind="quality",
            model_name=MODEL,
            challenger_version="2",
            champion_version="1",
            created_at=datetime.now(UTC),
            metrics=metrics,
        )
        results[name] = (metrics, verdict(summary, "relevance_regression"), verdict(summary, "champion_error_rate"))
    healthy, regression = results["healthy"], results["quality-regression"]
    rel_h = healthy[0]["embedding_relevance"].difference
    rel_r = regression[0]["embedding_relevance"].difference
    print(f"\nhealthy relevance difference: {rel_h!r}\nregression relevance difference: {rel_r!r}")
    assert healthy[1].status == "pass", healthy[1].reason
    assert rel_h.ci_low > -0.05
    assert regression[1].status == "fail", regression[1].reason
    assert rel_r.ci_high < -0.1
    # The regression also shows as refusals; the champion's error rate stays under the rollback limit.
    assert regression[0]["refusal_rate"].difference.ci_low > 0.1
    assert healthy[2].status == "pass" and regression[2].status == "pass"


@pytest.mark.slow
def test_run_quality_with_a_calibrated_endpoint_judge(env: Path) -> None:
    """Traffic mode, an OpenAI-compatible judge that agrees with the example set: judge metrics are evidence."""
    from mlflow import MlflowClient

    from lockgate.devtools.testing.judge import FakeJudgeServer
    from lockgate.evidence import evidence_payload
    from lockgate.jobs.context import RunContext
    from lockgate.jobs.quality import run_quality
    from lockgate.reports.index import list_reports

    s = spec(datetime(2026, 4, 1, tzinfo=UTC), 0.6, seed=21, current_rows=300)
    seed_logs(make_engine(f"sqlite:///{env / 'logs.db'}"), s)
    with FakeJudgeServer() as server, pytest.MonkeyPatch.context() as mp:
        write_policy(
            env,
            mp,
            sample_size=60,
            min_samples=5,  # few canary prompts repeat a champion prompt exactly at this sample size
            evidently_report=False,
            judge={"backend": "openai", "base_url": server.base_url, "model": "oracle", "concurrency": 8},
        )
        summary = run_quality(
            RunContext(MODEL, run_key="endpoint-run", data_interval=(s.current_start, s.current_end)),
            versions={"challenger": "2", "champion": "1"},
            rubrics=["relevance", "faithfulness", "safety", "pairwise"],
        )
        requests_first = len(server.requests)
        again = run_quality(
            RunContext(MODEL, run_key="endpoint-run", data_interval=(s.current_start, s.current_end)),
            versions={"challenger": "2", "champion": "1"},
            rubrics=["relevance", "faithfulness", "safety", "pairwise"],
        )
    assert summary.status == "ok" and summary.details["judge_trusted"] is True
    for name in ("embedding_relevance", "judge_relevance", "judge_faithfulness", "judge_safety", "unscored_rate"):
        m = summary.metrics[name]
        assert m.challenger.has_interval and m.champion.has_interval and m.difference.has_interval, name
    assert summary.metrics["judge_spearman"].model.value > 0.8
    assert summary.metrics["judge_relevance"].difference.value < 0  # the degraded challenger scores lower
    assert summary.metrics["win_rate"].challenger.has_interval
    assert summary.metrics["unscored_rate"].challenger.value == 0.0
    assert summary.sample_sizes["challenger"] >= 55 and summary.sample_sizes["pairs_scored"] >= 5
    assert requests_first > 100

    # Outputs: report, summary, latest copy, reports index, MLflow run with the artifacts.
    run_dir = Path(summary.report_path).parent
    html = (run_dir / "report.html").read_text()
    assert "<script>alert" not in html and 'onerror="fetch' not in html
    assert "jane.doe@example.com" not in html and "4111 1111 1111 1111" not in html
    assert read_summary(run_dir / "summary.json").metrics == summary.metrics
    quality = json.loads((run_dir / "quality_summary.json").read_text())
    assert quality["judge_trusted"] and quality["calibration"]["passed"] and quality["examples"]
    latest = read_summary(latest_summary_path(env / "reports", "quality", MODEL))
    assert latest.created_at == again.created_at
    entries = [e for e in list_reports(kind="quality", model_name=MODEL) if e.run_key == "endpoint-run"]
    assert len(entries) == 1 and entries[0].model_version == "2"
    run_id = summary.mlflow_run_ids["quality"]
    assert again.mlflow_run_ids["quality"] == run_id  # rerun of the same key: the same MLflow run
    artifacts = {a.path for a in MlflowClient().list_artifacts(run_id, "quality_report")}
    assert {"quality_report/report.html", "quality_report/summary.json"} <= artifacts
    extra = evidence_payload(summary)
    assert extra["summary_path"].endswith("summary.json") and "embedding_relevance.difference" in extra["headline"]


@pytest.mark.slow
def test_without_traffic_the_challenger_is_replayed_and_compared_paired(env: Path) -> None:
    """A registered challenger with no canary traffic: generation on the champion's sampled prompts."""
    from mlflow import MlflowClient

    from lockgate.devtools.testing.registry import register_stub_version
    from lockgate.devtools.tiny_model import build_tiny_model
    from lockgate.jobs.context import RunContext
    from lockgate.jobs.quality import judge_quality, model_directory, plan_quality, replay_challenger
    from lockgate.models import register_model

    s = TrafficSpec(
        model_name=MODEL,
        reference_start=datetime(2026, 5, 1, tzinfo=UTC),
        reference_rows=0,
        current_rows=120,
        current_versions=[VersionTraffic("1")],
        seed=31,
    )
    seed_logs(make_engine(f"sqlite:///{env / 'logs.db'}"), s)
    uri = f"sqlite:///{env / 'mlflow.db'}"
    champion = register_stub_version(MODEL, uri, alias="champion")
    source = build_tiny_model(env / "challenger-src", seed=5)
    challenger = register_model(MODEL, source, alias="challenger", tracking_uri=uri)
    assert champion == "1" and challenger == "2"
    with pytest.MonkeyPatch.context() as mp:
        write_policy(env, mp, sample_size=30, evidently_report=False, replay_max_new_tokens=8)
        plan = plan_quality(
            RunContext(MODEL, run_key="replay-run", data_interval=(s.current_start, s.current_end)),
            rubrics=["relevance", "pairwise"],
        )
        assert (plan.challenger_version, plan.champion_version, plan.mode) == ("2", "1", "replay")
        replay_path = replay_challenger(plan)
        assert replay_path is not None
        rows = [json.loads(line) for line in Path(replay_path).read_text().splitlines()]
        assert len(rows) == 30 and all(r["model_version"] == "2" for r in rows)
        assert replay_challenger(plan) == replay_path  # rerun: nothing generated again
        summary = judge_quality(plan, replay_path)
        # The source directory gone, the version's MLflow artifacts are downloaded and loaded instead.
        shutil.rmtree(source)
        model_dir = model_directory(MODEL, "2", env)
        assert (model_dir / "config.json").exists() and any(model_dir.glob("tokenizer*"))
        assert MlflowClient(uri, uri).get_model_version(MODEL, "2").tags["lockgate.source_path"] == str(source)
    assert summary.details["mode"] == "replay"
    rel = summary.metrics["embedding_relevance"]
    assert rel.difference.n == rel.champion.n  # paired on the same prompts
    assert rel.difference.value < 0  # random-weight gibberish is less relevant than the logged answers
    assert summary.metrics["error_rate"].challenger is None  # replayed answers are not production errors
    assert summary.metrics["error_rate"].champion is not None
    assert summary.sample_sizes["pairs"] >= 20
    # The placeholder judge fails calibration: no judge metric or win rate is evidence, and the summary says why.
    assert "judge_relevance" not in summary.metrics and "win_rate" not in summary.metrics
    assert "failed calibration" in (summary.message or "")
    assert summary.details["quality"]["untrusted_judge_metrics"]


def test_no_logs_in_the_window_is_insufficient_data(env: Path) -> None:
    from lockgate.devtools.testing.registry import register_stub_version
    from lockgate.devtools.tiny_model import build_tiny_model
    from lockgate.jobs.context import RunContext
    from lockgate.jobs.quality import run_quality
    from lockgate.logs.schema import create_schema
    from lockgate.models import register_model

    # The versions exist and so does the table, whatever else this module's tests did; the window has no row.
    uri = f"sqlite:///{env / 'mlflow.db'}"
    champion = register_stub_version(MODEL, uri)
    challenger = register_model(MODEL, build_tiny_model(env / "no-logs-src", seed=6), tracking_uri=uri)
    create_schema(make_engine(f"sqlite:///{env / 'logs.db'}"))
    with pytest.MonkeyPatch.context() as mp:
        write_policy(env, mp, sample_size=20, evidently_report=False)
        summary = run_quality(
            RunContext(
                MODEL,
                run_key="empty",
                data_interval=(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC)),
            ),
            versions={"challenger": challenger, "champion": champion},
            rubrics=["safety"],
        )
    assert summary.status == "insufficient_data"
    assert "embedding_relevance" not in summary.metrics
    assert verdict(summary, "relevance_regression").status == "missing"


TONE_RUBRIC = """---
name: tone
version: v1
description: Whether the answer is polite (yes/no).
scale: {"polite": 1, "rude": 0}
---
You review the tone of a support assistant.
[USER REQUEST]
{{ prompt }}
[END USER REQUEST]
[RESPONSE]
{{ response }}
[END RESPONSE]
Is the response polite? Reply polite or rude.
"""


def tone_judge(payload: dict[str, object]) -> str:
    """A stand-in tone judge: polite when the answer has an even number of characters."""
    from lockgate.devtools.testing.judge import fenced

    text = payload["messages"][-1]["content"]  # type: ignore[index]
    return "polite" if len(fenced(text)["RESPONSE"].strip()) % 2 == 0 else "rude"


@pytest.mark.slow
def test_a_custom_rubric_file_is_scored_and_gated_without_code(env: Path, tmp_path: Path) -> None:
    """A rubric file in the policy's rubrics_dir, a two-labeller set for it: judge_tone is evidence a gate reads."""
    from lockgate.devtools.testing.judge import FakeJudgeServer
    from lockgate.jobs.context import RunContext
    from lockgate.jobs.quality import run_quality
    from lockgate.policy.schema import Gate

    rubrics_dir = tmp_path / "rubrics"
    rubrics_dir.mkdir()
    (rubrics_dir / "tone.jinja").write_text(TONE_RUBRIC)
    cal = tmp_path / "tone_v1.jsonl"
    rows = []
    for n in range(24):
        response = "Happy to help with that." + "!" * n
        label = 1 if len(response) % 2 == 0 else 0
        rows.append(
            {
                "id": f"t{n}",
                "rubric": "tone",
                "prompt": "Where is my order?",
                "response": response,
                "labels": {"ana": label, "ben": label if n % 6 else 1 - label},
            }
        )
    cal.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cal.with_name("tone_v1.meta.yaml").write_text(
        "name: tone_v1\ndescription: Tone labels for the test.\nlabels_from: people\n"
        "method: Two reviewers labelled each answer.\nlabellers: [{id: ana}, {id: ben}]\n"
    )
    s = spec(datetime(2026, 7, 1, tzinfo=UTC), 0.0, seed=51, current_rows=300)
    seed_logs(make_engine(f"sqlite:///{env / 'logs.db'}"), s)
    with FakeJudgeServer(answer=tone_judge) as server, pytest.MonkeyPatch.context() as mp:
        write_policy(
            env,
            mp,
            sample_size=60,
            min_samples=5,
            evidently_report=False,
            rubrics_dir=str(rubrics_dir),
            rubrics=["tone"],
            calibration_set=str(cal),
            judge={"backend": "openai", "base_url": server.base_url, "model": "tone", "concurrency": 8},
        )
        summary = run_quality(
            RunContext(MODEL, run_key="custom-rubric", data_interval=(s.current_start, s.current_end)),
            versions={"challenger": "2", "champion": "1"},
        )
    assert summary.details["judge_trusted"] is True
    tone = summary.metrics["judge_tone"]
    assert tone.unit == "share" and "polite" in (tone.description or "")
    assert 0 < tone.challenger.value < 1 and tone.difference.has_interval
    ref = assess_evidence("quality", summary, summary.created_at, 48, MODEL)

    def tone_gate(threshold: float) -> object:
        gate = Gate(
            name="tone",
            metric="quality.judge_tone",
            direction="higher_is_better",
            threshold=threshold,
            confidence=0.95,
        )
        return evaluate_gate(gate, summary, ref, "2", "1")

    assert tone_gate(0.05).status == "pass"
    assert tone_gate(0.99).status == "fail"
    # The report names the set, its labellers and their own agreement.
    html = Path(summary.report_path).read_text()
    assert "tone_v1" in html and "ana" in html and "ben" in html and "items both labelled" in html
    assert "quality.judge_tone" in html
