"""The quality job's entry points: `run_quality` (the three steps chained), `lockgate run quality`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence

from lockgate.evidence import EvidenceSummary, evidence_payload
from lockgate.jobs.context import RunContext
from lockgate.jobs.quality.judging import judge_quality
from lockgate.jobs.quality.plan import QualityParams, plan_quality
from lockgate.jobs.quality.replay import replay_challenger
from lockgate.policy.schema import RubricName, load_policy

DAG_ID = "lockgate_quality"


def run_quality(
    ctx: RunContext,
    versions: Mapping[str, str] | None = None,
    sample_size: int | None = None,
    rubrics: Sequence[RubricName] | None = None,
) -> EvidenceSummary:
    """The whole job: plan, replay when needed, judge and report.

    Args:
        ctx: the run: a watched model of the policy; its run key keys the outputs (a rerun with the
            same key replaces them; default `manual__<window end>`); its DAG and run ids are recorded
            in the summary and the reports index; its data interval is the window to judge (widened
            to the policy's min_hours; default: the hours up to `ctx.now` or the clock).
        versions: {"challenger": v, "champion": v}; a missing one is read from its alias.
        sample_size: rows sampled per version (default: the policy's).
        rubrics: subset of relevance, faithfulness, safety, refusal, pairwise (default: the policy's).
    """
    policy = load_policy()
    plan = plan_quality(ctx, versions, sample_size, rubrics, policy=policy)
    replay = replay_challenger(plan, policy)
    return judge_quality(plan, replay, policy)


def cmd_run(args: argparse.Namespace) -> int:
    """`lockgate run quality --model M`: the job once, without Airflow, on the hours up to now."""
    params = QualityParams.from_params(
        {
            "model": args.model,
            "challenger_version": getattr(args, "challenger_version", None),
            "champion_version": getattr(args, "champion_version", None),
            "sample_size": getattr(args, "sample_size", None),
            "rubrics": getattr(args, "rubrics", None),
        }
    )
    summary = run_quality(RunContext.for_cli(params.model), params.versions, params.sample_size, params.rubrics)
    print(json.dumps(evidence_payload(summary), indent=2, default=str))
    return 0
