"""The judge's results for MLflow's GenAI views: which sampled requests to log, with which assessments.

MLflow 3 shows evaluation results as traces carrying assessments (feedback from an
LLM judge, with its rationale). The quality job logs, under its MLflow run, a trace
for each of the first `quality.mlflow_assessments` answered samples of each version
(inputs: the redacted prompt and context; outputs: the redacted response; tags:
request id, model version, role) and, on it, one feedback per rubric: the judge's
expected score, its label, confidence and rationale, or the reason it is unscored.
`sample_records` chooses them (pure); `lockgate.registry.genai.log_assessments` logs them.

A rerun of the same run key replaces the run's traces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from lockgate.judge.evaluation import Sample
from lockgate.judge.scoring import Judgment
from lockgate.registry.genai import AssessmentRecord, SampleRecord


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
