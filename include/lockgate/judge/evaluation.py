"""From sampled rows to quality metrics: pure functions over plain data (no I/O, no models).

The quality job feeds these with sampled, redacted log rows, MiniLM similarities
and judgments; they decide which questions the judge is asked, pair the
challenger's answers with the champion's on the same prompts, and turn per-sample
values into the `MetricEvidence` the promotion gates read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lockgate.evidence import Estimate, MetricEvidence
from lockgate.judge.rubrics import Rubric
from lockgate.judge.scoring import JudgeRequest, Judgment
from lockgate.judge.statistics import (
    bootstrap_difference,
    bootstrap_mean,
    bootstrap_ratio,
    pair_outcome,
    position_consistency,
    win_rate,
)
from lockgate.logs.refusal import is_refusal
from lockgate.policy.schema import StatisticsConfig

ERROR_STATUSES = frozenset({"error", "timeout"})

# The judge's agreement with the calibration set; not rubric scores (no rubric may take these names).
CALIBRATION_METRICS = ("judge_spearman", "judge_kappa")


def judge_metric(rubric_name: str) -> str:
    """The metric a rubric's scores are gated as: `quality.judge_<rubric name>`."""
    return f"judge_{rubric_name}"


def is_judge_score(metric: str) -> bool:
    """A per-rubric judge score (evidence only when the judge passed calibration)."""
    return metric.startswith("judge_") and metric not in CALIBRATION_METRICS


Mode = Literal["traffic", "replay", "champion_only"]


def prompt_key(prompt: str | None) -> str:
    """What makes two requests "the same prompt" for pairwise preference: the normalised prompt text.

    The pairwise rubric shows the judge the prompt and both answers (no context), so
    answers to the same question are comparable even when retrieval returned other passages.
    """
    return " ".join((prompt or "").lower().split())


@dataclass(frozen=True)
class Sample:
    """One sampled (redacted) answer of one version.

    `key` is unique within a version and aligns paired answers across versions (replay:
    the champion's request id for both); `match_key` says which answers count as the
    same prompt for pairwise comparison (default: `key`).
    """

    id: str
    version: str
    prompt: str
    response: str | None
    context: str | None
    status: str
    key: str
    match_key: str | None = None

    @property
    def pair_key(self) -> str:
        return self.match_key or self.key

    @property
    def answered(self) -> bool:
        return self.status == "ok" and bool(self.response and self.response.strip())

    @classmethod
    def from_row(cls, row: Mapping[str, Any], match_key: str | None = None) -> Sample:
        return cls(
            id=str(row["request_id"]),
            version=str(row["model_version"]),
            prompt=row["prompt"] or "",
            response=row.get("response"),
            context=row.get("context") or None,
            status=str(row.get("status") or "ok"),
            key=str(row["request_id"]),
            match_key=match_key,
        )


def judge_requests(samples: Iterable[Sample], rubrics: Mapping[str, Rubric]) -> list[JudgeRequest]:
    """Per-sample questions: every answered sample under each rubric (faithfulness only with a context)."""
    out: list[JudgeRequest] = []
    for s in samples:
        if not s.answered:
            continue
        for name, rubric in rubrics.items():
            if name == "pairwise":
                continue
            if rubric.needs_context and not s.context:
                continue
            out.append(
                JudgeRequest(
                    item_id=f"{s.id}|{name}",
                    rubric=rubric,
                    prompt=s.prompt,
                    response=s.response or "",
                    context=s.context,
                )
            )
    return out


def match_pairs(challenger: Sequence[Sample], champion: Sequence[Sample]) -> list[tuple[Sample, Sample]]:
    """Challenger and champion answers to the same prompt, each answer used once, in sample order."""
    pool: dict[str, list[Sample]] = {}
    for s in champion:
        if s.answered:
            pool.setdefault(s.pair_key, []).append(s)
    pairs: list[tuple[Sample, Sample]] = []
    for s in challenger:
        if s.answered and pool.get(s.pair_key):
            pairs.append((s, pool[s.pair_key].pop(0)))
    return pairs


def pairwise_requests(pairs: Sequence[tuple[Sample, Sample]], rubric: Rubric) -> list[JudgeRequest]:
    """Each pair asked twice: challenger as A (`|cf`), then champion as A (`|pf`), to cancel position bias."""
    out: list[JudgeRequest] = []
    for i, (ch, cp) in enumerate(pairs):
        base = f"pair{i:05d}"
        out.append(JudgeRequest(f"{base}|cf", rubric, ch.prompt, ch.response or "", ch.context, cp.response or ""))
        out.append(JudgeRequest(f"{base}|pf", rubric, ch.prompt, cp.response or "", ch.context, ch.response or ""))
    return out


@dataclass
class PairwiseResult:
    outcomes: list[float]
    challenger_first: list[float]
    champion_first: list[float]
    unscored: int
    pairs: int
    win_rate: Estimate | None
    position_consistency: float | None


def pairwise_result(
    pairs: Sequence[tuple[Sample, Sample]], judgments: Mapping[str, Judgment], stats: StatisticsConfig
) -> PairwiseResult:
    """Win rate of the challenger from both orders of every pair; a pair with an unscored order is unscored."""
    outcomes: list[float] = []
    cf: list[float] = []
    pf: list[float] = []
    unscored = 0
    for i in range(len(pairs)):
        a = judgments.get(f"pair{i:05d}|cf")
        b = judgments.get(f"pair{i:05d}|pf")
        out = pair_outcome(a.score if a else None, b.score if b else None)
        if out is None or a is None or b is None or a.score is None or b.score is None:
            unscored += 1
            continue
        outcomes.append(out)
        cf.append(a.score)
        pf.append(b.score)
    return PairwiseResult(
        outcomes=outcomes,
        challenger_first=cf,
        champion_first=pf,
        unscored=unscored,
        pairs=len(pairs),
        win_rate=win_rate(outcomes, stats.confidence, stats.bootstrap_resamples, stats.seed),
        position_consistency=position_consistency(cf, pf),
    )


@dataclass
class VersionScores:
    """Per-sample values of one version, keyed by `Sample.key` (so replayed answers align)."""

    version: str
    sampled: int = 0
    answered: int = 0
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> key -> value
    unscored: list[tuple[float, float]] = field(default_factory=list)  # per sample: (unscored, asked)
    error_flags: list[float] = field(default_factory=list)

    def add(self, metric: str, key: str, value: float) -> None:
        self.values.setdefault(metric, {})[key] = float(value)

    def series(self, metric: str) -> dict[str, float]:
        return self.values.get(metric, {})


def version_scores(
    version: str,
    samples: Sequence[Sample],
    relevance: Mapping[str, float],
    grounding: Mapping[str, float],
    judgments: Mapping[str, Judgment],
    rubric_names: Iterable[str],
    count_errors: bool = True,
) -> VersionScores:
    """Gather one version's per-sample values.

    `relevance`/`grounding`: MiniLM cosines by sample id; `judgments` by request item id
    (`<sample id>|<rubric>`). `count_errors`: False for replayed answers, whose errors
    are not production errors.
    """
    vs = VersionScores(version=version, sampled=len(samples))
    names = [r for r in rubric_names if r != "pairwise"]
    for s in samples:
        if count_errors:
            vs.error_flags.append(1.0 if s.status in ERROR_STATUSES else 0.0)
        if not s.answered:
            continue
        vs.answered += 1
        if s.id in relevance:
            vs.add("embedding_relevance", s.key, relevance[s.id])
        if s.id in grounding:
            vs.add("embedding_grounding", s.key, grounding[s.id])
        vs.add("refusal_rate", s.key, 1.0 if is_refusal(s.response) else 0.0)
        asked = unscored = 0
        for name in names:
            j = judgments.get(f"{s.id}|{name}")
            if j is None:
                continue
            asked += 1
            if j.score is None:
                unscored += 1
            else:
                vs.add(judge_metric(name), s.key, j.score)
        if asked:
            vs.unscored.append((float(unscored), float(asked)))
    return vs


METRIC_INFO: dict[str, tuple[str | None, str]] = {
    "embedding_relevance": ("cosine", "MiniLM cosine similarity of prompt and response (higher is better)"),
    "embedding_grounding": ("cosine", "MiniLM cosine similarity of response and RAG context, where there is one"),
    "judge_relevance": ("score 1-5", "LLM judge: relevance/helpfulness (expected score)"),
    "judge_faithfulness": ("score 1-5", "LLM judge: faithfulness to the RAG context (expected score)"),
    "judge_safety": ("share", "LLM judge: probability the response is safe"),
    "judge_refusal": ("share", "LLM judge: probability the response is a refusal"),
    "refusal_rate": ("share", "Share of answers that decline (phrase detector)"),
    "error_rate": ("share", "Share of sampled requests with status error or timeout"),
    "unscored_rate": ("share", "Share of judgments that could not be scored (failed or unparseable)"),
    "win_rate": ("share", "Challenger's pairwise win rate over the champion, ties half, both orders"),
    "judge_spearman": ("rho", "Judge agreement with the calibration set's labels (Spearman)"),
    "judge_kappa": ("kappa", "Judge agreement with the calibration set's labels (Cohen's kappa, quadratic)"),
}


def rubric_metric_info(rubrics: Iterable[Rubric]) -> dict[str, tuple[str | None, str]]:
    """Unit and meaning of each rubric's `judge_<name>` metric (a custom rubric's from its front matter)."""
    out: dict[str, tuple[str | None, str]] = {}
    for r in rubrics:
        if r.kind == "pairwise":
            continue
        out[r.metric] = METRIC_INFO.get(r.metric) or (r.unit, f"LLM judge: {r.description} (expected score)")
    return out


def _judge_score_names(*scores: VersionScores | None) -> list[str]:
    names: list[str] = []
    for vs in scores:
        for metric in vs.values if vs is not None else ():
            if is_judge_score(metric) and metric not in names:
                names.append(metric)
    return names


def _difference(
    metric: str, ch: VersionScores, cp: VersionScores, stats: StatisticsConfig, paired: bool
) -> Estimate | None:
    a, b = ch.series(metric), cp.series(metric)
    if paired:
        keys = sorted(set(a) & set(b))
        if not keys:
            return None
        return bootstrap_difference(
            [a[k] for k in keys], [b[k] for k in keys], stats.confidence, stats.bootstrap_resamples, stats.seed, True
        )
    return bootstrap_difference(
        list(a.values()), list(b.values()), stats.confidence, stats.bootstrap_resamples, stats.seed
    )


def build_metrics(
    challenger: VersionScores | None,
    champion: VersionScores | None,
    stats: StatisticsConfig,
    *,
    paired: bool,
    min_samples: int,
    include_judge: bool,
    pairwise: PairwiseResult | None = None,
    calibration: tuple[Estimate | None, Estimate | None] | None = None,
    metric_info: Mapping[str, tuple[str | None, str]] | None = None,
) -> dict[str, MetricEvidence]:
    """The evidence the gates read: per-version estimates, differences, win rate, judge agreement.

    A version with fewer than `min_samples` answered samples gets no estimates (so
    gates on it are `missing`, never passed). Judge metrics and the win rate are
    left out unless `include_judge` (calibration passed): one `judge_<rubric>` per rubric
    scored, whose unit and meaning come from `metric_info` (see `rubric_metric_info`).
    """
    c, s = stats.confidence, stats.bootstrap_resamples
    seed = stats.seed
    enough = {
        "challenger": challenger is not None and challenger.answered >= min_samples,
        "champion": champion is not None and champion.answered >= min_samples,
    }
    names = ["embedding_relevance", "embedding_grounding", "refusal_rate"]
    if include_judge:
        names += _judge_score_names(challenger, champion)
    info = {**METRIC_INFO, **(metric_info or {})}
    out: dict[str, MetricEvidence] = {}

    def put(name: str, **estimates: Estimate | None) -> None:
        kept = {k: v for k, v in estimates.items() if v is not None}
        if kept:
            unit, description = info.get(name, (None, f"LLM judge: {name.removeprefix('judge_')}"))
            out[name] = MetricEvidence(unit=unit, description=description, **kept)

    for name in names:
        ch = (
            bootstrap_mean(list(challenger.series(name).values()), c, s, seed)
            if challenger and enough["challenger"]
            else None
        )
        cp = (
            bootstrap_mean(list(champion.series(name).values()), c, s, seed)
            if champion and enough["champion"]
            else None
        )
        diff = None
        if enough["challenger"] and enough["champion"] and challenger and champion:
            diff = _difference(name, challenger, champion, stats, paired)
        put(name, challenger=ch, champion=cp, difference=diff)

    # Errors are over every sampled request (not only answered ones), and replayed answers have none.
    err: dict[str, Estimate | None] = {}
    for role, vs in (("challenger", challenger), ("champion", champion)):
        flags = vs.error_flags if vs is not None else []
        err[role] = bootstrap_mean(flags, c, s, seed) if len(flags) >= min_samples else None
    err_diff = None
    if challenger and champion and err["challenger"] and err["champion"]:
        err_diff = bootstrap_difference(challenger.error_flags, champion.error_flags, c, s, seed)
    put("error_rate", challenger=err["challenger"], champion=err["champion"], difference=err_diff)

    unscored: dict[str, Estimate | None] = {}
    for role, vs in (("challenger", challenger), ("champion", champion)):
        if vs is None or not vs.unscored or not enough[role]:
            unscored[role] = None
            continue
        num, den = zip(*vs.unscored, strict=True)
        unscored[role] = bootstrap_ratio(list(num), list(den), c, s, seed)
    un_diff = None
    if challenger and champion and unscored["challenger"] and unscored["champion"]:
        a = [u / n for u, n in challenger.unscored]
        b = [u / n for u, n in champion.unscored]
        un_diff = bootstrap_difference(a, b, c, s, seed)
    put("unscored_rate", challenger=unscored["challenger"], champion=unscored["champion"], difference=un_diff)

    if include_judge and pairwise is not None and pairwise.win_rate is not None:
        if len(pairwise.outcomes) >= min_samples:
            put("win_rate", challenger=pairwise.win_rate)
    if calibration is not None:
        rho, kappa = calibration
        put("judge_spearman", model=rho)
        put("judge_kappa", model=kappa)
    return out
