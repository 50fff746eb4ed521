"""Move the `champion` alias when a challenger's evidence passes every gate and a listed approver approved it.

For each watched model (or only the one named in the form; an unwatched model fails at once) this DAG
runs its own mapped chain, independent of the other models' (one model's failure stops only its chain):

1. **decide_and_act**: reads the latest benchmark, drift, quality and live summaries and the registry's
   aliases, applies the policy's gates (`include/lockgate.yaml`), and acts: tags the challenger
   `awaiting_approval` / `gates_failed` / `rejected`, promotes it (`previous_champion` := the old
   champion, `champion` := the challenger) once a listed approver approved *this* evidence, or rolls
   the champion back to `previous_champion` when it breaches a rollback gate. It writes a decision page
   (link in the version's `lockgate.decision_report` tag and in the Lockgate menu) and the audit trail;
2. **wait_for_approval**: in a run a person triggers, when an approval is due, asks for it in
   Airflow's **Required actions** inbox (Approve / Reject, for the policy's approvers) and waits in
   Airflow's triggerer (no worker slot) until `approval_wait_minutes` pass. Scheduled and
   asset-triggered runs (and the run queued by unpausing) never wait and never ask in the inbox:
   they decide and end, so a waiting approval never holds the run slots that a run a person
   triggers needs; the next run (every 30 minutes, or when evidence lands) acts on an approval
   tag set meanwhile;
3. **act_on_approval**: decides again as soon as a person answered.

To approve, either

* answer the run's request in Airflow's Required actions (Browse → Required Actions, or the
  task's Required Actions tab). Airflow records who answered from its login, so the approval is
  **authenticated** (decision page, audit trail). Only the policy's approvers may answer (they are
  the request's assigned users: Airflow user ids, the username with the local stack's simple auth
  manager); an answer from anyone else that Airflow lets through is refused and recorded, and
  nothing moves; or
* set the tags `lockgate.approval=approved` and `lockgate.approved_by=<your name>` on the challenger
  version in the MLflow UI, or run `lockgate approve MODEL VERSION --by NAME`: a name that is only
  asserted, recorded as **unauthenticated**.

The first answer ends the wait: an inbox answer resumes the task at once and the tag poll stops;
an approval tag found first ends it and the inbox request is no longer pending ("no response
received"). When nobody answers before `approval_wait_minutes`, the run ends and the next run checks
the tags again (the inbox request of an ended run cannot be answered any more).

Runs whenever new evidence lands (the four evidence Assets) and every 30 minutes. Alias moves run in
the one-slot pool `lockgate_promotion` and under a lock in lockgate's database, so two runs (or a run
and the CLI) never move an alias twice; that is why up to four runs may be active at once (people's
runs waiting for an answer do not queue each other or the schedule).
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task, task_group

from lockgate.assets import BENCHMARK, DRIFT, LIVE, QUALITY
from lockgate.dag_tasks import watched_models
from lockgate.registry.approval_wait import AwaitApprovalOperator


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/30 * * * *", timezone="UTC"),
        assets=(BENCHMARK | DRIFT | QUALITY | LIVE),
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Safe above 1: alias moves are serialised by the pool and the database lock (see the doc above).
    max_active_runs=4,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=1)},
    tags=["lockgate"],
    params={
        "model": Param(
            None,
            type=["null", "string"],
            title="Model",
            description="A registered model watched by the policy. Empty: every watched model.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Decide and write the decision page, but move no alias and set no tag.",
        ),
        "approval_wait_minutes": Param(
            25,
            type="integer",
            minimum=0,
            maximum=1440,
            title="Wait for an approval (minutes)",
            description="How long a run you trigger waits, without a worker slot, for an approval once "
            "one is due, in Airflow's Required actions or as MLflow tags (scheduled runs never wait). "
            "0: do not wait and do not ask in Required actions; the next run checks the tags again.",
        ),
        "approval_poll_seconds": Param(
            30,
            type="integer",
            minimum=1,
            maximum=600,
            title="Approval poll interval (seconds)",
            description="How often the wait reads the challenger's approval tags.",
        ),
    },
)
def lockgate_promotion() -> None:
    @task(pool="lockgate_promotion")
    def decide_and_act(model: str, params: dict | None = None) -> dict:
        from lockgate.jobs.promotion import promotion_task
        from lockgate.task_edge import run_context

        return promotion_task(run_context(model), dry_run=bool((params or {}).get("dry_run")))

    @task(pool="lockgate_promotion")
    def act_on_approval(waited: dict, params: dict | None = None) -> dict:
        if waited["event"] != "answered":
            return {"model": waited["model"], "skipped": waited["event"]}
        from lockgate.jobs.promotion import promotion_task
        from lockgate.task_edge import run_context

        return promotion_task(run_context(waited["model"]), dry_run=bool((params or {}).get("dry_run")))

    # A mapped group: each model's wait and second decision follow that model's first decision only.
    @task_group(prefix_group_id=False)
    def each_model(model: str) -> None:
        """One watched model: decide and act, wait for an approval when one is due, act on it."""
        waited = AwaitApprovalOperator(task_id="wait_for_approval", decision=decide_and_act(model))
        act_on_approval(waited.output)

    each_model.expand(model=watched_models())


lockgate_promotion()
