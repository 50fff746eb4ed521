"""The drift reference anchored at the champion's promotion: a topic shift that began two days before the
current window, on growing traffic, is still compared against traffic from before it (real MiniLM)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from lockgate.devtools.synthetic import TrafficSpec, VersionTraffic, seed_logs
from lockgate.devtools.testing.registry import register_stub_version, sqlite_mlflow_store
from lockgate.jobs.context import RunContext
from lockgate.jobs.drift import drift_summary_of, run_drift
from lockgate.logs.db import make_engine

pytestmark = pytest.mark.slow

PROMOTED = datetime(2026, 4, 8, tzinfo=UTC)
CURRENT = (PROMOTED + timedelta(days=3), PROMOTED + timedelta(days=4))
MODEL = "shift-m"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("drift_reference")
    policy = {
        "models": [
            {"name": MODEL, "require_approval": False, "windows": {"current": {"mode": "data_interval"}}},
            {
                "name": "trailing-view",
                "require_approval": False,
                "windows": {"reference": {"mode": "trailing", "days": 7}, "current": {"mode": "data_interval"}},
            },
        ],
        "drift": {"sample_size": 600, "embedding_sample_size": 120, "min_rows": 50, "evidently_report": False},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))
        mp.setenv("LOCKGATE_LOGS_DB_URL", f"sqlite:///{home / 'logs.db'}")
        mp.setenv("LOCKGATE_CONFIG", str(home / "policy.yaml"))
        uri = sqlite_mlflow_store(home / "mlflow.db")
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        (home / "policy.yaml").write_text(yaml.safe_dump(policy))
        from lockgate.registry.adapter import ModelRegistry

        engine = make_engine(f"sqlite:///{home / 'logs.db'}")
        for name in (MODEL, "trailing-view"):
            version = register_stub_version(name, uri, alias="champion", artifact_root=home / "artifacts")
            ModelRegistry().set_tags(name, version, {"lockgate.promoted_at": PROMOTED.isoformat()})
            # the week before the promotion, then a quiet day after it (no shift)
            seed_logs(
                engine,
                TrafficSpec(
                    model_name=name,
                    reference_start=PROMOTED - timedelta(days=7),
                    reference_days=8,
                    current_days=1,
                    reference_rows=800,
                    current_rows=0,
                    reference_versions=[VersionTraffic(version)],
                    seed=1,
                ),
            )
            # the shift starts two days before the current window, on traffic that has grown fourfold
            seed_logs(
                engine,
                TrafficSpec(
                    model_name=name,
                    reference_start=PROMOTED,
                    reference_days=1,
                    current_days=3,
                    reference_rows=0,
                    current_rows=1200,
                    reference_versions=[VersionTraffic(version)],
                    current_versions=[VersionTraffic(version)],
                    topic_drift=0.6,
                    seed=2,
                ),
            )
        engine.dispose()
        yield home


def test_a_shift_that_began_before_the_current_window_is_flagged_with_the_default_reference(env) -> None:
    evidence = run_drift(RunContext(MODEL, run_key="anchored", data_interval=CURRENT))
    drift = drift_summary_of(evidence)
    assert drift.reference.mode.startswith("champion_baseline 7 d before the promotion")
    assert drift.reference.end == PROMOTED and drift.reference.start == PROMOTED - timedelta(days=7)
    assert "prompt_embedding" in drift.drifted_columns

    trailing = drift_summary_of(run_drift(RunContext("trailing-view", run_key="trailing", data_interval=CURRENT)))
    assert trailing.reference.mode.startswith("trailing")
    effect = {c.column: c.effect_size for c in drift.columns}
    trailing_effect = {c.column: c.effect_size for c in trailing.columns}
    # the trailing week already holds most of the shifted traffic: far less of the shift is visible
    assert trailing_effect["prompt_embedding"] < effect["prompt_embedding"] - 0.1
