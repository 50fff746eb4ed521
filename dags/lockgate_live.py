"""Production evidence: what each version's own traffic shows, champion and challenger in the same hours.

Runs for every model the policy watches (one mapped `live_evidence` per model, each independent of
the others), or only for the model named in the form; an unwatched model fails at once.

From the inference logs of this run's data interval (the current window), per version:
time to first token p50/p90/p99, end-to-end latency p50/p90/p99, time per output token
p50/p90, output tokens per second, error, timeout, empty-response, refusal and
negative-feedback rates, KV-cache hit rate, and MiniLM relevance of the answers.

* **Canary**: the challenger against the champion in the same hours, each comparison as a
  ratio (latencies, throughput) or a difference (rates, relevance) with an interval at the
  policy's confidence; stratified by prompt length so a canary with a different traffic mix
  is compared like for like (the gates read the stratified estimate; the page shows both).
* **Champion health**: the champion now against its own baseline (the days before its
  `lockgate.promoted_at`); rollback gates read it.

Counts, rates and percentiles run in SQL over the whole window, through per-hour rollups on
PostgreSQL (each hour aggregated once; see `live.rollups` in the policy); intervals come from
a bounded, deterministic sample. A version with fewer than `live.min_requests` requests has
no estimates, so its gates are missing and never pass. The page is in the Lockgate menu; the
summary goes to the `lockgate_live_summary` Asset, which `lockgate_promotion` is scheduled on.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from lockgate.assets import LIVE
from lockgate.dag_tasks import watched_models


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    # Hourly: each run's data interval ends its current window (widened to the policy's min_hours).
    schedule=CronDataIntervalTimetable("15 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=2)},
    tags=["lockgate"],
    params={
        "model": Param(
            None,
            type=["null", "string"],
            title="Model",
            description="A registered model watched by the policy. Empty: every watched model.",
        ),
    },
)
def lockgate_live() -> None:
    @task(outlets=[LIVE])
    def live_evidence(model: str, outlet_events=None) -> dict:
        from lockgate.jobs.live import run_from_params
        from lockgate.task_edge import run_context, task_errors

        # Manual and asset-triggered runs may have no data interval: the run's own time ends the window.
        with task_errors():
            extra = run_from_params({}, run_context(model))
        outlet_events[LIVE].extra = extra
        return extra

    live_evidence.expand(model=watched_models())


lockgate_live()
