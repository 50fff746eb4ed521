"""A version's artifacts into and out of the registry: registration and the one way to download a version.

* `download_version`: a version's artifacts (`models:/<model>/<version>`) into a folder;
* `version_identity`: what tells a version apart from another with the same name and number;
* `register_transformers_model`: a model and tokenizer logged as an MLflow transformers model and
  registered (what `lockgate models register` does);
* `register_directory`: a plain folder's files registered as a version, in a fraction of a second
  (tests, models served from plain folders);
* `register_empty_version`: a version without artifacts worth loading (tests of the promotion path).

What the downloaded files mean (a transformers flavor, a Hugging Face folder) is for
`lockgate.models` to say. MLflow is imported inside each function.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from lockgate.errors import InvalidModelError
from lockgate.registry import tags as T
from lockgate.registry.adapter import normalise_version

log = logging.getLogger(__name__)

_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def download_version(model_name: str, version: str, dst: Path) -> None:
    """Download a version's artifacts into `dst` (an existing, empty folder).

    Raises:
        InvalidModelError: the version or its artifacts do not exist.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from lockgate.registry.client import configure_mlflow

    configure_mlflow()
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}", dst_path=str(dst))
    except MlflowException as exc:
        if getattr(exc, "error_code", None) in _NOT_FOUND:
            raise InvalidModelError(
                f"artifacts of {model_name} v{version} cannot be downloaded: {exc.message}"
            ) from None
        raise
    except FileNotFoundError as exc:
        raise InvalidModelError(f"artifacts of {model_name} v{version} are missing: {exc}") from None


def version_identity(model_name: str, version: str) -> str:
    """A digest of what tells this version apart from any other ever numbered the same.

    A version's number is unique only while its registered model lives: a model deleted and
    registered again (the demo's clean slate, a restored or rebuilt registry) numbers its versions
    from 1 again, and another registry has its own. The digest covers the registry's URI, the
    version's creation time and its source, so that a cache of its artifacts
    (`lockgate.models.materialise`) never serves another version's files.

    Raises:
        InvalidModelError: the version does not exist.
    """
    import hashlib

    from lockgate.errors import UnknownModelVersionError
    from lockgate.registry.adapter import ModelRegistry

    registry = ModelRegistry()
    try:
        found = registry.version(model_name, version)
    except UnknownModelVersionError as exc:
        raise InvalidModelError(f"{model_name} v{version} is not in the registry: {exc}") from None
    created = found.created_at.isoformat() if found.created_at else ""
    key = "\n".join((str(registry.uri), model_name, found.version, created, found.source or ""))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _create_model(client: Any, model_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
            raise


def register_transformers_model(
    model_name: str,
    model: Any,
    tokenizer: Any,
    pip_requirements: list[str],
    source_path: Path,
    alias: str | None = None,
    uri: str | None = None,
) -> str:
    """Log a model and its tokenizer as an MLflow transformers model, register it, optionally alias it.

    The version gets `lockgate.status` = `evaluating` and `lockgate.source_path` (the local folder it
    came from); so does its run. Returns the new version as a string.
    """
    import mlflow

    from lockgate.registry.client import ensure_experiment
    from lockgate.settings import resolve_mlflow_uri

    uri = uri or resolve_mlflow_uri()
    ensure_experiment(f"lockgate/{model_name}", uri)
    with mlflow.start_run(run_name=f"register-{model_name}") as run:
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer},
            name="model",
            task="text-generation",
            pip_requirements=pip_requirements,
            registered_model_name=model_name,
        )
        mlflow.set_tag(T.SOURCE_PATH, str(source_path))
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_model_version_tag(model_name, version, T.STATUS, "evaluating")
    client.set_model_version_tag(model_name, version, T.SOURCE_PATH, str(source_path))
    if alias:
        client.set_registered_model_alias(model_name, alias, version)
    log.info(
        "registered %s version %s (run %s)%s", model_name, version, run.info.run_id, f" as {alias}" if alias else ""
    )
    return version


def register_directory(model_name: str, path: str | Path, alias: str | None = None, uri: str | None = None) -> str:
    """Register a plain folder (a Hugging Face directory) as a new version (its files as run artifacts).

    A fraction of a second where `register_transformers_model` takes 5-70 s on a busy CPU.
    Returns the version as a string.
    """
    from mlflow import MlflowClient

    from lockgate.registry.client import configure_mlflow, ensure_experiment

    resolved = configure_mlflow(uri)
    client = MlflowClient(tracking_uri=resolved, registry_uri=resolved)
    experiment_id = ensure_experiment(f"lockgate/{model_name}", resolved)
    _create_model(client, model_name)
    run = client.create_run(experiment_id, tags={"mlflow.runName": f"register-{model_name}"})
    client.log_artifacts(run.info.run_id, str(path), "model")
    client.set_terminated(run.info.run_id)
    mv = client.create_model_version(model_name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    version = str(mv.version)
    if alias:
        client.set_registered_model_alias(model_name, alias, version)
    return version


STUB_EXPERIMENT = "lockgate-stubs"


def register_empty_version(
    model_name: str,
    uri: str,
    alias: str | None = None,
    artifact_root: Path | None = None,
) -> str:
    """Register a new version of `model_name` (creating the model once) whose source is an empty run folder.

    The version gets `lockgate.status` = `evaluating`. `artifact_root` is where the
    experiment's (empty) artifact folders would go; default: a temporary folder, never the working
    directory. Touches no global MLflow setting.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    _create_model(client, model_name)
    experiment = client.get_experiment_by_name(STUB_EXPERIMENT)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        root = artifact_root or Path(tempfile.gettempdir()) / "lockgate-stub-artifacts"
        location = None if uri.startswith(("http://", "https://")) else root.resolve().as_uri()
        try:
            experiment_id = client.create_experiment(STUB_EXPERIMENT, artifact_location=location)
        except MlflowException:  # created by a concurrent caller meanwhile
            found = client.get_experiment_by_name(STUB_EXPERIMENT)
            if found is None:
                raise
            experiment_id = found.experiment_id
    run = client.create_run(experiment_id, run_name=f"stub-{model_name}")
    client.set_terminated(run.info.run_id)
    mv = client.create_model_version(model_name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    version = normalise_version(mv.version) or ""
    client.set_model_version_tag(model_name, version, T.STATUS, "evaluating")
    if alias:
        client.set_registered_model_alias(model_name, alias, version)
    return version
