"""Registry versions to benchmark: aliases resolved, artifacts materialised as Hugging Face directories.

A version's artifacts are downloaded once into `<LOCKGATE_HOME>/model_cache/<model>/<version>`
(a registered version is immutable). Two layouts are understood:

* the MLflow transformers flavor (`MLmodel` + `model/` + `components/tokenizer/`), which is
  what `lockgate models register` and `mlflow.transformers.log_model` write;
* a plain Hugging Face directory (`config.json` at the root, or in one sub-folder).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.errors import InvalidModelError, UnknownModelVersionError

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclass(frozen=True)
class ResolvedVersion:
    """One side of the comparison: its role, registry version, and how it was named."""

    role: str  # "challenger" or "champion"
    version: str
    requested: str  # the alias or version the caller gave

    def label(self) -> str:
        return f"{self.role} v{self.version}"


def _version_str(value: Any) -> str:
    # MLflow returns versions as int from a SQLite store and as str over REST.
    return str(value)


def _mlflow_error_code(exc: Exception) -> str | None:
    return getattr(exc, "error_code", None)


def resolve_one(client: Any, model_name: str, ref: str, role: str) -> ResolvedVersion:
    """A version number or an alias (`champion`, `challenger`, ...) to a registered version.

    Raises:
        UnknownModelVersionError: the model, version or alias does not exist.
    """
    from mlflow.exceptions import MlflowException

    ref = str(ref).strip()
    try:
        if ref.isdigit():
            mv = client.get_model_version(model_name, ref)
        else:
            mv = client.get_model_version_by_alias(model_name, ref)
    except MlflowException as exc:
        if _mlflow_error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            what = f"version {ref}" if ref.isdigit() else f"alias {ref!r}"
            raise UnknownModelVersionError(
                f"model {model_name!r} has no {what} in the registry ({exc.message})"
            ) from None
        raise
    return ResolvedVersion(role, _version_str(mv.version), ref)


def resolve_versions(client: Any, model_name: str, versions: Sequence[str] | None) -> list[ResolvedVersion]:
    """The challenger and the champion, in that order.

    Args:
        client: an `MlflowClient`.
        model_name: the registered model.
        versions: None for the `challenger` and `champion` aliases; else one or two version
            numbers or aliases, the first the challenger and the second the champion.

    Returns:
        One entry (challenger only: there is no champion yet) or two.

    Raises:
        UnknownModelVersionError: the challenger cannot be resolved, or an explicit champion cannot.
    """
    if versions is not None:
        refs = [str(v).strip() for v in versions if str(v).strip()]
        if not 1 <= len(refs) <= 2:
            raise UnknownModelVersionError(
                f"give one or two versions (challenger, then champion), got {list(versions)!r}"
            )
        out = [resolve_one(client, model_name, refs[0], CHALLENGER)]
        if len(refs) == 2:
            out.append(resolve_one(client, model_name, refs[1], CHAMPION))
        return out
    out = [resolve_one(client, model_name, CHALLENGER, CHALLENGER)]
    try:
        out.append(resolve_one(client, model_name, CHAMPION, CHAMPION))
    except UnknownModelVersionError:
        # A first version has no champion to compare with: measured alone, ratios absent.
        log.info("model %s has no champion alias: benchmarking the challenger alone", model_name)
    return out


def register_directory(model_name: str, path: str | Path, alias: str | None = None, uri: str | None = None) -> str:
    """Register a plain Hugging Face directory as a new version (its files as run artifacts).

    A fraction of a second where `lockgate.models.register_model` (the MLflow transformers
    flavor) takes 5-70 s on a busy CPU: for tests and for models served from plain folders.
    Returns the version as a string.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from lockgate.registry.client import configure_mlflow, ensure_experiment

    resolved = configure_mlflow(uri)
    client = MlflowClient(tracking_uri=resolved, registry_uri=resolved)
    experiment_id = ensure_experiment(f"lockgate/{model_name}", resolved)
    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if _mlflow_error_code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
    run = client.create_run(experiment_id, tags={"mlflow.runName": f"register-{model_name}"})
    client.log_artifacts(run.info.run_id, str(path), "model")
    client.set_terminated(run.info.run_id)
    mv = client.create_model_version(model_name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    version = _version_str(mv.version)
    if alias:
        client.set_registered_model_alias(model_name, alias, version)
    return version


def _hf_dir_of(root: Path) -> Path:
    """The Hugging Face directory inside downloaded artifacts (see the module docstring)."""
    mlmodel = root / "MLmodel"
    if mlmodel.exists():
        import yaml

        try:
            meta = yaml.safe_load(mlmodel.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InvalidModelError(f"unreadable MLmodel file in {root}: {exc}") from None
        flavors = meta.get("flavors") or {}
        tf = flavors.get("transformers")
        if tf is None:
            raise InvalidModelError(
                f"the version is an MLflow model of flavor(s) {sorted(flavors)}, not a transformers model"
            )
        model_dir = root / str(tf.get("model_binary") or "model")
        tokenizer_dir = root / "components" / "tokenizer"
        if not (model_dir / "config.json").exists():
            raise InvalidModelError(f"the transformers model has no {model_dir.name}/config.json: artifacts missing")
        # Model and tokenizer side by side, as `from_pretrained` expects: links, not copies.
        merged = root.parent / "hf"
        if merged.exists():
            shutil.rmtree(merged)
        merged.mkdir(parents=True)
        for src in [*model_dir.iterdir(), *(tokenizer_dir.iterdir() if tokenizer_dir.is_dir() else [])]:
            (merged / src.name).symlink_to(src.resolve())
        return merged
    if (root / "config.json").exists():
        return root
    candidates = [p.parent for p in root.glob("*/config.json")]
    if len(candidates) == 1:
        return candidates[0]
    if not any(root.iterdir()):
        raise InvalidModelError("the version has no artifacts (its source folder is empty): artifacts missing")
    raise InvalidModelError(
        f"no Hugging Face model files (config.json) among the artifacts: {sorted(p.name for p in root.iterdir())}"
    )


def materialise(model_name: str, version: str, cache_root: Path) -> Path:
    """Download a version's artifacts once and return its Hugging Face directory.

    Raises:
        InvalidModelError: the artifacts are missing or hold no transformers model.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from lockgate.reports.html import safe_segment

    base = cache_root / safe_segment(model_name) / safe_segment(version)
    artifacts = base / "artifacts"
    done = base / ".complete"
    if not done.exists():
        if base.exists():
            shutil.rmtree(base)  # a partial download from an interrupted run
        artifacts.mkdir(parents=True)
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}", dst_path=str(artifacts))
        except MlflowException as exc:
            if _mlflow_error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
                raise InvalidModelError(
                    f"artifacts of {model_name} v{version} cannot be downloaded: {exc.message}"
                ) from None
            raise
        except FileNotFoundError as exc:
            raise InvalidModelError(f"artifacts of {model_name} v{version} are missing: {exc}") from None
        done.touch()
    try:
        return _hf_dir_of(artifacts)
    except InvalidModelError as exc:
        raise InvalidModelError(f"{model_name} v{version}: {exc.message}") from None
