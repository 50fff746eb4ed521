"""The one edge between lockgate's errors and Airflow's retries, shared by every task of every DAG.

A `LockgateError` is bad input or a policy that cannot be met (an unwatched model, invalid
Params, evidence that cannot be read, a model that is not a causal LM): retrying cannot help, so
the task fails at once, its log saying `[code] message`. `ServiceUnavailableError` (PostgreSQL,
MLflow or Airflow not answering) and any other exception propagate: Airflow retries them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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
