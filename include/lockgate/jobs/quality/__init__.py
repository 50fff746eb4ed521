"""The quality job: LLM-as-judge and MiniLM quality evidence, challenger against champion.

Three steps, so the DAG can run the GPU part in the `gpu` pool; `run_quality()` chains them:

1. `plan_quality()`: resolve the versions (aliases unless given), the window (the DAG
   run's data interval), and whether the challenger has its own traffic or must be replayed;
2. `replay_challenger()`: only for a challenger without traffic, generate its answers to
   the champion's sampled (redacted) prompts, written to the run directory;
3. `judge_quality()`: sample both versions' logs (deterministic, redacted), score them
   with MiniLM (relevance, grounding) and the policy's judge (rubrics and position-swapped
   pairwise), calibrate the judge on the policy's calibration set, bootstrap every estimate,
   and write the HTML report, `summary.json` (the `EvidenceSummary` gates read),
   `quality_summary.json` and an MLflow run with the artifacts, then the one publish step
   (`jobs.publish.publish_evidence`: the latest copy and the reports-index row).

Everything is keyed by `run_key` (the DAG run), so a rerun overwrites its own outputs.
Judge metrics and the win rate enter the evidence only when the judge passes calibration.

Modules: `plan` (the form, the plan), `replay` (sampling, the replay), `judging` (MiniLM, the judge,
the estimates), `summary` (the quality summary and the evidence), `outputs` (files, MLflow),
`job` (`run_quality`, `lockgate run quality`).
"""

from __future__ import annotations

from lockgate.jobs.quality.job import DAG_ID, cmd_run, run_quality
from lockgate.jobs.quality.judging import embedding_scores as _embedding_scores
from lockgate.jobs.quality.judging import judge_quality
from lockgate.jobs.quality.plan import (
    PLAN_FILE,
    REPLAY_FILE,
    QualityParams,
    QualityPlan,
    current_window,
    plan_quality,
    resolve_versions,
)
from lockgate.jobs.quality.replay import model_directory, replay_challenger
from lockgate.jobs.quality.replay import sample_version as _sample
from lockgate.jobs.quality.summary import _judge_note

__all__ = [
    "DAG_ID",
    "PLAN_FILE",
    "REPLAY_FILE",
    "QualityParams",
    "QualityPlan",
    "_embedding_scores",
    "_judge_note",
    "_sample",
    "cmd_run",
    "current_window",
    "judge_quality",
    "model_directory",
    "plan_quality",
    "replay_challenger",
    "resolve_versions",
    "run_quality",
]
