"""Tasks every lockgate DAG shares, defined once.

Importing this module must stay cheap: DAG files import it at parse time, so it imports nothing
but `airflow.sdk` (tests/dags/test_dag_integrity.py checks it); the policy is read when the task runs.
"""

from __future__ import annotations

from airflow.sdk import task


@task
def watched_models(params: dict[str, object] | None = None) -> list[str]:
    """The models this run serves: the one named in the form, or every model the policy watches."""
    from lockgate.jobs.promotion import watched_model_names

    requested = (params or {}).get("model")
    return watched_model_names(str(requested) if requested else None)
