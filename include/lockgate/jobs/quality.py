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
   `quality_summary.json`, the latest copy, an MLflow run with the artifacts, and the
   reports-index row.

Everything is keyed by `run_key` (the DAG run), so a rerun overwrites its own outputs.
Judge metrics and the win rate enter the evidence only when the judge passes calibration.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lockgate.errors import ConfigError, UnknownModelVersionError
from lockgate.evidence import EvidenceSummary, MetricEvidence, utcnow, write_summary
from lockgate.policy.schema import FixedWindow, Policy, RubricName, load_policy, rubric_files
from lockgate.registry import tags as T
from lockgate.settings import get_settings

if TYPE_CHECKING:
    from lockgate.registry.runs import EvidenceRun

log = logging.getLogger(__name__)

DAG_ID = "lockgate_quality"
REPLAY_FILE = "replay.jsonl"
PLAN_FILE = "plan.json"

Mode = Literal["traffic", "replay", "champion_only", "no_versions"]


class QualityParams(BaseModel):
    """The DAG's trigger form, validated (a bad value fails the task without retry)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    challenger_version: str | None = Field(None, description="Default: the `challenger` alias.")
    champion_version: str | None = Field(None, description="Default: the `champion` alias.")
    sample_size: int | None = Field(None, gt=0, description="Default: the policy's quality.sample_size.")
    rubrics: list[RubricName] | None = Field(None, description="Default: the policy's quality.rubrics.")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> QualityParams:
        from pydantic import ValidationError

        from lockgate.settings import format_validation_error

        cleaned = {k: (None if v in ("", []) else v) for k, v in params.items() if k in cls.model_fields}
        try:
            validated = cls.model_validate(cleaned)
        except ValidationError as exc:
            key, msg = format_validation_error(exc)
            raise ConfigError(f"invalid DAG params ({msg})", key=key, source="params") from None
        if validated.rubrics:
            # Rubrics are files (packaged, or the policy's rubrics_dir): a name is valid when its file is there.
            present = rubric_files(load_policy().quality.rubrics_dir)
            unknown = [r for r in validated.rubrics if r not in present]
            if unknown:
                raise ConfigError(
                    f"invalid DAG params (no rubric file for {unknown}; present: {sorted(present)})",
                    key="rubrics",
                    source="params",
                )
        return validated

    @property
    def versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.challenger_version:
            out["challenger"] = self.challenger_version
        if self.champion_version:
            out["champion"] = self.champion_version
        return out


class QualityPlan(BaseModel):
    """What one run evaluates; JSON between the DAG's tasks (small, no texts)."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    run_key: str
    challenger_version: str | None
    champion_version: str | None
    window_start: datetime
    window_end: datetime
    sample_size: int
    rubrics: list[RubricName]
    seed: int
    mode: Mode
    traffic: dict[str, int] = Field(default_factory=dict, description="Rows per version in the window.")
    run_dir: str
    dag_id: str | None = None
    run_id: str | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def window(self) -> Any:
        from lockgate.logs.sampling import Window

        return Window(self.window_start, self.window_end)


# --------------------------------------------------------------------------- planning


def current_window(
    policy: Policy,
    model_name: str,
    data_interval: tuple[datetime, datetime] | None,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    """The window to judge: the model's current window (a DAG run's data interval, widened to min_hours)."""
    spec = policy.model(model_name).windows.current
    if isinstance(spec, FixedWindow):
        return spec.start, spec.end
    if data_interval is not None:
        start, end = data_interval
    else:
        end = now or datetime.now(UTC)  # a CLI run without a data interval: the hours up to now
        start = end
    start = min(start, end - timedelta(hours=spec.min_hours))
    return start.astimezone(UTC), end.astimezone(UTC)


def resolve_versions(model_name: str, versions: Mapping[str, str] | None) -> tuple[str | None, str | None, list[str]]:
    """(challenger, champion, notes): given versions win, else the registry's aliases."""
    given = dict(versions or {})
    unknown = set(given) - {"challenger", "champion"}
    if unknown:
        raise ConfigError(f"versions may name 'challenger' and 'champion', not {sorted(unknown)}", key="versions")
    notes: list[str] = []
    challenger, champion = given.get("challenger"), given.get("champion")
    if challenger is None or champion is None:
        from lockgate.registry.adapter import ModelRegistry

        try:
            state = ModelRegistry().state(model_name)
        except UnknownModelVersionError as exc:
            notes.append(f"{exc}: no aliases to read")
        else:
            challenger = challenger or state.challenger
            champion = champion or state.champion
    if challenger is not None and challenger == champion:
        notes.append(f"the challenger alias points at the champion (version {champion}): nothing to compare")
        challenger = None
    return challenger, champion, notes


def _engine() -> Any:
    from lockgate.logs.db import make_engine
    from lockgate.settings import resolve_logs_db_url

    return make_engine(resolve_logs_db_url())


def plan_quality(
    model_name: str,
    versions: Mapping[str, str] | None = None,
    sample_size: int | None = None,
    rubrics: Sequence[RubricName] | None = None,
    run_key: str | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    data_interval: tuple[datetime, datetime] | None = None,
    policy: Policy | None = None,
) -> QualityPlan:
    """Step 1: versions, window, and whether the challenger is judged on its traffic or replayed."""
    from lockgate.logs.sampling import Window, model_versions_in_window
    from lockgate.reports.html import report_dir

    pol = policy or load_policy()
    pol.model(model_name)  # an unwatched model is a configuration error
    qc = pol.quality
    chosen_rubrics = list(rubrics) if rubrics else list(qc.rubrics)
    present = rubric_files(qc.rubrics_dir)
    bad = [r for r in chosen_rubrics if r not in present]
    if bad or not chosen_rubrics:
        raise ConfigError(f"unknown rubrics {bad}; rubric files present: {sorted(present)}", key="rubrics")
    start, end = current_window(pol, model_name, data_interval)
    key = run_key or f"manual__{end.strftime('%Y%m%dT%H%M%S')}"
    challenger, champion, notes = resolve_versions(model_name, versions)
    traffic = model_versions_in_window(_engine(), model_name, Window(start, end), pol.logs)
    mode: Mode
    if challenger is None:
        mode = "champion_only" if champion else "no_versions"
    elif traffic.get(challenger, 0) >= qc.min_samples:
        mode = "traffic"
    elif qc.replay_when_no_traffic and champion is not None:
        mode = "replay"
        notes.append(
            f"challenger {challenger} has {traffic.get(challenger, 0)} rows in the window "
            f"(< {qc.min_samples}): its answers are replayed on the champion's sampled prompts"
        )
    else:
        mode = "traffic"
        notes.append(f"challenger {challenger} has {traffic.get(challenger, 0)} rows in the window and replay is off")
    plan = QualityPlan(
        model_name=model_name,
        run_key=key,
        challenger_version=challenger,
        champion_version=champion,
        window_start=start,
        window_end=end,
        sample_size=sample_size or qc.sample_size,
        rubrics=chosen_rubrics,
        seed=pol.statistics.seed,
        mode=mode,
        traffic=traffic,
        run_dir=str(report_dir("quality", model_name, key)),
        dag_id=dag_id,
        run_id=run_id,
        notes=notes,
    )
    (Path(plan.run_dir) / PLAN_FILE).write_text(plan.model_dump_json(indent=2))
    log.info(
        "quality plan for %s: challenger %s, champion %s, mode %s, window %s, traffic %s",
        model_name,
        challenger,
        champion,
        mode,
        plan.window,
        traffic,
    )
    return plan


# --------------------------------------------------------------------------- sampling


def _sample(plan: QualityPlan, policy: Policy, version: str) -> Any:
    from lockgate.logs.redaction import Redactor
    from lockgate.logs.sampling import sample_inference_logs

    # Redacted here, before any text reaches the judge, the replay model or the report.
    return sample_inference_logs(
        _engine(),
        plan.model_name,
        plan.window,
        plan.sample_size,
        seed=plan.seed,
        versions=[version],
        config=policy.logs,
        redactor=Redactor(policy.redaction),
    )


# --------------------------------------------------------------------------- replay


def model_directory(model_name: str, version: str, cache_root: Path) -> Path:
    """A local Hugging Face directory of a registered version.

    Fast path: the `lockgate.source_path` tag (set by `lockgate models register`) when that
    directory exists here. Otherwise the version's artifacts are downloaded (once) into
    `<cache_root>/model_cache`, the cache the benchmark uses (`lockgate.models.materialise`).
    """
    from lockgate.models import materialise
    from lockgate.registry.adapter import ModelRegistry

    source = ModelRegistry().version_tags(model_name, version).get(T.SOURCE_PATH)
    if source and (Path(source) / "config.json").exists():
        return Path(source)
    return materialise(model_name, version, cache_root / "model_cache")


def replay_challenger(plan: QualityPlan, policy: Policy | None = None) -> str | None:
    """Step 2 (GPU): the challenger's answers to the champion's sampled prompts; None when not needed."""
    if plan.mode != "replay" or plan.challenger_version is None or plan.champion_version is None:
        log.info("no replay needed (mode %s)", plan.mode)
        return None
    from lockgate.judge.replay import generate_responses

    pol = policy or load_policy()
    path = Path(plan.run_dir) / REPLAY_FILE
    sample = _sample(plan, pol, plan.champion_version)
    rows = [r for r in sample.rows if r.get("prompt")]
    if path.exists():
        done = {json.loads(line)["request_id"] for line in path.read_text().splitlines() if line.strip()}
        if done == {r["request_id"] for r in rows}:
            log.info("replay already done for this run: %s", path)
            return str(path)
    model_dir = model_directory(plan.model_name, plan.challenger_version, get_settings().home)
    started = time.perf_counter()
    replies = generate_responses(
        model_dir,
        rows,
        max_new_tokens=pol.quality.replay_max_new_tokens,
        batch_size=pol.quality.replay_batch_size,
        device=pol.quality.judge.device,
    )
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for reply in replies:
            f.write(json.dumps({**reply, "model_version": plan.challenger_version}) + "\n")
    tmp.replace(path)
    log.info(
        "replayed %d prompts through challenger %s in %.1f s",
        len(replies),
        plan.challenger_version,
        time.perf_counter() - started,
    )
    return str(path)


def _read_replay(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- judging


def _embedding_scores(samples: Sequence[Any]) -> tuple[dict[str, float], dict[str, float]]:
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


def _judge_note(calibration: Any, trusted: bool, rubrics_for_judge: bool) -> str:
    if not rubrics_for_judge:
        return "No judge rubric was requested."
    if calibration is None:
        return "The judge was not calibrated."
    if trusted:
        note = (
            f"The judge agrees with {calibration.provenance} (Spearman {calibration.spearman.value:.2f}, "
            f"kappa {calibration.kappa.value:.2f}): its scores are evidence and gates may use them."
        )
        if calibration.uncalibrated_rubrics:
            note += (
                f" The set has no labelled item for {', '.join(calibration.uncalibrated_rubrics)}: "
                "those rubrics' scores are shown for transparency only and are not evidence."
            )
        return note
    return (
        f"The judge FAILED calibration against {calibration.provenance} (" + "; ".join(calibration.reasons) + "). "
        "Its scores carry no established signal: judge_* metrics and the win rate are left out of the evidence "
        "(gates on them are missing) and shown below for transparency only. Quality is judged on the MiniLM "
        "relevance and grounding scores, the refusal detector and error rates."
    )


def judge_quality(plan: QualityPlan, replay_path: str | None = None, policy: Policy | None = None) -> EvidenceSummary:
    """Step 3: score, calibrate, estimate, report. Returns the summary the gates read."""
    from lockgate.judge.backends import make_backend
    from lockgate.judge.calibration import calibrate
    from lockgate.judge.evaluation import (
        Sample,
        build_metrics,
        is_judge_score,
        judge_metric,
        judge_requests,
        match_pairs,
        pairwise_requests,
        pairwise_result,
        prompt_key,
        rubric_metric_info,
        version_scores,
    )
    from lockgate.judge.rubrics import load_rubric
    from lockgate.judge.scoring import unscored_counts
    from lockgate.judge.summary import PairwiseInfo, QualitySummary, VersionInfo
    from lockgate.logs.redaction import Redactor

    pol = policy or load_policy()
    qc = pol.quality
    stats = pol.statistics
    settings = get_settings()
    run_dir = Path(plan.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    notes = list(plan.notes)

    # ---- samples
    versions: list[VersionInfo] = []
    samples: dict[str, list[Sample]] = {"challenger": [], "champion": []}
    quarantined: dict[str, int] = {}
    redactions: dict[str, int] = {}
    for role, version in (("champion", plan.champion_version), ("challenger", plan.challenger_version)):
        if version is None:
            continue
        if role == "challenger" and plan.mode == "replay":
            continue  # built from the replay file below
        sample = _sample(plan, pol, version)
        for reason, n in sample.quarantined.items():
            quarantined[reason] = quarantined.get(reason, 0) + n
        for kind, n in sample.redactions.items():
            redactions[kind] = redactions.get(kind, 0) + n
        # Canary answers count as "the same prompt" as a champion answer by their text; replayed
        # answers align with the champion's by request id (a paired comparison).
        samples[role] = [
            Sample.from_row(r, match_key=None if plan.mode == "replay" else prompt_key(r["prompt"]))
            for r in sample.rows
        ]
        versions.append(
            VersionInfo(
                role=role,
                version=version,
                source="logs",
                window_rows=plan.traffic.get(version, 0),
                sampled=sample.sampled,
                usable=len(sample.rows),
                answered=sum(1 for s in samples[role] if s.answered),
                quarantined=dict(sample.quarantined),
            )
        )
    if plan.mode == "replay" and plan.challenger_version:
        path = Path(replay_path) if replay_path else run_dir / REPLAY_FILE
        if not path.exists():
            raise ConfigError(f"replay mode but no replay file at {path}: run the replay step first", key="replay")
        rows = _read_replay(path)
        samples["challenger"] = [
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
        versions.append(
            VersionInfo(
                role="challenger",
                version=plan.challenger_version,
                source="replay",
                window_rows=plan.traffic.get(plan.challenger_version, 0),
                sampled=len(rows),
                usable=len(rows),
                answered=sum(1 for s in samples["challenger"] if s.answered),
            )
        )
    timings["sampling"] = time.perf_counter() - t0

    # ---- MiniLM
    t1 = time.perf_counter()
    all_samples = samples["challenger"] + samples["champion"]
    relevance, grounding = _embedding_scores(all_samples)
    timings["embeddings"] = time.perf_counter() - t1

    # ---- judge: calibration, per-sample rubrics, pairwise
    rubrics = {name: load_rubric(name, rubrics_dir=qc.rubrics_dir) for name in plan.rubrics}
    judge_rubrics = [r for r in plan.rubrics if r != "pairwise"]
    t2 = time.perf_counter()
    backend = make_backend(qc.judge, settings.home)
    redactor = Redactor(pol.redaction)
    try:
        calibration = calibrate(
            backend.judge,
            judge=backend.identity,
            description=backend.description,
            rubrics=plan.rubrics,
            config=qc,
            statistics=stats,
            redact=redactor,
            cache_dir=settings.home / "judge" / "calibration",
            max_chars=qc.judge.max_input_chars,
        )
        timings["calibration"] = time.perf_counter() - t2
        trusted = calibration.passed
        requests = judge_requests(all_samples, rubrics)
        pairs = match_pairs(samples["challenger"], samples["champion"]) if "pairwise" in rubrics else []
        pair_reqs = pairwise_requests(pairs, rubrics["pairwise"]) if pairs else []
        total = len(requests) + len(pair_reqs)
        last_logged = [0.0]

        from lockgate.progress import count_progress

        def progress(done: int, n: int) -> None:
            now = time.perf_counter()
            if done == n or now - last_logged[0] > 5:
                last_logged[0] = now
                count_progress("judge: samples judged", done, n)

        t3 = time.perf_counter()
        log.info("judging %d requests with %s", total, backend.description)
        count_progress("judge: samples judged", 0, total)
        judged = backend.judge(requests + pair_reqs, progress=progress)
        timings["judging"] = time.perf_counter() - t3
    finally:
        backend.close()
    by_id = {j.item_id: j for j in judged}
    pw = pairwise_result(pairs, by_id, stats)
    if "pairwise" in rubrics:
        how = (
            "replayed challenger answers against the champion's logged answers to the same prompts"
            if plan.mode == "replay"
            else "canary answers matched to champion answers to the same prompt text"
        )
        if len(pw.outcomes) < qc.min_samples:
            notes.append(f"pairwise: {len(pw.outcomes)} scored pairs (< {qc.min_samples}): no win rate in the evidence")
    else:
        how = "not requested"

    # ---- estimates
    scores = {
        role: version_scores(
            (plan.challenger_version if role == "challenger" else plan.champion_version) or "",
            samples[role],
            relevance,
            grounding,
            by_id,
            judge_rubrics,
            count_errors=not (role == "challenger" and plan.mode == "replay"),
        )
        for role in ("challenger", "champion")
    }
    ch = scores["challenger"] if plan.challenger_version else None
    cp = scores["champion"] if plan.champion_version else None
    common: dict[str, Any] = {
        "paired": plan.mode == "replay",
        "min_samples": qc.min_samples,
        "pairwise": pw,
        "metric_info": rubric_metric_info(rubrics.values()),
    }
    cal_estimates = (calibration.spearman, calibration.kappa)
    metrics = build_metrics(ch, cp, stats, include_judge=trusted, calibration=cal_estimates, **common)
    untrusted: dict[str, MetricEvidence] = {}
    if not trusted and judge_rubrics:
        everything = build_metrics(ch, cp, stats, include_judge=True, **common)
        untrusted = {k: v for k, v in everything.items() if is_judge_score(k) or k == "win_rate"}
    # A rubric the calibration set has no labelled item for was never checked: not evidence.
    for name in calibration.uncalibrated_rubrics:
        metric = metrics.pop(judge_metric(name), None)
        if metric is not None:
            untrusted[judge_metric(name)] = metric
            notes.append(f"rubric {name}: no labelled item in the calibration set, so judge_{name} is not evidence")
        if name == "relevance" and "win_rate" in metrics:
            untrusted["win_rate"] = metrics.pop("win_rate")  # pairwise leans on relevance's calibration
    for role, vs in (("challenger", ch), ("champion", cp)):
        if vs is not None and vs.answered < qc.min_samples:
            notes.append(
                f"{role} {vs.version}: {vs.answered} answered samples (< min_samples {qc.min_samples}): "
                "its estimates are left out"
            )
    for v in versions:
        ids = {s.id for s in samples[v.role]}
        v.unscored = unscored_counts(j for j in judged if j.item_id.split("|", 1)[0] in ids)

    enough_any = any(vs is not None and vs.answered >= qc.min_samples for vs in (ch, cp))
    status: Literal["ok", "insufficient_data"] = "ok" if enough_any else "insufficient_data"
    judge_note = _judge_note(calibration, trusted, bool(plan.rubrics))
    message_parts = []
    if plan.mode in ("champion_only", "no_versions"):
        message_parts.append("no challenger to compare" if plan.mode == "champion_only" else "no versions found")
    if not enough_any:
        message_parts.append(f"fewer than {qc.min_samples} answered samples for every version")
    if not trusted:
        message_parts.append(
            "judge failed calibration (" + "; ".join(calibration.reasons) + "): judge_* metrics and win_rate omitted"
        )
    quality = QualitySummary(
        model_name=plan.model_name,
        run_key=plan.run_key,
        mode=plan.mode,
        challenger_version=plan.challenger_version,
        champion_version=plan.champion_version,
        window_start=plan.window_start.isoformat(),
        window_end=plan.window_end.isoformat(),
        rubrics=sorted(r.id for r in rubrics.values()),
        judge=calibration.description,
        judge_identity=calibration.judge,
        judge_trusted=trusted,
        judge_note=judge_note,
        calibration=calibration,
        versions=versions,
        pairwise=PairwiseInfo(
            pairs=pw.pairs,
            scored=len(pw.outcomes),
            unscored=pw.unscored,
            win_rate=pw.win_rate,
            position_consistency=pw.position_consistency,
            how=how,
        ),
        untrusted_judge_metrics=untrusted,
        redactions=redactions,
        notes=notes,
        timings_s={k: round(v, 2) for k, v in timings.items()},
        examples=_worst_examples(samples, scores, by_id, qc.worst_examples),
    )
    summary = EvidenceSummary(
        kind="quality",
        model_name=plan.model_name,
        challenger_version=plan.challenger_version,
        champion_version=plan.champion_version,
        created_at=utcnow(),
        window_start=plan.window_start,
        window_end=plan.window_end,
        status=status,
        valid=True,
        message="; ".join(message_parts) or None,
        metrics=metrics,
        sample_sizes=_sample_sizes(versions, pw.pairs, len(pw.outcomes), calibration.n_items),
        quarantined=quarantined,
        dag_id=plan.dag_id,
        run_id=plan.run_id,
        details={"quality": quality.compact(), "mode": plan.mode, "judge_trusted": trusted},
    )
    return _write_outputs(plan, pol, summary, quality, samples, scores, timings, t0, by_id)


def _sample_sizes(versions: Sequence[Any], pairs: int, scored_pairs: int, calibration_items: int) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for v in versions:
        sizes[v.role] = v.answered
        sizes[f"{v.role}_sampled"] = v.sampled
    sizes["pairs"] = pairs
    sizes["pairs_scored"] = scored_pairs
    sizes["calibration_items"] = calibration_items
    return sizes


def _worst_examples(
    samples: Mapping[str, Sequence[Any]], scores: Mapping[str, Any], judgments: Mapping[str, Any], limit: int
) -> list[Any]:
    """The lowest MiniLM-relevance answers of each version (already redacted)."""
    from lockgate.judge.summary import Example

    out: list[Example] = []
    for role in ("challenger", "champion"):
        rel = scores[role].series("embedding_relevance")
        answered = [s for s in samples[role] if s.answered and s.key in rel]
        answered.sort(key=lambda s: rel[s.key])
        for s in answered[:limit]:
            j = judgments.get(f"{s.id}|relevance")
            out.append(
                Example(
                    role=role,
                    version=s.version,
                    request_id=s.id,
                    metric="embedding_relevance",
                    value=rel[s.key],
                    prompt=s.prompt,
                    response=s.response,
                    context=s.context,
                    rationale=j.rationale if j is not None else None,
                )
            )
    return out


# --------------------------------------------------------------------------- outputs


def _write_outputs(
    plan: QualityPlan,
    policy: Policy,
    summary: EvidenceSummary,
    quality: Any,
    samples: Mapping[str, Sequence[Any]],
    scores: Mapping[str, Any],
    timings: dict[str, float],
    t0: float,
    judgments: Mapping[str, Any] | None = None,
) -> EvidenceSummary:
    from lockgate.jobs.publish import publish_evidence
    from lockgate.judge.report import render_quality_report, score_distributions
    from lockgate.reports.index import ReportEntry

    run_dir = Path(plan.run_dir)
    settings = get_settings()
    evidently_href = None
    if policy.quality.evidently_report:
        t = time.perf_counter()
        try:
            evidently_href = _evidently(run_dir, samples, scores)
        except Exception as exc:  # noqa: BLE001 - the extra page is optional; our report and evidence stand
            log.warning("Evidently descriptor report failed: %s", exc)
            quality.notes.append(f"the Evidently descriptor report could not be built: {type(exc).__name__}")
        timings["evidently"] = time.perf_counter() - t
    distributions = score_distributions(scores, quality)
    report_path = run_dir / "report.html"
    summary.report_path = str(report_path)
    timings["total"] = time.perf_counter() - t0
    quality.timings_s = {k: round(v, 2) for k, v in timings.items()}
    summary.details["quality"] = quality.compact()
    # MLflow first, so the summary records its run id; the artifacts are logged once the files exist.
    run = _mlflow_run(plan, summary)
    summary.mlflow_run_ids = {"quality": run.run_id}
    if policy.quality.mlflow_assessments and judgments:
        t = time.perf_counter()
        _mlflow_assessments(run, plan, quality, samples, judgments, policy.quality.mlflow_assessments)
        timings["mlflow_assessments"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        quality.timings_s = {k: round(v, 2) for k, v in timings.items()}
        summary.details["quality"] = quality.compact()
    report_path.write_text(render_quality_report(summary, quality, distributions, evidently_href))
    (run_dir / "quality_summary.json").write_text(quality.model_dump_json(indent=2))
    write_summary(summary, run_dir / "summary.json")
    _mlflow_artifacts(run, run_dir)
    entry = ReportEntry(
        kind="quality",
        model_name=plan.model_name,
        run_key=plan.run_key,
        status=summary.status,
        title=f"Quality {plan.model_name}: challenger {plan.challenger_version} vs champion {plan.champion_version}",
        path=str(report_path),
        model_version=plan.challenger_version,
        champion_version=plan.champion_version,
        dag_id=plan.dag_id,
        run_id=plan.run_id,
        created_at=summary.created_at,
    )
    latest = publish_evidence(
        summary, run_dir / "summary.json", reports_dir=settings.reports_dir, report=entry, run_key=plan.run_key
    )
    log.info("quality report %s; summary %s (the latest: %s)", report_path, run_dir / "summary.json", latest)
    return summary


def _evidently(run_dir: Path, samples: Mapping[str, Sequence[Any]], scores: Mapping[str, Any]) -> str | None:
    from lockgate.judge.evidently_report import write_evidently_report

    numeric = ["embedding_relevance", "embedding_grounding", "judge_relevance", "judge_safety"]

    def rows(role: str) -> list[dict[str, Any]]:
        out = []
        for s in samples[role]:
            if not s.answered:
                continue
            row: dict[str, Any] = {"prompt": s.prompt, "response": s.response}
            for m in numeric:
                row[m] = scores[role].series(m).get(s.key)
            out.append(row)
        return out

    path = write_evidently_report(rows("challenger"), rows("champion"), numeric, run_dir / "evidently.html")
    return path.name if path else None


def _mlflow_run(plan: QualityPlan, summary: EvidenceSummary) -> EvidenceRun:
    """The MLflow run of this run key (reused on rerun), with headline metrics logged."""
    from lockgate.registry.runs import EvidenceRun

    run = EvidenceRun.open(
        plan.model_name,
        {T.RUN_KIND: "quality", T.RUN_KEY: plan.run_key},
        tags={
            T.RUN_MODEL: plan.model_name,
            T.RUN_CHALLENGER_VERSION: str(plan.challenger_version),
            T.RUN_CHAMPION_VERSION: str(plan.champion_version),
        },
        run_name=f"quality-{plan.run_key}",
    )
    metrics: dict[str, float] = {}
    for name, metric in summary.metrics.items():
        for role in ("challenger", "champion", "difference", "model"):
            est = getattr(metric, role)
            if est is not None:
                metrics[f"{name}.{role}"] = est.value
    run.log(metrics=metrics)
    run.finish()
    return run


def _mlflow_assessments(
    run: EvidenceRun,
    plan: QualityPlan,
    quality: Any,
    samples: Mapping[str, Sequence[Any]],
    judgments: Mapping[str, Any],
    limit: int,
) -> None:
    """Per-sample judge assessments on MLflow traces; a failure is a note in the report, not a failed job."""
    from lockgate.judge.mlflow_results import sample_records
    from lockgate.registry.genai import log_assessments

    records = sample_records(samples, judgments, plan.rubrics, limit)
    try:
        n = log_assessments(run.run_id, run.experiment_id, records, quality.judge_identity, quality.judge_trusted)
    except Exception as exc:  # noqa: BLE001 - the summary and report stand without MLflow's trace views
        log.warning("judge assessments could not be logged to MLflow: %s", exc)
        quality.notes.append(f"the judge's assessments could not be logged to MLflow: {type(exc).__name__}: {exc}")
        return
    quality.notes.append(
        f"{n} sampled requests with the judge's assessments are logged as traces of MLflow run {run.run_id} "
        "(MLflow's GenAI views)"
    )


def _mlflow_artifacts(run: EvidenceRun, run_dir: Path) -> None:
    names = ("report.html", "summary.json", "quality_summary.json", "evidently.html", PLAN_FILE, REPLAY_FILE)
    run.log_files([run_dir / name for name in names], "quality_report")


# --------------------------------------------------------------------------- entry points


def run_quality(
    model_name: str,
    versions: Mapping[str, str] | None = None,
    sample_size: int | None = None,
    rubrics: Sequence[RubricName] | None = None,
    run_key: str | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    data_interval: tuple[datetime, datetime] | None = None,
) -> EvidenceSummary:
    """The whole job: plan, replay when needed, judge and report.

    Args:
        model_name: a watched model of the policy.
        versions: {"challenger": v, "champion": v}; a missing one is read from its alias.
        sample_size: rows sampled per version (default: the policy's).
        rubrics: subset of relevance, faithfulness, safety, refusal, pairwise (default: the policy's).
        run_key: outputs are keyed by it; a rerun with the same key replaces them.
        dag_id, run_id: the Airflow run, recorded in the summary and the reports index.
        data_interval: the window to judge (widened to the policy's min_hours).
    """
    policy = load_policy()
    plan = plan_quality(
        model_name, versions, sample_size, rubrics, run_key, dag_id, run_id, data_interval, policy=policy
    )
    replay = replay_challenger(plan, policy)
    return judge_quality(plan, replay, policy)


def headline(summary: EvidenceSummary) -> dict[str, Any]:
    """Small JSON for the asset event and the task's return value."""
    out: dict[str, Any] = {
        "model": summary.model_name,
        "challenger_version": summary.challenger_version,
        "champion_version": summary.champion_version,
        "status": summary.status,
        "summary_path": str(Path(summary.report_path).with_name("summary.json")) if summary.report_path else None,
        "report_path": summary.report_path,
        "judge_trusted": bool(summary.details.get("judge_trusted")),
    }
    for name in ("embedding_relevance", "embedding_grounding", "error_rate", "win_rate", "unscored_rate"):
        m = summary.metrics.get(name)
        if m is None:
            continue
        if m.difference is not None:
            out[f"{name}_difference"] = round(m.difference.value, 4)
            out[f"{name}_difference_ci"] = [m.difference.ci_low, m.difference.ci_high]
        elif m.challenger is not None:
            out[f"{name}_challenger"] = round(m.challenger.value, 4)
        if m.champion is not None and name == "error_rate":
            out["error_rate_champion"] = round(m.champion.value, 4)
    return out


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
    summary = run_quality(params.model, params.versions, params.sample_size, params.rubrics)
    print(json.dumps(headline(summary), indent=2, default=str))
    return 0
