"""Trust in the judge: its agreement with people on a human-labelled set kept in the repository.

The set (`judge/calibration/human_v1.jsonl`) holds prompt/response pairs (with a
RAG context for faithfulness) and a person's score under one rubric: clear good
and clearly bad answers, and some in between. The configured judge scores them
with the same rubric files and redaction as production samples; Spearman's rho
and Cohen's kappa (quadratically weighted on a 0-1 scale shared by all rubrics)
measure the agreement. Below the policy's thresholds, the judge's scores are kept
out of the evidence and the report says why.

Pairwise preference has no items of its own: it asks the relevance question of
two answers, so it is trusted when the relevance-based calibration passes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lockgate.errors import ConfigError
from lockgate.evidence import Estimate
from lockgate.judge.rubrics import Rubric, load_rubric
from lockgate.judge.scoring import JudgeRequest, Judgment, unscored_counts
from lockgate.judge.statistics import bootstrap_agreement, cohen_kappa, spearman, to_levels
from lockgate.settings import QualityConfig, RubricName, StatisticsConfig

log = logging.getLogger(__name__)

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
DEFAULT_SET = CALIBRATION_DIR / "human_v1.jsonl"
KAPPA_LEVELS = 5  # 0, .25, .5, .75, 1: the 1-5 scales, with binary labels at the ends


class CalibrationItem(BaseModel):
    """One human-labelled example."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    rubric: Literal["relevance", "faithfulness", "safety", "refusal"]
    prompt: str
    response: str
    context: str | None = None
    score: float = Field(description="The person's score, in the rubric's label values (e.g. 1-5, or 1/0).")
    labeller: str
    note: str | None = None


class RubricAgreement(BaseModel):
    rubric: str
    n: int
    scored: int
    spearman: float
    kappa: float


class ItemResult(BaseModel):
    id: str
    rubric: str
    human: float
    judge: float | None
    error: str | None = None


class CalibrationResult(BaseModel):
    """The judge's agreement with people, and whether it is trusted for gating."""

    judge: str
    description: str
    set_path: str
    set_hash: str
    rubrics: list[str]
    n_items: int
    n_scored: int
    spearman: Estimate | None
    kappa: Estimate | None
    per_rubric: list[RubricAgreement]
    unscored: dict[str, int] = Field(default_factory=dict)
    passed: bool
    reasons: list[str] = Field(default_factory=list, description="Why it failed; empty when it passed.")
    thresholds: dict[str, float]
    items: list[ItemResult] = Field(default_factory=list)
    cached: bool = False

    @property
    def scored_share(self) -> float:
        return self.n_scored / self.n_items if self.n_items else 0.0


def load_calibration_set(path: str | Path | None = None) -> list[CalibrationItem]:
    """Read and validate the JSONL set; a bad line raises `ConfigError` naming it."""
    p = Path(path) if path else DEFAULT_SET
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read calibration set: {exc.strerror}", source=str(p)) from None
    items: list[CalibrationItem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = CalibrationItem.model_validate_json(line)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "<line>"
            raise ConfigError(f"line {number}: {where}: {err['msg']}", source=str(p)) from None
        rubric = load_rubric(item.rubric)
        if item.score not in rubric.values:
            raise ConfigError(f"line {number}: score {item.score} is not one of {rubric.values}", source=str(p))
        if rubric.needs_context and not item.context:
            raise ConfigError(f"line {number}: rubric {item.rubric} needs a context", source=str(p))
        items.append(item)
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise ConfigError("calibration item ids must be unique", source=str(p))
    return items


def calibration_rubrics(rubrics: Sequence[RubricName]) -> list[RubricName]:
    """The rubrics whose items calibrate the requested ones (pairwise leans on relevance)."""
    out: list[RubricName] = [r for r in rubrics if r != "pairwise"]
    if "pairwise" in rubrics and "relevance" not in out:
        out.append("relevance")
    return out


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _judge_value(rubric: Rubric, score: float) -> float:
    """A judge score on the shared 0-1 scale, as a label for kappa: binary rubrics pick a side."""
    norm = rubric.normalise(score)
    return float(round(norm)) if rubric.kind == "binary" else norm


def evaluate_agreement(
    items: Sequence[CalibrationItem],
    judgments: Sequence[Judgment],
    *,
    judge: str,
    description: str,
    set_path: str,
    set_hash: str,
    config: QualityConfig,
    statistics: StatisticsConfig,
) -> CalibrationResult:
    """Agreement of judgments with the human scores; pure (no judge call)."""
    by_id = {j.item_id: j for j in judgments}
    rubrics = {i.rubric: load_rubric(i.rubric) for i in items}
    human: list[float] = []
    spear_judge: list[float] = []
    kappa_judge: list[float] = []
    results: list[ItemResult] = []
    per: dict[str, tuple[list[float], list[float], list[float], int]] = {}
    for item in items:
        rubric = rubrics[item.rubric]
        j = by_id.get(item.id)
        h = rubric.normalise(item.score)
        entry = per.setdefault(rubric.id, ([], [], [], 0))
        per[rubric.id] = (entry[0], entry[1], entry[2], entry[3] + 1)
        if j is None or j.score is None:
            error = j.error if j else "missing"
            results.append(ItemResult(id=item.id, rubric=rubric.id, human=item.score, judge=None, error=error))
            continue
        results.append(ItemResult(id=item.id, rubric=rubric.id, human=item.score, judge=j.score))
        human.append(h)
        spear_judge.append(rubric.normalise(j.score))
        kappa_judge.append(_judge_value(rubric, j.score))
        entry = per[rubric.id]
        entry[0].append(h)
        entry[1].append(rubric.normalise(j.score))
        entry[2].append(_judge_value(rubric, j.score))

    per_rubric = [
        RubricAgreement(
            rubric=rid,
            n=n,
            scored=len(h),
            spearman=spearman(sj, h),
            kappa=cohen_kappa(to_levels(kj, KAPPA_LEVELS), to_levels(h, KAPPA_LEVELS), KAPPA_LEVELS) if h else 0.0,
        )
        for rid, (h, sj, kj, n) in sorted(per.items())
    ]
    rho, kappa = _agreement(spear_judge, kappa_judge, human, statistics)
    thresholds = {
        "min_spearman": config.min_calibration_spearman,
        "min_kappa": config.min_calibration_kappa,
        "min_scored": config.min_calibration_scored,
    }
    reasons: list[str] = []
    n_items = len(items)
    share = len(human) / n_items if n_items else 0.0
    if share < config.min_calibration_scored:
        reasons.append(
            f"the judge scored {len(human)} of {n_items} calibration items ({share:.0%}), "
            f"below {config.min_calibration_scored:.0%}"
        )
    if rho is None or rho.value < config.min_calibration_spearman:
        reasons.append(f"Spearman {_fmt(rho)} with the human labels is below {config.min_calibration_spearman}")
    if kappa is None or kappa.value < config.min_calibration_kappa:
        reasons.append(f"Cohen's kappa {_fmt(kappa)} is below {config.min_calibration_kappa}")
    return CalibrationResult(
        judge=judge,
        description=description,
        set_path=set_path,
        set_hash=set_hash,
        rubrics=sorted(r.id for r in rubrics.values()),
        n_items=n_items,
        n_scored=len(human),
        spearman=rho,
        kappa=kappa,
        per_rubric=per_rubric,
        unscored=unscored_counts(judgments),
        passed=not reasons,
        reasons=reasons,
        thresholds=thresholds,
        items=results,
    )


def _fmt(e: Estimate | None) -> str:
    if e is None:
        return "n/a (too few scored items)"
    return f"{e.value:.2f} [{e.ci_low:.2f}, {e.ci_high:.2f}]"


def _agreement(
    spear_judge: list[float], kappa_judge: list[float], human: list[float], statistics: StatisticsConfig
) -> tuple[Estimate | None, Estimate | None]:
    # Spearman uses the judge's continuous expected scores; kappa its labels (binary rubrics rounded).
    resamples = min(1000, statistics.bootstrap_resamples)
    rho, _ = bootstrap_agreement(spear_judge, human, KAPPA_LEVELS, statistics.confidence, resamples, statistics.seed)
    _, kappa = bootstrap_agreement(kappa_judge, human, KAPPA_LEVELS, statistics.confidence, resamples, statistics.seed)
    return rho, kappa


def calibrate(
    backend_judge: Callable[[list[JudgeRequest]], list[Judgment]],
    *,
    judge: str,
    description: str,
    rubrics: Sequence[RubricName],
    config: QualityConfig,
    statistics: StatisticsConfig,
    redact: Callable[[str | None], str | None],
    cache_dir: Path | None = None,
    max_chars: int = 2000,
) -> CalibrationResult:
    """Score the calibration set with the judge and measure agreement.

    Results are cached in `cache_dir` for judges whose answers cannot change behind
    the same identity (local weights, fingerprinted); endpoint judges are asked every run.
    """
    path = Path(config.calibration_set) if config.calibration_set else DEFAULT_SET
    wanted = set(calibration_rubrics(rubrics))
    items = [i for i in load_calibration_set(path) if i.rubric in wanted]
    set_hash = file_hash(path)
    key_src = json.dumps([judge, set_hash, sorted(wanted), max_chars, config.model_dump(mode="json")], sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    cache_file = cache_dir / f"{key}.json" if cache_dir and judge.startswith("local:") else None
    if cache_file and cache_file.exists():
        try:
            cached = CalibrationResult.model_validate_json(cache_file.read_text())
            log.info("judge calibration from cache %s", cache_file)
            return cached.model_copy(update={"cached": True})
        except ValidationError:
            log.warning("ignoring unreadable calibration cache %s", cache_file)
    requests = [
        JudgeRequest(
            item_id=i.id,
            rubric=load_rubric(i.rubric),
            prompt=redact(i.prompt) or "",
            response=redact(i.response) or "",
            context=redact(i.context),
        )
        for i in items
    ]
    log.info("calibrating the judge on %d human-labelled items (%s)", len(requests), ", ".join(sorted(wanted)))
    judgments = backend_judge(requests)
    result = evaluate_agreement(
        items,
        judgments,
        judge=judge,
        description=description,
        set_path=str(path),
        set_hash=set_hash,
        config=config,
        statistics=statistics,
    )
    log.info(
        "judge calibration: Spearman %s, kappa %s, scored %d/%d: %s",
        _fmt(result.spearman),
        _fmt(result.kappa),
        result.n_scored,
        result.n_items,
        "passed" if result.passed else "FAILED (" + "; ".join(result.reasons) + ")",
    )
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(result.model_dump_json())
        tmp.replace(cache_file)
    return result
