"""Every DAG, run without a model, fans out over the policy's watched models: one mapped chain per model.

The policy watches two models of a user's own (`support-bot`, `search-ranker`), neither the demo's.
Each has a champion and no challenger, and neither has traffic, so each real job ends fast (an error
or insufficient-data summary, a promotion decision with nothing to promote). `search-ranker`'s first
job in each DAG is made to fail (a fault injected in the job function the task calls; `dag.test()`
runs tasks in this process): its own chain stops, `support-bot`'s runs to the end and publishes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.devtools.synthetic import TrafficSpec, seed_logs
from lockgate.devtools.testing.registry import policy_for, register_stub_version, sqlite_mlflow_store
from lockgate.evidence import latest_summary_path, read_summary
from lockgate.logs.db import make_engine

DAGS = Path(__file__).resolve().parents[2] / "dags"
MODELS = ["support-bot", "search-ranker"]  # the policy's order: map index 0, then 1
OK, BROKEN = MODELS
LOGICAL = datetime(2026, 1, 9, 3, tzinfo=UTC)

# DAG id -> (the job function its first per-model task calls, the per-model tasks in chain order)
FAN_OUT: dict[str, tuple[str, list[str]]] = {
    "lockgate_benchmark": ("lockgate.jobs.benchmark.run_from_params", ["benchmark", "publish"]),
    "lockgate_drift": ("lockgate.jobs.drift.run_from_params", ["drift_report"]),
    "lockgate_quality": ("lockgate.jobs.quality.plan_quality", ["plan", "needs_replay", "replay", "judge"]),
    "lockgate_live": ("lockgate.jobs.live.run_from_params", ["live_evidence"]),
    "lockgate_promotion": (
        "lockgate.jobs.promotion.promotion_task",
        ["decide_and_act", "wait_for_approval", "act_on_approval"],
    ),
}
# Tasks of the model that runs that are skipped, not run: nothing to replay (its challenger is missing),
# so `replay` never takes the `gpu` pool's slot.
SKIPPED = {"lockgate_quality": {"needs_replay", "replay"}}
EVIDENCE_URI = {
    "lockgate_benchmark": "x-lockgate://evidence/benchmark",
    "lockgate_drift": "x-lockgate://evidence/drift",
    "lockgate_quality": "x-lockgate://evidence/quality",
    "lockgate_live": "x-lockgate://evidence/live",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, airflow_db: str) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("fanout")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("LOCKGATE_REPORTS_DIR", str(home / "reports"))
        uri = sqlite_mlflow_store(home / "mlflow.db")
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("LOCKGATE_LOGS_DB_URL", f"sqlite:///{home / 'logs.db'}")
        mp.setenv("LOCKGATE_CONFIG", str(home / "policy.yaml"))
        (home / "policy.yaml").write_text(yaml.safe_dump(policy_for(*MODELS).model_dump(mode="json")))
        # The log table exists (a model nobody watches served a few requests); the watched ones have none.
        engine = make_engine(f"sqlite:///{home / 'logs.db'}")
        seed_logs(engine, TrafficSpec(model_name="not-watched", reference_rows=5, current_rows=5))
        engine.dispose()
        for model in MODELS:
            register_stub_version(model, uri, alias="champion", artifact_root=home / "artifacts")
        yield home


def _model_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The model a job call serves: its `RunContext`'s."""
    from lockgate.jobs.context import RunContext

    for value in (*args, *kwargs.values()):
        if isinstance(value, RunContext):
            return value.model
    return None


def _break_one_model(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """`target` (module.function) raises for BROKEN and runs for real for every other model."""
    import importlib

    module_name, func_name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    real: Callable[..., Any] = getattr(module, func_name)

    def for_one_model(*args: Any, **kwargs: Any) -> Any:
        if _model_of(args, kwargs) == BROKEN:
            raise RuntimeError(f"injected failure for {BROKEN}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, func_name, for_one_model)


def test_watched_models_are_every_model_the_policy_watches_or_the_one_asked_for(world: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from lockgate.jobs.promotion import watched_model_names

    assert watched_model_names(None) == MODELS
    assert watched_model_names("") == MODELS
    assert watched_model_names(" search-ranker ") == ["search-ranker"]
    with pytest.raises(AirflowFailException, match="lockgate-demo"):
        watched_model_names("lockgate-demo")


def test_a_run_started_by_a_new_challenger_serves_that_model_alone(world: Path) -> None:
    from types import SimpleNamespace

    from lockgate.assets import BENCHMARK, CHALLENGER_ALIAS
    from lockgate.dag_tasks import watched_models

    def event(model: str) -> SimpleNamespace:
        return SimpleNamespace(extra={"from_trigger": True, "payload": {"model": model, "version": "2"}})

    listing = watched_models.function
    by_watch = {CHALLENGER_ALIAS: [event("search-ranker")]}
    assert listing(params={"model": None}, triggering_asset_events=by_watch) == ["search-ranker"]
    # A model dropped from the policy since the watch saw it: nothing to evaluate.
    assert listing(params={}, triggering_asset_events={CHALLENGER_ALIAS: [event("lockgate-demo")]}) == []
    # Any other trigger (the schedule, another Asset, the form) is not narrowed.
    assert listing(params={}, triggering_asset_events={BENCHMARK: [event("search-ranker")]}) == MODELS
    assert listing(params={"model": "support-bot"}, triggering_asset_events=by_watch) == ["support-bot"]


@pytest.mark.parametrize("dag_id", ["lockgate_benchmark", "lockgate_quality"])
def test_the_benchmark_and_quality_dags_run_on_a_new_challenger_as_well_as_on_schedule(dag_id: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py")).dags[dag_id]
    asset = dag.timetable.asset_condition  # AssetOrTimeSchedule: the Asset beside the cron
    assert asset.uri == "x-lockgate://registry/challenger"
    assert dag.timetable.timetable.expression in ("0 0 * * *", "0 2 * * *")  # the daily cron beside it
    (watcher,) = asset.watchers
    assert type(watcher.trigger).__name__ == "ChallengerAliasTrigger"


@pytest.mark.parametrize("dag_id", sorted(FAN_OUT))
def test_a_run_without_a_model_maps_every_watched_model_and_one_failure_stops_only_its_chain(
    dag_id: str,
    world: Path,
    load_dag: Callable[[Path, str], Any],
    asset_events: Callable[[str, str], list[dict]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target, chain = FAN_OUT[dag_id]
    _break_one_model(monkeypatch, target)
    dag = load_dag(DAGS / f"{dag_id}.py", dag_id)
    for t in dag.tasks:
        t.retries = 0  # the injected failure is not transient; the DAGs' retry delays would only slow this

    run = dag.test(logical_date=LOGICAL)

    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert states.pop(("watched_models", -1)) == "success"
    # One mapped instance per watched model for every per-model task, nothing else.
    assert set(states) == {(task, i) for task in chain for i in (0, 1)}, states
    skipped = SKIPPED.get(dag_id, set())
    assert all(states[(task, 0)] == ("skipped" if task in skipped else "success") for task in chain), states
    assert states[(chain[0], 1)] == "failed", states
    assert all(states[(task, 1)] == "upstream_failed" for task in chain[1:]), states
    assert run.state == "failed"

    if dag_id in EVIDENCE_URI:
        # The model that ran published its evidence, from its own mapped task; the broken one published none.
        (event,) = asset_events(EVIDENCE_URI[dag_id], run.run_id)
        assert event.get("model", event.get("model_name")) == OK, event
        kind = EVIDENCE_URI[dag_id].rsplit("/", 1)[1]
        summary = read_summary(latest_summary_path(world / "reports", kind, OK))  # type: ignore[arg-type]
        assert (summary.model_name, summary.run_id, summary.dag_id) == (OK, run.run_id, dag_id)
        assert not latest_summary_path(world / "reports", kind, BROKEN).exists()  # type: ignore[arg-type]
