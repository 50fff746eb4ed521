"""Judge the quality of each watched model's `challenger` against its `champion` on production prompts, with intervals.

Runs daily for every model the policy watches, only for the model named in the form (an unwatched
model fails at once), and for a model whose `challenger` alias just moved to a new version (the
`lockgate_challenger_alias` Asset, fired by the triggerer's watch on the registry). Each model gets
its own mapped plan → replay → judge chain: one model's failure stops only its own chain, and its
tasks never wait on another model's.

1. **plan**: resolves the versions (aliases unless given in the form) and the window (this run's
   data interval, widened to the policy's `min_hours`), and checks whether the challenger served
   traffic in it;
2. **replay** (pool and queue `gpu`): only for a challenger without traffic, generates its answers
   to the champion's sampled, redacted prompts. `needs_replay` is skipped for every other plan,
   and `replay` with it before it is queued, so a run with nothing to replay never waits for the `gpu` pool's slot
   (a benchmark may hold it for hours);
3. **judge**: samples both versions' logs (deterministically, redacted), scores MiniLM relevance and
   grounding, asks the policy's judge (local model or OpenAI-compatible endpoint) every rubric and the
   position-swapped pairwise question, checks the judge against the policy's calibration set (its
   manifest says who labelled it), bootstraps every estimate, and writes the quality report,
   `summary.json` (what the promotion gates read), an MLflow run with the report, and the
   `lockgate_quality_summary` Asset event.

A judge that fails calibration is reported but not used as evidence: its metrics are left out.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task, task_group

from lockgate.assets import CHALLENGER_ALIAS, QUALITY
from lockgate.dag_tasks import watched_models

RUBRICS = ["relevance", "faithfulness", "safety", "refusal", "pairwise"]


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    # Daily, and at once for the model whose `challenger` alias moved (the triggerer's registry watch).
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"), assets=CHALLENGER_ALIAS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=1)},
    tags=["lockgate"],
    params={
        "model": Param(
            None,
            type=["null", "string"],
            title="Model",
            description="A registered model watched by the policy. Empty: every watched model.",
        ),
        "challenger_version": Param(
            None,
            type=["null", "string"],
            title="Challenger version",
            description="Empty: the version the `challenger` alias points at.",
        ),
        "champion_version": Param(
            None,
            type=["null", "string"],
            title="Champion version",
            description="Empty: the version the `champion` alias points at.",
        ),
        "sample_size": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Sample size per version",
            description="Empty: the policy's quality.sample_size.",
        ),
        "rubrics": Param(
            RUBRICS,
            type="array",
            items={"type": "string", "enum": RUBRICS},
            title="Rubrics",
            description="Judge rubrics to run; pairwise compares challenger and champion on the same prompts.",
        ),
    },
)
def lockgate_quality() -> None:
    @task
    def plan(model: str, params: dict | None = None) -> dict:
        from lockgate.jobs.quality import QualityParams, plan_quality
        from lockgate.task_edge import run_context, task_errors

        with task_errors():
            p = QualityParams.from_params({**(params or {}), "model": model})
            # Manual and asset-triggered runs may have no data interval: the run's own time ends the window.
            ctx = run_context(p.model).interval_or_run_after()
            planned = plan_quality(ctx, p.versions, p.sample_size, p.rubrics)
        return planned.model_dump(mode="json")

    @task
    def needs_replay(plan: dict) -> None:
        """Skipped when there is nothing to replay, and `replay` with it, before it takes the `gpu` pool's slot.

        A skip, not `task.short_circuit`: inside a mapped task group Airflow 3.3 looks for a short
        circuit's decision at the wrong map index and runs the task anyway; a skipped upstream is
        honoured per map index by every trigger rule.
        """
        from airflow.sdk.exceptions import AirflowSkipException

        if plan.get("mode") != "replay":
            raise AirflowSkipException(f"nothing to replay: the plan's mode is {plan.get('mode')!r}")

    @task(pool="gpu", queue="gpu")
    def replay(plan: dict) -> str | None:
        from lockgate.jobs.quality import QualityPlan, replay_challenger
        from lockgate.task_edge import task_errors

        with task_errors():
            return replay_challenger(QualityPlan.model_validate(plan))

    # none_failed: a skipped replay (nothing to replay) leaves `replay_path` None and the judge runs.
    @task(outlets=[QUALITY], trigger_rule="none_failed")
    def judge(plan: dict, replay_path: str | None, outlet_events=None) -> dict:
        from lockgate.evidence import evidence_payload
        from lockgate.jobs.quality import QualityPlan, judge_quality
        from lockgate.task_edge import task_errors

        with task_errors():
            summary = judge_quality(QualityPlan.model_validate(plan), replay_path)
        extra = evidence_payload(summary)
        outlet_events[QUALITY].extra = extra
        return extra

    # A mapped group: each model's replay and judge wait for that model's plan only.
    @task_group(prefix_group_id=False)
    def each_model(model: str) -> None:
        """One watched model: plan, replay when needed, judge."""
        planned = plan(model)
        replayed = replay(planned)
        needs_replay(planned) >> replayed
        judge(planned, replayed)

    each_model.expand(model=watched_models())


lockgate_quality()
