"""The judge's results in MLflow's GenAI views: one trace per sampled request, one assessment per rubric.

MLflow 3 shows evaluation results as traces carrying assessments (feedback from an
LLM judge, with its rationale). The quality job logs, under its MLflow run, a trace
for each of the first `quality.mlflow_assessments` answered samples of each version
(inputs: the redacted prompt and context; outputs: the redacted response; tags:
request id, model version, role) and, on it, one feedback per rubric: the judge's
expected score, its label, confidence and rationale, or the reason it is unscored.
Every assessment says whether the judge passed calibration (`judge_trusted`): MLflow
does not know that the scores of an untrusted judge are not evidence.

A rerun of the same run key replaces the run's traces.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lockgate.judge.evaluation import Sample
from lockgate.judge.scoring import Judgment

log = logging.getLogger(__name__)

TRACE_NAME = "lockgate.quality.sample"


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


def sample_records(
    samples: Mapping[str, Sequence[Sample]],
    judgments: Mapping[str, Judgment],
    rubric_names: Iterable[str],
    limit: int,
) -> list[SampleRecord]:
    """The first `limit` answered samples of each role with the judgments asked about them (pure)."""
    names = [r for r in rubric_names if r != "pairwise"]
    out: list[SampleRecord] = []
    for role in ("champion", "challenger"):
        kept = 0
        for s in samples.get(role, ()):
            if kept >= limit:
                break
            if not s.answered:
                continue
            kept += 1
            assessments = []
            for name in names:
                j = judgments.get(f"{s.id}|{name}")
                if j is None:
                    continue  # not asked (e.g. faithfulness without a context)
                assessments.append(
                    AssessmentRecord(
                        name=name,
                        rubric_id=j.rubric,
                        value=j.score,
                        label=j.label,
                        confidence=j.confidence,
                        rationale=j.rationale,
                        error=None if j.scored else f"{j.error}: {j.detail or ''}".strip(": "),
                    )
                )
            out.append(
                SampleRecord(
                    request_id=s.id,
                    role=role,
                    version=s.version,
                    prompt=s.prompt,
                    response=s.response or "",
                    context=s.context,
                    assessments=assessments,
                )
            )
    return out


def log_assessments(run_id: str, experiment_id: str, records: Sequence[SampleRecord], judge: str, trusted: bool) -> int:
    """Log the records as traces with feedback under the run (its earlier traces removed); returns traces logged."""
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
            with mlflow.start_span(name=TRACE_NAME, span_type="LLM") as span:
                inputs: dict[str, Any] = {"prompt": rec.prompt}
                if rec.context:
                    inputs["context"] = rec.context
                span.set_inputs(inputs)
                span.set_outputs({"response": rec.response})
                mlflow.update_current_trace(
                    tags={
                        "lockgate.request_id": rec.request_id,
                        "lockgate.model_version": rec.version,
                        "lockgate.role": rec.role,
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
