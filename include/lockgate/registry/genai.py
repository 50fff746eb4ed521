"""MLflow's GenAI features lockgate uses: judges, traces with assessments, evaluation datasets.

* `make_label_judge`: one `mlflow.genai.judges.make_judge` judge whose answer is one of a
  rubric's labels, called with plain inputs and answering a plain `JudgeAnswer`;
* `log_assessments`: the quality job's sampled requests as traces under its run, each with one
  feedback per rubric (`SampleRecord`, `AssessmentRecord`: built by
  `lockgate.judge.mlflow_results.sample_records`);
* `read_evaluation_dataset`, `create_evaluation_dataset`: a calibration set kept as an MLflow
  evaluation dataset (`mlflow.genai.datasets`), as plain tags and records.

MLflow is imported inside each function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lockgate.errors import ConfigError
from lockgate.registry import tags as T

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- judges


@dataclass(frozen=True)
class JudgeAnswer:
    """What an MLflow judge said: a label (or None), its rationale, or the error it reported."""

    value: str | None
    rationale: str | None = None
    error: str | None = None


def make_label_judge(
    name: str, instructions: str, model: str, base_url: str | None, description: str, labels: Sequence[str]
) -> Callable[[Mapping[str, Any]], JudgeAnswer]:
    """An MLflow GenAI judge constrained to `labels`; call it with the judge's inputs.

    Args:
        name: the judge's name (the rubric's).
        instructions: its instructions (a template over `{{ inputs }}`).
        model: an MLflow model URI (`openai:/gpt-4o-mini`, ...).
        base_url: the chat-completions URL of an OpenAI-compatible server, or None.
        description: what the judge judges.
        labels: the answers it may give.
    """
    from mlflow.genai.judges import make_judge

    value_type: Any = Literal.__getitem__(tuple(labels))
    judge = make_judge(
        name=name,
        instructions=instructions,
        model=model,
        base_url=base_url,
        description=description,
        feedback_value_type=value_type,
    )

    def ask(inputs: Mapping[str, Any]) -> JudgeAnswer:
        feedback = judge(inputs=dict(inputs))
        return JudgeAnswer(
            value=str(feedback.value) if feedback.value is not None else None,
            rationale=feedback.rationale or None,
            error=str(feedback.error) if feedback.error is not None else None,
        )

    return ask


# --------------------------------------------------------------------------- traces with assessments


@dataclass(frozen=True)
class AssessmentRecord:
    name: str
    rubric_id: str
    value: float | None
    label: str | None = None
    confidence: float | None = None
    rationale: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SampleRecord:
    request_id: str
    role: str
    version: str
    prompt: str
    response: str
    context: str | None
    assessments: list[AssessmentRecord] = field(default_factory=list)


def log_assessments(run_id: str, experiment_id: str, records: Sequence[SampleRecord], judge: str, trusted: bool) -> int:
    """Log the records as traces with feedback under the run (its earlier traces removed); returns traces logged.

    Every assessment says whether the judge passed calibration (`judge_trusted`): MLflow does not
    know that the scores of an untrusted judge are not evidence.
    """
    import mlflow
    from mlflow.entities import AssessmentError, AssessmentSource, AssessmentSourceType

    client = mlflow.MlflowClient()
    old = [t.info.trace_id for t in _run_traces(client, experiment_id, run_id)]
    if old:
        client.delete_traces(experiment_id, trace_ids=old)
    source = AssessmentSource(source_type=AssessmentSourceType.LLM_JUDGE, source_id=judge[:250])
    trace_ids: list[str] = []
    with mlflow.start_run(run_id=run_id):
        for rec in records:
            with mlflow.start_span(name=T.TRACE_NAME, span_type="LLM") as span:
                inputs: dict[str, Any] = {"prompt": rec.prompt}
                if rec.context:
                    inputs["context"] = rec.context
                span.set_inputs(inputs)
                span.set_outputs({"response": rec.response})
                mlflow.update_current_trace(
                    tags={
                        T.TRACE_REQUEST_ID: rec.request_id,
                        T.TRACE_MODEL_VERSION: rec.version,
                        T.TRACE_ROLE: rec.role,
                    }
                )
                trace_ids.append(span.trace_id)
        # Traces are exported in the background; an assessment needs its trace stored first.
        mlflow.flush_trace_async_logging()
    for trace_id, rec in zip(trace_ids, records, strict=True):
        for a in rec.assessments:
            metadata = {"rubric": a.rubric_id, "judge_trusted": str(trusted).lower()}
            if a.label is not None:
                metadata["label"] = a.label
            if a.confidence is not None:
                metadata["confidence"] = f"{a.confidence:.4f}"
            if a.error is not None:
                mlflow.log_feedback(
                    trace_id=trace_id,
                    name=a.name,
                    source=source,
                    error=AssessmentError(error_code="UNSCORED", error_message=a.error[:500]),
                    metadata=metadata,
                )
            else:
                mlflow.log_feedback(
                    trace_id=trace_id,
                    name=a.name,
                    value=a.value,
                    source=source,
                    rationale=a.rationale,
                    metadata=metadata,
                )
    log.info("logged %d traces with judge assessments to MLflow run %s", len(trace_ids), run_id)
    return len(trace_ids)


def _run_traces(client: Any, experiment_id: str, run_id: str) -> list[Any]:
    found: list[Any] = []
    token = None
    while True:
        page = client.search_traces(
            locations=[experiment_id],
            run_id=run_id,
            max_results=500,
            page_token=token,
            include_spans=False,
        )
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found


# --------------------------------------------------------------------------- evaluation datasets


@dataclass(frozen=True)
class EvaluationDataset:
    """An MLflow evaluation dataset as plain data: its tags and its records.

    Each record has `record_id`, `inputs` and `expectations` (dicts; empty when absent).
    """

    name: str
    tags: dict[str, str]
    records: list[dict[str, Any]]


def read_evaluation_dataset(name: str) -> EvaluationDataset:
    """The evaluation dataset `name` of the configured tracking server.

    Raises whatever MLflow raises when there is none (it says "not found" in several exception types).
    """
    from mlflow.genai.datasets import get_dataset

    from lockgate.registry.client import configure_mlflow

    configure_mlflow()
    dataset = get_dataset(name=name)
    records = []
    for _, record in dataset.to_df().iterrows():
        records.append(
            {
                "record_id": record.get("dataset_record_id") or record.get("record_id"),
                "inputs": record.get("inputs") or {},
                "expectations": record.get("expectations") or {},
            }
        )
    return EvaluationDataset(name=name, tags=dict(dataset.tags or {}), records=records)


def create_evaluation_dataset(
    name: str, experiment: str, tags: Mapping[str, str], records: Sequence[Mapping[str, Any]]
) -> str:
    """Create the evaluation dataset `name` in `experiment` with `tags` and `records`; returns its id.

    Raises:
        ConfigError: a dataset of that name exists (its records are never merged silently).
    """
    from mlflow.genai.datasets import create_dataset, search_datasets

    from lockgate.registry.client import configure_mlflow, ensure_experiment

    configure_mlflow()
    if "'" in name:
        raise ConfigError(f"a dataset name must not contain a quote: {name!r}", key="--name")
    if any(d.name == name for d in search_datasets(filter_string=f"name = '{name}'")):
        raise ConfigError(f"an MLflow dataset named {name!r} exists: pick another name", key="--name")
    dataset = create_dataset(name=name, experiment_id=ensure_experiment(experiment), tags=dict(tags))
    dataset.merge_records([dict(r) for r in records])
    return str(dataset.dataset_id)
