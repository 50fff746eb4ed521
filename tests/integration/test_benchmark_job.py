"""The benchmark job end to end on the tiny model: registry, MLflow runs, report, summary, gates, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.benchmark import harness
from lockgate.devtools.testing.registry import sqlite_mlflow_store
from lockgate.devtools.tiny_model import build_tiny_model
from lockgate.evidence import latest_summary_path, read_summary
from lockgate.policy.schema import Policy, parse_policy
from lockgate.registry.artifacts import register_directory
from lockgate.settings import DEFAULT_POLICY_PATH, get_settings

MODEL = "bench-demo"
FAST = {
    "batch_sizes": [1, 2],
    "max_new_tokens": 3,
    "repetitions": 2,
    "warmups": 1,
    "prompt_samples": 4,
    "cpu_threads": 1,
    # Two repetitions on a shared CI machine say nothing about noise; validity has its own tests.
    "max_cv": 100.0,
}


def _policy(**benchmark: Any) -> Policy:
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    data["models"][0]["name"] = MODEL
    data["benchmark"] = {**data["benchmark"], **FAST, **benchmark}
    data["statistics"]["bootstrap_resamples"] = 200
    return parse_policy(data, source="test")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One embedded MLflow store and two registered tiny versions for the whole module."""
    home = tmp_path_factory.mktemp("bench-job")
    mp = pytest.MonkeyPatch()
    mp.setenv("LOCKGATE_HOME", str(home))
    mp.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))
    mp.setenv("MLFLOW_TRACKING_URI", sqlite_mlflow_store(home / "mlflow.db"))
    mp.setenv("LOCKGATE_LOGS_DB_URL", f"sqlite:///{home / 'logs.db'}")
    policy_file = home / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(_policy().model_dump(mode="json")))
    mp.setenv("LOCKGATE_CONFIG", str(policy_file))
    model_dir = build_tiny_model(home / "tiny", seed=0)
    champion = register_directory(MODEL, model_dir, alias="champion")
    challenger = register_directory(MODEL, model_dir, alias="challenger")
    try:
        yield {"home": home, "model_dir": model_dir, "champion": champion, "challenger": challenger}
    finally:
        mp.undo()


def _client() -> Any:
    from mlflow import MlflowClient

    from lockgate.settings import resolve_mlflow_uri

    uri = resolve_mlflow_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_benchmark_publishes_evidence_the_gates_use(env: dict[str, Any]) -> None:
    from lockgate.evidence import evidence_payload
    from lockgate.jobs.benchmark import run_benchmark
    from lockgate.jobs.context import RunContext
    from lockgate.policy.gates import assess_evidence, evaluate_gate
    from lockgate.reports.history import history_series, state_engine
    from lockgate.reports.index import list_reports

    policy = _policy()
    summary = run_benchmark(
        RunContext(MODEL, run_key="run-1", dag_id="lockgate_benchmark", run_id="run-1"), policy=policy
    )
    assert summary.status == "ok", summary.message
    assert summary.valid
    assert (summary.challenger_version, summary.champion_version) == (env["challenger"], env["champion"])
    for name in ("ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99", "tpot_ms_p50", "itl_ms_p50", "e2e_ms_p50",
                 "e2e_ms_p99", "prefill_tokens_per_s", "decode_tokens_per_s", "peak_memory_mb"):  # fmt: skip
        for key in (name, f"{name}.bs2"):
            m = summary.metrics[key]
            assert m.challenger and m.champion and m.ratio, key
            assert m.ratio.confidence == 0.95 and m.ratio.n == 2
    assert "mfu_prefill" not in summary.metrics  # CPU: omitted, with a note
    assert any("not reported on CPU" in n for n in summary.details["notes"])
    assert summary.details["workload"]["source"] == "synthetic"  # no log table in this store
    assert summary.details["fingerprint"]["device"] == "cpu"

    # Files: report, summary, latest copy.
    report = Path(summary.report_path or "")
    assert report.exists() and "<svg" in report.read_text()
    assert read_summary(report.with_name("summary.json")).content_hash == summary.content_hash
    latest = latest_summary_path(get_settings().reports_dir, "benchmark", MODEL)
    assert read_summary(latest).content_hash == summary.content_hash

    # The promotion's own gate code reads it: a verdict, not "missing".
    gate = next(g for g in policy.model(MODEL).gates if g.name == "ttft_regression")
    ref = assess_evidence("benchmark", summary, summary.created_at, 48, MODEL)
    verdict = evaluate_gate(gate, summary, ref, env["challenger"], env["champion"])
    assert verdict.status in ("pass", "fail"), verdict.reason

    # MLflow: one run per version, linked to its model version.
    client = _client()
    assert set(summary.mlflow_run_ids) == {"challenger", "champion"}
    for role, rid in summary.mlflow_run_ids.items():
        run = client.get_run(rid)
        version = env[role]
        assert run.data.tags["lockgate.model_version"] == version
        # both spellings of the model, as drift's and quality's runs carry them
        assert run.data.tags["lockgate.model_name"] == run.data.tags["lockgate.model"] == MODEL
        assert run.data.params["device"] == "cpu"
        assert run.data.metrics["ttft_ms_p50"] == getattr(summary.metrics["ttft_ms_p50"], role).value
        assert run.info.status == "FINISHED"
        artifacts = {a.path for a in client.list_artifacts(rid, "benchmark")}
        assert artifacts == {"benchmark/report.html", "benchmark/summary.json"}
        mv = client.get_model_version(MODEL, version)
        assert mv.tags["lockgate.benchmark_run_id"] == rid
    assert "ratio.ttft_ms_p50" in client.get_run(summary.mlflow_run_ids["challenger"]).data.metrics

    entries = [e for e in list_reports(kind="benchmark", model_name=MODEL) if e.run_key == "run-1"]
    assert len(entries) == 1 and entries[0].status == "ok" and entries[0].dag_id == "lockgate_benchmark"

    extra = evidence_payload(summary)
    assert extra["status"] == "ok" and extra["summary_path"].endswith("summary.json")
    assert "ttft_ms_p50.ratio" in extra["headline"] and json.dumps(extra)
    assert (
        extra["kind"] == "benchmark" and extra["run_key"] == "run-1" and extra["evidence_hash"] == summary.content_hash
    )

    # Idempotent per run key: the same key replaces its runs instead of adding more.
    again = run_benchmark(RunContext(MODEL, run_key="run-1"), policy=policy)
    exp = client.get_experiment_by_name(f"lockgate/{MODEL}")
    active = client.search_runs(
        [exp.experiment_id], filter_string="tags.`lockgate.kind` = 'benchmark' and tags.`lockgate.run_key` = 'run-1'"
    )
    assert sorted(r.info.run_id for r in active) == sorted(again.mlflow_run_ids.values())
    assert len([e for e in list_reports(kind="benchmark", model_name=MODEL) if e.run_key == "run-1"]) == 1

    # The history page's rows: this run's estimates per version, once, the rerun's values.
    history = history_series(state_engine(), MODEL, again.created_at - timedelta(days=1))
    ttft = [(p.role, p.version, p.value) for p in history.points[("benchmark", "ttft_ms_p50")] if p.run_key == "run-1"]
    assert sorted(ttft) == [
        ("challenger", env["challenger"], again.metrics["ttft_ms_p50"].challenger.value),
        ("champion", env["champion"], again.metrics["ttft_ms_p50"].champion.value),
    ]
    assert [r.run_key for r in history.runs].count("run-1") == 1


def _error(summary: Any, *fragments: str) -> None:
    assert summary.status == "error" and summary.valid is False
    assert summary.metrics == {}
    for f in fragments:
        assert f in (summary.message or ""), summary.message
    html = Path(summary.report_path).read_text()
    assert "What went wrong" in html


def test_unknown_version_and_missing_alias_end_in_an_error_summary(env: dict[str, Any]) -> None:
    from lockgate.jobs.benchmark import run_benchmark
    from lockgate.jobs.context import RunContext

    _error(
        run_benchmark(RunContext(MODEL, run_key="bad-version"), versions=["99", "1"], policy=_policy()), "no version 99"
    )
    _error(run_benchmark(RunContext("nobody", run_key="no-alias"), policy=_policy()), "alias 'challenger'")


def test_not_a_causal_lm_and_missing_artifacts(env: dict[str, Any], tmp_path: Path) -> None:
    from transformers import ViTConfig

    from lockgate.jobs.benchmark import run_benchmark
    from lockgate.jobs.context import RunContext

    vit = tmp_path / "vit"
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(vit)
    not_lm = register_directory(MODEL, vit)
    summary = run_benchmark(RunContext(MODEL, run_key="not-lm"), versions=[not_lm, env["champion"]], policy=_policy())
    _error(summary, "not a causal LM")
    assert summary.challenger_version == not_lm
    # The failed attempt is still linked from MLflow.
    assert _client().get_run(summary.mlflow_run_ids["challenger"]).info.status == "FAILED"

    empty = tmp_path / "empty"
    empty.mkdir()
    missing = register_directory(MODEL, empty)
    _error(
        run_benchmark(RunContext(MODEL, run_key="missing"), versions=[missing], policy=_policy()), "artifacts missing"
    )


def test_required_gpu_and_bad_overrides(env: dict[str, Any]) -> None:
    import torch

    from lockgate.jobs.benchmark import run_benchmark
    from lockgate.jobs.context import RunContext

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    _error(run_benchmark(RunContext(MODEL, run_key="no-gpu"), policy=_policy(require_gpu=True)), "requires a GPU")
    _error(
        run_benchmark(RunContext(MODEL, run_key="bad-bs"), batch_sizes=[0], policy=_policy()), "benchmark.batch_sizes"
    )


def test_out_of_memory_at_one_batch_size_keeps_the_rest(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from lockgate.jobs.benchmark import run_benchmark
    from lockgate.jobs.context import RunContext

    real = harness.Session.measure

    def measure(self: harness.Session, role: str, config: str, bs: int, req: object, rep: int) -> object:
        if bs == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, role, config, bs, req, rep)  # type: ignore[arg-type]

    monkeypatch.setattr(harness.Session, "measure", measure)
    summary = run_benchmark(RunContext(MODEL, run_key="oom"), policy=_policy())
    assert summary.status == "ok" and summary.valid
    assert "ttft_ms_p50" in summary.metrics and "ttft_ms_p50.bs2" not in summary.metrics
    assert summary.message is not None and "batch size 2: out_of_memory" in summary.message
    assert summary.details["failures"][0]["kind"] == "out_of_memory"
    assert "out of memory" in Path(summary.report_path or "").read_text()


def test_cli_runs_the_job(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from lockgate.cli import main

    assert main(["run", "benchmark", "--model", MODEL]) == 0
    out = capsys.readouterr().out
    assert f"benchmark {MODEL}: ok" in out and "ttft_ms_p50" in out and "report:" in out
