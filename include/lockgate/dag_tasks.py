"""Tasks every lockgate DAG shares, defined once.

Importing this module must stay cheap: DAG files import it at parse time, so it imports nothing
but `airflow.sdk` (tests/dags/test_dag_integrity.py checks it); the policy is read when the task runs.
"""

from __future__ import annotations

from airflow.sdk import task


@task
def watched_models(params: dict[str, object] | None = None, triggering_asset_events: object = None) -> list[str]:
    """The models this run serves: the one named in the form, the models whose new challenger
    triggered it (the `lockgate_challenger_alias` Asset), or every model the policy watches."""
    from lockgate.jobs.promotion import watched_model_names
    from lockgate.registry.registration import models_from_registration_events

    requested = (params or {}).get("model")
    if requested:
        return watched_model_names(str(requested))
    watched = watched_model_names(None)
    registered = models_from_registration_events(triggering_asset_events)
    if registered is None:
        return watched
    # A model dropped from the policy since its challenger was seen is not evaluated.
    return [name for name in registered if name in watched]
