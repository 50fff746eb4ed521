"""The quality job's third step: sample, score with MiniLM and the judge, calibrate, estimate, report."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgate.errors import ConfigError
from lockgate.evidence import EvidenceSummary, MetricEvidence
from lockgate.jobs.quality.plan import REPLAY_FILE, QualityPlan
from lockgate.jobs.quality.replay import fetch_replay, read_replay, sample_version
from lockgate.policy.schema import Policy, load_policy
from lockgate.settings import get_settings

log = logging.getLogger(__name__)


@dataclass
class Judging:
    """One judge step in progress: its samples, scores and judgments as they are made."""

    plan: QualityPlan
    policy: Policy
    t0: float
    notes: list[str]
    samples: dict[str, list[Any]] = field(default_factory=lambda: {"challenger": [], "champion": []})
    versions: list[Any] = field(default_factory=list)
    quarantined: dict[str, int] = field(default_factory=dict)
    redactions: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    rubrics: dict[str, Any] = field(default_factory=dict)
    calibration: Any = None
    judged: list[Any] = field(default_factory=list)
    pairs: list[Any] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)

    @property
    def judge_rubrics(self) -> list[str]:
        return [r for r in self.plan.rubrics if r != "pairwise"]

    @property
    def by_id(self) -> dict[str, Any]:
        return {j.item_id: j for j in self.judged}


def embedding_scores(samples: Sequence[Any]) -> tuple[dict[str, float], dict[str, float]]:
    """MiniLM prompt-response relevance and response-context grounding, by sample id."""
    from lockgate.embeddings import cosine_similarities, embed_texts

    answered = [s for s in samples if s.answered]
    texts: dict[str, int] = {}
    for s in answered:
        for t in (s.prompt, s.response or "", s.context or ""):
            texts.setdefault(t, len(texts))
    if not texts:
        return {}, {}
    vectors = embed_texts(list(texts))  # repeated prompts are embedded once

    def vec(text: str) -> Any:
        return vectors[texts[text]]

    import numpy as np

    rel = cosine_similarities(
        np.stack([vec(s.prompt) for s in answered]), np.stack([vec(s.response) for s in answered])
    )
    relevance = {s.id: float(v) for s, v in zip(answered, rel, strict=True)}
    grounded = [s for s in answered if s.context]
    grounding: dict[str, float] = {}
    if grounded:
        g = cosine_similarities(
            np.stack([vec(s.response) for s in grounded]), np.stack([vec(s.context) for s in grounded])
        )
        grounding = {s.id: float(v) for s, v in zip(grounded, g, strict=True)}
    return relevance, grounding


def _logged_samples(j: Judging) -> None:
    """Each version's sampled (redacted) logs; a replayed challenger is read from the replay file instead."""
    from lockgate.judge.evaluation import Sample, prompt_key
    from lockgate.judge.summary import VersionInfo

    plan = j.plan
    for role, version in (("champion", plan.champion_version), ("challenger", plan.challenger_version)):
        if version is None or (role == "challenger" and plan.mode == "replay"):
            continue
        sample = sample_version(plan, j.policy, version)
        for reason, n in sample.quarantined.items():
            j.quarantined[reason] = j.quarantined.get(reason, 0) + n
        for kind, n in sample.redactions.items():
            j.redactions[kind] = j.redactions.get(kind, 0) + n
        # Canary answers count as "the same prompt" as a champion answer by their text; replayed
        # answers align with the champion's by request id (a paired comparison).
        j.samples[role] = [
            Sample.from_row(r, match_key=None if plan.mode == "replay" else prompt_key(r["prompt"]))
            for r in sample.rows
        ]
        j.versions.append(
            VersionInfo(
                role=role,
                version=version,
                source="logs",
                window_rows=plan.traffic.get(version, 0),
                sampled=sample.sampled,
                usable=len(sample.rows),
                answered=sum(1 for s in j.samples[role] if s.answered),
                quarantined=dict(sample.quarantined),
            )
        )


def _replayed_samples(j: Judging, replay_path: str | None) -> None:
    from lockgate.judge.evaluation import Sample
    from lockgate.judge.summary import VersionInfo

    plan = j.plan
    if plan.mode != "replay" or not plan.challenger_version:
        return
    path = Path(replay_path) if replay_path else Path(plan.run_dir) / REPLAY_FILE
    fetch_replay(path)  # written on the replay task's host: from the reports store where it is not here
    if not path.exists():
        raise ConfigError(f"replay mode but no replay file at {path}: run the replay step first", key="replay")
    rows = read_replay(path)
    j.samples["challenger"] = [
        Sample(
            id=f"replay:{r['request_id']}",
            version=plan.challenger_version,
            prompt=r["prompt"] or "",
            response=r.get("response"),
            context=r.get("context"),
            status=r.get("status", "ok"),
            key=str(r["request_id"]),
        )
        for r in rows
    ]
    j.versions.append(
        VersionInfo(
            role="challenger",
            version=plan.challenger_version,
            source="replay",
            window_rows=plan.traffic.get(plan.challenger_version, 0),
            sampled=len(rows),
            usable=len(rows),
            answered=sum(1 for s in j.samples["challenger"] if s.answered),
        )
    )


def _run_judge(j: Judging) -> None:
    """Calibrate the judge, then judge every sample on its rubrics and every matched pair."""
    from lockgate.judge.backends import make_backend
    from lockgate.judge.calibration import calibrate
    from lockgate.judge.evaluation import judge_requests, match_pairs, pairwise_requests
    from lockgate.logs.redaction import Redactor
    from lockgate.progress import count_progress

    qc, settings = j.policy.quality, get_settings()
    t2 = time.perf_counter()
    backend = make_backend(qc.judge, settings.home)
    try:
        j.calibration = calibrate(
            backend.judge,
            judge=backend.identity,
            description=backend.description,
            rubrics=j.plan.rubrics,
            config=qc,
            statistics=j.policy.statistics,
            redact=Redactor(j.policy.redaction),
            cache_dir=settings.home / "judge" / "calibration",
            max_chars=qc.judge.max_input_chars,
        )
        j.timings["calibration"] = time.perf_counter() - t2
        requests = judge_requests(j.samples["challenger"] + j.samples["champion"], j.rubrics)
        if "pairwise" in j.rubrics:
            j.pairs = match_pairs(j.samples["challenger"], j.samples["champion"])
        pair_reqs = pairwise_requests(j.pairs, j.rubrics["pairwise"]) if j.pairs else []
        total = len(requests) + len(pair_reqs)
        last_logged = [0.0]

        def progress(done: int, n: int) -> None:
            now = time.perf_counter()
            if done == n or now - last_logged[0] > 5:
                last_logged[0] = now
                count_progress("judge: samples judged", done, n)

        t3 = time.perf_counter()
        log.info("judging %d requests with %s", total, backend.description)
        count_progress("judge: samples judged", 0, total)
        j.judged = backend.judge(requests + pair_reqs, progress=progress)
        j.timings["judging"] = time.perf_counter() - t3
    finally:
        backend.close()


def _pairwise(j: Judging) -> tuple[Any, str]:
    """The pairwise result, and how the pairs were made (for the report)."""
    from lockgate.judge.evaluation import pairwise_result

    qc = j.policy.quality
    pw = pairwise_result(j.pairs, j.by_id, j.policy.statistics)
    if "pairwise" not in j.rubrics:
        return pw, "not requested"
    if len(pw.outcomes) < qc.min_samples:
        j.notes.append(f"pairwise: {len(pw.outcomes)} scored pairs (< {qc.min_samples}): no win rate in the evidence")
    if j.plan.mode == "replay":
        return pw, "replayed challenger answers against the champion's logged answers to the same prompts"
    return pw, "canary answers matched to champion answers to the same prompt text"


def _estimates(j: Judging, relevance: dict[str, float], grounding: dict[str, float], pw: Any) -> tuple[
    dict[str, MetricEvidence], dict[str, MetricEvidence]
]:  # fmt: skip
    """The gate-ready metrics, and the judge's metrics that are not evidence (judge uncalibrated)."""
    from lockgate.judge.evaluation import (
        build_metrics,
        is_judge_score,
        judge_metric,
        rubric_metric_info,
        version_scores,
    )

    plan, qc, stats, calibration = j.plan, j.policy.quality, j.policy.statistics, j.calibration
    j.scores = {
        role: version_scores(
            (plan.challenger_version if role == "challenger" else plan.champion_version) or "",
            j.samples[role], relevance, grounding, j.by_id, j.judge_rubrics,
            count_errors=not (role == "challenger" and plan.mode == "replay"),
        )
        for role in ("challenger", "champion")
    }  # fmt: skip
    ch = j.scores["challenger"] if plan.challenger_version else None
    cp = j.scores["champion"] if plan.champion_version else None
    common: dict[str, Any] = {"paired": plan.mode == "replay", "min_samples": qc.min_samples, "pairwise": pw,
                              "metric_info": rubric_metric_info(j.rubrics.values())}  # fmt: skip
    trusted = calibration.passed
    metrics = build_metrics(ch, cp, stats, include_judge=trusted,
                            calibration=(calibration.spearman, calibration.kappa), **common)  # fmt: skip
    untrusted: dict[str, MetricEvidence] = {}
    if not trusted and j.judge_rubrics:
        everything = build_metrics(ch, cp, stats, include_judge=True, **common)
        untrusted = {k: v for k, v in everything.items() if is_judge_score(k) or k == "win_rate"}
    # A rubric the calibration set has no labelled item for was never checked: not evidence.
    for name in calibration.uncalibrated_rubrics:
        metric = metrics.pop(judge_metric(name), None)
        if metric is not None:
            untrusted[judge_metric(name)] = metric
            j.notes.append(f"rubric {name}: no labelled item in the calibration set, so judge_{name} is not evidence")
        if name == "relevance" and "win_rate" in metrics:
            untrusted["win_rate"] = metrics.pop("win_rate")  # pairwise leans on relevance's calibration
    for role, vs in (("challenger", ch), ("champion", cp)):
        if vs is not None and vs.answered < qc.min_samples:
            j.notes.append(
                f"{role} {vs.version}: {vs.answered} answered samples (< min_samples {qc.min_samples}): "
                "its estimates are left out"
            )
    return metrics, untrusted


def judge_quality(plan: QualityPlan, replay_path: str | None = None, policy: Policy | None = None) -> EvidenceSummary:
    """Step 3: score, calibrate, estimate, report. Returns the summary the gates read."""
    from lockgate.jobs.quality.outputs import write_outputs
    from lockgate.jobs.quality.summary import evidence_of
    from lockgate.judge.rubrics import load_rubric
    from lockgate.judge.scoring import unscored_counts

    pol = policy or load_policy()
    Path(plan.run_dir).mkdir(parents=True, exist_ok=True)
    j = Judging(plan, pol, time.perf_counter(), list(plan.notes))
    _logged_samples(j)
    _replayed_samples(j, replay_path)
    j.timings["sampling"] = time.perf_counter() - j.t0
    t1 = time.perf_counter()
    relevance, grounding = embedding_scores(j.samples["challenger"] + j.samples["champion"])
    j.timings["embeddings"] = time.perf_counter() - t1
    j.rubrics = {name: load_rubric(name, rubrics_dir=pol.quality.rubrics_dir) for name in plan.rubrics}
    _run_judge(j)
    pw, how = _pairwise(j)
    metrics, untrusted = _estimates(j, relevance, grounding, pw)
    for v in j.versions:
        ids = {s.id for s in j.samples[v.role]}
        v.unscored = unscored_counts(x for x in j.judged if x.item_id.split("|", 1)[0] in ids)
    summary, quality = evidence_of(j, metrics, untrusted, pw, how)
    return write_outputs(plan, pol, summary, quality, j.samples, j.scores, j.timings, j.t0, j.by_id)
