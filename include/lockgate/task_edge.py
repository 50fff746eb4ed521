"""The one edge between lockgate's errors and Airflow's retries, shared by every task of every DAG.

A `LockgateError` is bad input or a policy that cannot be met (an unwatched model, invalid
Params, evidence that cannot be read, a model that is not a causal LM): retrying cannot help, so
the task fails at once, its log saying `[code] message`. `ServiceUnavailableError` (PostgreSQL,
MLflow or Airflow not answering) and any other exception propagate: Airflow retries them.

`run_context` is the other half of the edge: the one place a task's Airflow context (DAG id, run id,
data interval, run type) becomes the `RunContext` a job takes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lockgate.jobs.context import RunContext


@contextmanager
def task_errors() -> Iterator[None]:
    """Run a task body; a domain error fails the task without retry, a service outage is retried."""
    from airflow.sdk.exceptions import AirflowFailException

    from lockgate.errors import LockgateError, ServiceUnavailableError

    try:
        yield
    except ServiceUnavailableError:
        raise
    except LockgateError as exc:
        raise AirflowFailException(f"[{exc.code}] {exc}") from exc


def run_context(model: str, context: Mapping[str, Any] | None = None) -> RunContext:
    """The job's `RunContext` for `model`, from a running task's Airflow context (default: the current one)."""
    from lockgate.jobs.context import RunContext

    if context is None:
        from airflow.sdk import get_current_context

        context = get_current_context()
    dag_run = context.get("dag_run")
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    run_id = context.get("run_id") or getattr(dag_run, "run_id", None)
    run_type = getattr(dag_run, "run_type", None)
    dag = context.get("dag")
    return RunContext(
        model=model,
        run_key=run_id,
        dag_id=getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", None),
        run_id=run_id,
        data_interval=(start, end) if start is not None and end is not None else None,
        run_after=getattr(dag_run, "run_after", None),
        logical_date=context.get("logical_date"),
        trigger=str(getattr(run_type, "value", run_type) or "airflow"),
    )
