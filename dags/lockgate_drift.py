"""Compare a reference and a current window of each watched model's inference logs and publish the drift evidence.

Runs for every model the policy watches (one mapped `drift_report` per model, each independent of
the others), or only for the model named in the form; an unwatched model fails at once.

Operational metrics (latency, time to first token, tokens/s, token counts, status),
offline text descriptors of prompts and responses, and MiniLM embeddings are compared
with one explicit test per column; a column drifts only when it is significant after
Benjamini-Hochberg correction AND its effect size reaches the policy's minimum.

By default the current window is this run's data interval and the reference window
comes from the policy (`windows.reference`: fixed dates, the days before, or the days
after the champion was promoted). The report (lockgate's page and Evidently's) is in
the Lockgate menu and in MLflow; the summary goes to the `lockgate_drift_summary` Asset.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from lockgate.assets import DRIFT
from lockgate.dag_tasks import watched_models

_WINDOW_HELP = "ISO date-time (UTC if no offset). Give start and end together, or leave both empty"


@dag(
    dag_id=Path(__file__).stem,
    doc_md=__doc__,
    # A data-interval timetable: each run covers the previous day, which is its current window.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
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
        "reference_start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Reference window start",
            description=f"{_WINDOW_HELP} for the policy's reference window.",
        ),
        "reference_end": Param(
            None, type=["null", "string"], format="date-time", title="Reference window end", description=_WINDOW_HELP
        ),
        "current_start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Current window start",
            description=f"{_WINDOW_HELP} for this run's data interval.",
        ),
        "current_end": Param(
            None, type=["null", "string"], format="date-time", title="Current window end", description=_WINDOW_HELP
        ),
        "sample_size": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Rows per window",
            description="Rows sampled from each window (deterministic). Empty: the policy's drift.sample_size.",
        ),
    },
)
def lockgate_drift() -> None:
    @task(outlets=[DRIFT])
    def drift_report(model: str, params: dict | None = None, outlet_events=None) -> dict:
        from lockgate.jobs.drift import run_from_params
        from lockgate.task_edge import run_context, task_errors

        # Bad Params or policy fail at once; unreachable services are retried (lockgate.task_edge).
        with task_errors():
            extra = run_from_params(params or {}, run_context(model))
        outlet_events[DRIFT].extra = extra
        return extra

    drift_report.expand(model=watched_models())


lockgate_drift()
