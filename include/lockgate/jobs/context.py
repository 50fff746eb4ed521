"""The run a job serves, built once at the edge: from Airflow's context in a DAG task, from the CLI otherwise.

Every job takes one `RunContext` instead of a model name, run key, DAG id, run id and data interval
threaded through each signature. Nothing here imports Airflow: `lockgate.task_edge.run_context`
builds one from a running task's context, `RunContext.for_cli` from `lockgate run <job>`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from lockgate.reports.html import safe_segment


@dataclass(frozen=True)
class RunContext:
    """One run of one job for one model.

    Attributes:
        model: the registered model the run serves.
        run_key: names the run's outputs (a DAG run's id); None outside Airflow, where each job
            derives one from its window or the time (`key`), so rerunning a window replaces it.
        dag_id: the DAG, recorded in the summary, the MLflow runs and the reports index.
        run_id: the DAG run, recorded likewise.
        data_interval: the DAG run's data interval; None outside Airflow and for a run without one
            (asset-triggered, manual runs of some timetables).
        run_after: when the DAG run was due (Airflow 3's `run_after`): the end of the window of a run
            without a data interval, for the jobs that read logs up to the run (`interval_or_run_after`).
        logical_date: the DAG run's logical date, when it has one.
        trigger: how the run started: Airflow's run type (`scheduled`, `manual`, `asset_triggered`, ...)
            or `cli`.
        now: the clock for a run outside Airflow (tests pass one); None reads the clock when needed.
    """

    model: str
    run_key: str | None = None
    dag_id: str | None = None
    run_id: str | None = None
    data_interval: tuple[datetime, datetime] | None = None
    run_after: datetime | None = None
    logical_date: datetime | None = None
    trigger: str = "cli"
    now: datetime | None = None

    @classmethod
    def for_cli(cls, model: str, *, now: datetime | None = None) -> RunContext:
        """A run of `lockgate run <job>` (or the demo, a test): no DAG, the job picks its own run key."""
        return cls(model=model, now=now)

    def for_model(self, model: str) -> RunContext:
        """The same run, for a model named in the Params rather than mapped over."""
        return replace(self, model=model)

    def key(self, default: str) -> str:
        """The run key: the DAG run's, else `default` (each job's `manual__...`)."""
        return self.run_key or default

    def safe_key(self, default: str) -> str:
        """`key`, reduced to a safe path segment (a run key names a folder and MLflow filters)."""
        return safe_segment(self.key(default))

    def interval_or_run_after(self) -> RunContext:
        """This run, its data interval defaulting to the instant the run was due (a window the policy widens):
        for the jobs that read the logs up to the run even when Airflow gave it no interval (live, quality)."""
        if self.data_interval is not None or self.run_after is None:
            return self
        return replace(self, data_interval=(self.run_after, self.run_after))
