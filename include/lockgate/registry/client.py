"""A thin MLflow client for lockgate, with reachability checked up front."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lockgate.errors import ServiceUnavailableError

# MLflow's own defaults retry a request that gets no answer 7 times with a backoff factor of 2 and
# wait 120 s for each answer: over four minutes before a promotion learns the server is down. These
# bound it to seconds for a refused connection (retries sleep about 0, 2 and 4 s) and to
# (1 + retries) x timeout for a server that accepts and never answers. The timeout is per socket
# read, so it also bounds the wait for the server's answer after an artifact upload: 60 s leaves a
# slow artifact store room. A value already in the environment wins.
MLFLOW_RETRY_BUDGET = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def bound_mlflow_retries() -> None:
    """Apply `MLFLOW_RETRY_BUDGET` to MLflow's client, unless the environment sets its own values."""
    for key, value in MLFLOW_RETRY_BUDGET.items():
        os.environ.setdefault(key, value)


def retry_budget_text() -> str:
    """The retry budget in force, for an error message."""
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
    return f"gave up after {retries} retries, {timeout} s timeout each"


def check_mlflow(uri: str, timeout: float = 5.0) -> None:
    """Raise one clear line when an MLflow server at an http(s) URI does not answer."""
    if not uri.startswith(("http://", "https://")):
        return  # a local store (sqlite:///, file:) has no server to reach
    import httpx

    try:
        response = httpx.get(f"{uri.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        raise ServiceUnavailableError("MLflow", uri, type(exc).__name__ + (f": {exc}" if str(exc) else "")) from None
    if response.status_code >= 500:
        raise ServiceUnavailableError("MLflow", uri, f"HTTP {response.status_code} from /health")


def configure_mlflow(uri: str | None = None) -> str:
    """Point MLflow (tracking and registry) at lockgate's URI; return it."""
    import mlflow

    from lockgate.settings import resolve_mlflow_uri

    bound_mlflow_retries()
    resolved = uri or resolve_mlflow_uri()
    check_mlflow(resolved)
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(resolved)
    return resolved


def ensure_experiment(name: str, uri: str | None = None) -> str:
    """Create (once) and select an experiment; returns its id.

    With a local store (sqlite:///), MLflow would put artifacts in ./mlruns of
    whatever directory the process runs in; lockgate keeps them under LOCKGATE_HOME.
    """
    import mlflow

    from lockgate.settings import get_settings

    resolved = configure_mlflow(uri)
    client = mlflow.MlflowClient(tracking_uri=resolved, registry_uri=resolved)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        mlflow.set_experiment(experiment_id=existing.experiment_id)
        return str(existing.experiment_id)
    location = None
    if not resolved.startswith(("http://", "https://")):
        location = (get_settings().home / "mlartifacts").resolve().as_uri()
    try:
        experiment_id = client.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - lost a creation race with a concurrent task: use the winner's
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def sqlite_store(path: Path) -> str:
    """A ready (migrated) SQLite MLflow store at `path`; returns its URI.

    Creating the tables of a new store costs ~10 s of migrations; a migrated, empty template is
    kept per MLflow version in the temporary folder and copied. For tests and the demo.
    """
    import shutil
    import tempfile

    import mlflow
    from mlflow import MlflowClient

    template = Path(tempfile.gettempdir()) / f"lockgate-mlflow-template-{mlflow.__version__}.db"
    if not template.exists():
        scratch = Path(tempfile.mkdtemp(prefix="lockgate-mlflow-"))
        scratch_uri = f"sqlite:///{scratch / 'mlflow.db'}"
        MlflowClient(tracking_uri=scratch_uri, registry_uri=scratch_uri).search_registered_models()
        (scratch / "mlflow.db").replace(template)  # atomic: a concurrent creator's copy is as good
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def mlflow_error(exc: BaseException) -> tuple[str, str] | None:
    """(error code in lower case, message) when `exc` is an `MlflowException`, else None.

    Looks MLflow up in `sys.modules` instead of importing it: an error raised before MLflow was
    loaded cannot be MLflow's, and the CLI's error path stays free of heavy imports.
    """
    ml_exc = sys.modules.get("mlflow.exceptions")
    if ml_exc is None or not isinstance(exc, ml_exc.MlflowException):
        return None
    return str(getattr(exc, "error_code", "") or "error").lower(), str(getattr(exc, "message", exc))
