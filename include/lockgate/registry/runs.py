"""The MLflow runs of the evidence jobs: one run logger for benchmark, drift and quality.

An evidence run lives in the experiment `lockgate/<model>` and is found again by its tags
(`lockgate.kind`, `lockgate.run_key`, and whatever else tells runs of one key apart), so running a
key again reuses its run (`reuse=True`, drift and quality) or replaces it (`reuse=False`, the
benchmark's per-version runs, whose parameters a rerun may change). The jobs hand over plain
numbers, strings and files; no MLflow type leaves this module. MLflow is imported inside each
function.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.errors import ConfigError
from lockgate.registry.tags import RUN_MODEL, RUN_MODEL_NAME

# MLflow's log_batch takes at most 1000 metrics per call.
_BATCH = 900


def _quote(value: str) -> str:
    # MLflow's search filter has no escape for a quote inside a string literal.
    if "'" in value:
        raise ConfigError(f"run key must not contain a quote: {value!r}", key="run_key")
    return value


@dataclass(frozen=True)
class EvidenceRun:
    """One MLflow run of an evidence job."""

    run_id: str
    experiment_id: str
    uri: str

    @classmethod
    def open(
        cls,
        model_name: str,
        key_tags: Mapping[str, str],
        *,
        tags: Mapping[str, str] | None = None,
        run_name: str | None = None,
        reuse: bool = True,
    ) -> EvidenceRun:
        """The run of experiment `lockgate/<model>` whose tags match `key_tags`.

        Args:
            model_name: the registered model (names the experiment).
            key_tags: the tags that identify the run (at least `lockgate.kind` and `lockgate.run_key`).
            tags: more tags for a new run.
            run_name: a new run's name (at most 250 characters are kept).
            reuse: True: the first matching run is reused (a new one created when none matches);
                False: every matching run is deleted and a new one created.
        """
        from mlflow import MlflowClient

        from lockgate.registry.client import ensure_experiment
        from lockgate.settings import resolve_mlflow_uri

        uri = resolve_mlflow_uri()
        experiment_id = ensure_experiment(f"lockgate/{model_name}", uri)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        found = client.search_runs(
            [experiment_id],
            filter_string=" and ".join(f"tags.`{k}` = '{_quote(str(v))}'" for k, v in key_tags.items()),
            max_results=1 if reuse else 50,
        )
        if reuse and found:
            return cls(str(found[0].info.run_id), str(experiment_id), uri)
        for old in found:
            client.delete_run(old.info.run_id)
        # Both spellings of the model on every kind's run (the benchmark wrote `lockgate.model_name`,
        # drift and quality `lockgate.model`), so one filter finds a model's runs of every kind.
        all_tags = {RUN_MODEL: model_name, RUN_MODEL_NAME: model_name, **key_tags, **(tags or {})}
        run = client.create_run(experiment_id, run_name=run_name[:250] if run_name else None, tags=all_tags)
        return cls(str(run.info.run_id), str(experiment_id), uri)

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def log(
        self,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        at: float | None = None,
    ) -> None:
        """Log metrics (step 0, at `at` seconds since the epoch, default now), params and tags."""
        from mlflow.entities import Metric, Param, RunTag

        when_ms = int((at if at is not None else time.time()) * 1000)
        client = self._client()
        items = [Metric(k, float(v), when_ms, 0) for k, v in (metrics or {}).items()]
        batch_params = [Param(k, v) for k, v in (params or {}).items()]
        batch_tags = [RunTag(k, v) for k, v in (tags or {}).items()]
        for i in range(0, max(len(items), 1), _BATCH):
            first = i == 0
            client.log_batch(
                self.run_id,
                metrics=items[i : i + _BATCH],
                params=batch_params if first else [],
                tags=batch_tags if first else [],
            )

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        """A JSON artifact `name` at the run's root."""
        self._client().log_dict(self.run_id, dict(data), name)

    def log_files(self, files: Iterable[Path], artifact_path: str) -> None:
        """Each file that exists, under `artifact_path`."""
        client = self._client()
        for f in files:
            if f.exists():
                client.log_artifact(self.run_id, str(f), artifact_path)

    def log_folder(self, folder: Path, artifact_path: str) -> None:
        """A whole folder's files under `artifact_path`."""
        self._client().log_artifacts(self.run_id, str(folder), artifact_path=artifact_path)

    def finish(self, failed: bool = False) -> None:
        """Mark the run finished (or failed)."""
        self._client().set_terminated(self.run_id, "FAILED" if failed else "FINISHED")
