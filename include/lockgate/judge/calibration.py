"""Trust in the judge: its agreement with a labelled calibration set, and who labelled it.

A calibration set is a JSONL file of prompt/response pairs (with a RAG context where
the rubric needs one), each under one rubric, with one label per labeller
(`"labels": {"alice": 4, "bob": 5}`), and a manifest beside it, `<name>.meta.yaml`,
that says what the set is: its name, description, labellers, how it was made, and
whether the labels come from `people` outside the project or from the
`lockgate_project` itself. The packaged set, `judge/calibration/example_v1.jsonl`, is an
example written and labelled by one lockgate engineer; a deployment names its own
set in `quality.calibration_set` (`lockgate judge export-feedback` starts one from
its rated traffic).

The configured judge scores the labelled items with the same rubric files and
redaction as production samples; Spearman's rho and Cohen's kappa (quadratically
weighted on a 0-1 scale shared by all rubrics) measure its agreement with the
labels (their mean, where several people labelled an item). With two or more
labellers, the same statistics between each pair of labellers say how much
agreement the items allow: the ceiling the judge is held to. Below the policy's
thresholds, the judge's scores are kept out of the evidence and the report says why.

Pairwise preference has no items of its own: it asks the relevance question of
two answers, so it is trusted when the relevance-based calibration passes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lockgate.errors import ConfigError, ServiceUnavailableError
from lockgate.evidence import Estimate
from lockgate.judge.rubrics import Rubric, load_rubric
from lockgate.judge.scoring import JudgeRequest, Judgment, unscored_counts
from lockgate.judge.statistics import bootstrap_agreement, cohen_kappa, spearman, to_levels
from lockgate.policy.schema import QualityConfig, StatisticsConfig
from lockgate.registry import tags as T

log = logging.getLogger(__name__)

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
DEFAULT_SET = CALIBRATION_DIR / "example_v1.jsonl"
MANIFEST_SUFFIX = ".meta.yaml"
KAPPA_LEVELS = 5  # 0, .25, .5, .75, 1: the 1-5 scales, with binary labels at the ends
CACHE_SCHEMA = 2  # bump when CalibrationResult changes shape: older cached results are recomputed

LabelsFrom = Literal["people", "lockgate_project"]


class Labeller(BaseModel):
    """Someone who labelled items of a calibration set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    description: str = ""


class CalibrationManifest(BaseModel):
    """`<set>.meta.yaml`: what a calibration set is, who labelled it, and how it was made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    labels_from: LabelsFrom = Field(
        description="`people`: labelled by people outside the project that built the judge's setup "
        "(reviewers, users); `lockgate_project`: written and labelled by lockgate's own engineers."
    )
    method: str = Field(min_length=1, description="How the items were chosen or written, and how they were labelled.")
    labellers: list[Labeller] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_labellers(self) -> CalibrationManifest:
        ids = [lab.id for lab in self.labellers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"labeller ids must be unique: {ids}")
        return self


class CalibrationItem(BaseModel):
    """One example, with each labeller's score under its rubric (none yet: not used)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    rubric: str = Field(min_length=1)
    prompt: str
    response: str
    context: str | None = None
    labels: dict[str, float] = Field(
        default_factory=dict, description="Labeller id -> score, in the rubric's label values (e.g. 1-5, or 1/0)."
    )
    note: str | None = None
    hint: dict[str, Any] | None = Field(
        None, description="What the source said about the item (e.g. the user's feedback), shown to the labeller."
    )

    @property
    def labelled(self) -> bool:
        return bool(self.labels)

    @property
    def score(self) -> float:
        """The labels' mean (the one label, with one labeller)."""
        return sum(self.labels.values()) / len(self.labels)


@dataclass(frozen=True)
class CalibrationSet:
    path: Path | None  # the JSONL file; None for a set kept as an MLflow evaluation dataset
    manifest: CalibrationManifest
    items: list[CalibrationItem]
    unlabelled: int
    hash: str
    location: str = ""  # where it was read: the file, or `mlflow:<dataset name>`


class RubricAgreement(BaseModel):
    rubric: str
    n: int
    scored: int
    spearman: float
    kappa: float


class LabellerAgreement(BaseModel):
    """Two labellers' agreement on the items both labelled: what the judge can hope to reach."""

    a: str
    b: str
    n: int
    spearman: Estimate | None
    kappa: Estimate | None


class ItemResult(BaseModel):
    id: str
    rubric: str
    label: float = Field(description="The labels' mean.")
    judge: float | None
    error: str | None = None


class CalibrationResult(BaseModel):
    """The judge's agreement with the set's labels, who labelled them, and whether the judge is trusted."""

    judge: str
    description: str
    set_path: str
    set_hash: str
    set_name: str
    set_description: str
    labels_from: LabelsFrom
    method: str
    labellers: list[Labeller]
    labeller_agreement: list[LabellerAgreement] = Field(default_factory=list)
    set_size: int = Field(0, description="Labelled items in the whole set (all rubrics).")
    n_unlabelled: int = Field(0, description="Items of the set nobody has labelled yet (not used).")
    rubrics: list[str]
    uncalibrated_rubrics: list[str] = Field(
        default_factory=list, description="Requested rubrics the set has no labelled item for."
    )
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

    @property
    def provenance(self) -> str:
        """Whose labels the judge is compared with, in words that are true of this set."""
        n = len(self.labellers)
        who = "one labeller" if n == 1 else f"{n} labellers"
        if self.labels_from == "people":
            return f"the labels of people ({who}) in calibration set {self.set_name}"
        return (
            f"the labels of calibration set {self.set_name}, written for the lockgate project "
            f"({who} of the project, not independent people)"
        )


def resolve_set_path(value: str | Path | None) -> Path:
    """The calibration set a policy names: a JSONL path, or the name of a packaged set."""
    if value is None or str(value) == "":
        return DEFAULT_SET
    p = Path(value).expanduser()
    packaged = CALIBRATION_DIR / f"{value}.jsonl"
    if not p.exists() and "/" not in str(value) and packaged.exists():
        return packaged
    return p


def manifest_path(set_path: Path) -> Path:
    return set_path.with_name(set_path.name.removesuffix(".jsonl") + MANIFEST_SUFFIX)


def load_manifest(set_path: Path) -> CalibrationManifest:
    mp = manifest_path(set_path)
    try:
        data = yaml.safe_load(mp.read_text())
    except OSError as exc:
        raise ConfigError(
            f"cannot read the set's manifest ({exc.strerror}): every calibration set declares its name, "
            "description, labels_from, method and labellers in " + mp.name,
            source=str(mp),
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"manifest is not YAML: {exc}", source=str(mp)) from None
    try:
        return CalibrationManifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "<root>"
        raise ConfigError(f"{where}: {err['msg']}", key=where, source=str(mp)) from None


def _set_hash(path: Path) -> str:
    h = hashlib.sha256(path.read_bytes())
    h.update(manifest_path(path).read_bytes())
    return h.hexdigest()[:16]


MLFLOW_PREFIX = "mlflow:"
# Tags of an MLflow evaluation dataset that make it a calibration set (its manifest).
DATASET_TAGS = {
    "description": T.DATASET_DESCRIPTION,
    "labels_from": T.DATASET_LABELS_FROM,
    "method": T.DATASET_METHOD,
    "labellers": T.DATASET_LABELLERS,
}


def load_calibration_set(path: str | Path | None = None, rubrics_dir: str | Path | None = None) -> CalibrationSet:
    """Read and validate a set and its manifest; a bad item raises `ConfigError` naming it.

    `path`: a JSONL file, a packaged set's name (default: the packaged example set), or
    `mlflow:<name>`, an MLflow evaluation dataset (see `load_mlflow_calibration_set`).
    Items nobody has labelled yet are counted and left out.
    """
    if str(path or "").startswith(MLFLOW_PREFIX):
        return load_mlflow_calibration_set(str(path)[len(MLFLOW_PREFIX) :], rubrics_dir=rubrics_dir)
    p = resolve_set_path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read calibration set: {exc.strerror}", source=str(p)) from None
    manifest = load_manifest(p)
    entries = [(f"line {number}", line) for number, line in enumerate(lines, start=1) if line.strip()]
    items, unlabelled = _validated_items(entries, manifest, rubrics_dir, str(p), manifest_path(p).name)
    return CalibrationSet(
        path=p, manifest=manifest, items=items, unlabelled=unlabelled, hash=_set_hash(p), location=str(p)
    )


def _validated_items(
    entries: Sequence[tuple[str, str | dict[str, Any]]],
    manifest: CalibrationManifest,
    rubrics_dir: str | Path | None,
    source: str,
    manifest_name: str,
) -> tuple[list[CalibrationItem], int]:
    """The labelled items of a set (each entry: where it is, its JSON text or object), and how many are unlabelled."""
    declared = {lab.id for lab in manifest.labellers}
    items: list[CalibrationItem] = []
    unlabelled = 0
    rubrics: dict[str, Rubric] = {}
    for where_item, raw in entries:
        try:
            item = (
                CalibrationItem.model_validate_json(raw)
                if isinstance(raw, str)
                else CalibrationItem.model_validate(raw)
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "<item>"
            raise ConfigError(f"{where_item}: {where}: {err['msg']}", source=source) from None
        if item.rubric not in rubrics:
            rubrics[item.rubric] = load_rubric(item.rubric, rubrics_dir=rubrics_dir)
        rubric = rubrics[item.rubric]
        if rubric.kind == "pairwise":
            raise ConfigError(f"{where_item}: pairwise is calibrated on relevance items", source=source)
        unknown = sorted(set(item.labels) - declared)
        if unknown:
            raise ConfigError(f"{where_item}: labellers {unknown} are not declared in {manifest_name}", source=source)
        for who, score in item.labels.items():
            if score not in rubric.values:
                raise ConfigError(f"{where_item}: {who}'s score {score} is not one of {rubric.values}", source=source)
        if rubric.needs_context and not item.context:
            raise ConfigError(f"{where_item}: rubric {item.rubric} needs a context", source=source)
        if not item.labelled:
            unlabelled += 1
            continue
        items.append(item)
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise ConfigError("calibration item ids must be unique", source=source)
    if not items:
        raise ConfigError("the calibration set has no labelled item yet", source=source)
    return items, unlabelled


def load_mlflow_calibration_set(name: str, rubrics_dir: str | Path | None = None) -> CalibrationSet:
    """A calibration set kept as an MLflow evaluation dataset (`mlflow.genai.datasets`).

    Each record: `inputs` = {prompt, response, context?}, `expectations` = {rubric, labels:
    {labeller: score}, id?, note?}. The dataset's tags are its manifest: `lockgate.description`,
    `lockgate.labels_from` (`people` or `lockgate_project`), `lockgate.method`, `lockgate.labellers`
    (a JSON list of ids or of {id, description}). `lockgate judge push-set` writes one from a JSONL set.
    """
    from lockgate.registry.genai import read_evaluation_dataset

    source = MLFLOW_PREFIX + name
    if not name.strip():
        raise ConfigError("name the MLflow dataset after `mlflow:`", key="quality.calibration_set")
    try:
        dataset = read_evaluation_dataset(name)
    except ServiceUnavailableError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow says "not found" in several exception types
        raise ConfigError(f"no MLflow evaluation dataset named {name!r}: {exc}", source=source) from None
    tags = dataset.tags
    missing = [key for key in DATASET_TAGS.values() if key not in tags]
    if missing:
        raise ConfigError(
            f"the dataset's tags lack {missing}: a calibration set declares its description, labels_from, "
            "method and labellers (`lockgate judge push-set` writes them)",
            source=source,
        )
    try:
        labellers = json.loads(tags[DATASET_TAGS["labellers"]])
    except ValueError:
        raise ConfigError(f"tag {DATASET_TAGS['labellers']} is not a JSON list", source=source) from None
    try:
        manifest = CalibrationManifest.model_validate(
            {
                "name": name,
                "description": tags[DATASET_TAGS["description"]],
                "labels_from": tags[DATASET_TAGS["labels_from"]],
                "method": tags[DATASET_TAGS["method"]],
                "labellers": [{"id": lab} if isinstance(lab, str) else lab for lab in labellers or []],
            }
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "<root>"
        raise ConfigError(f"dataset tags: {where}: {err['msg']}", key=where, source=source) from None
    entries: list[tuple[str, str | dict[str, Any]]] = []
    for record in dataset.records:
        record_id = str(record["record_id"] or len(entries) + 1)
        inputs = record["inputs"]
        expectations = record["expectations"]
        item = {
            "id": str(expectations.get("id") or record_id),
            "rubric": expectations.get("rubric"),
            "prompt": inputs.get("prompt"),
            "response": inputs.get("response"),
            "context": inputs.get("context"),
            "labels": expectations.get("labels") or {},
            "note": expectations.get("note"),
        }
        entries.append((f"record {record_id}", {k: v for k, v in item.items() if v is not None}))
    # Records come back in no fixed order: sort by item id, so the hash and the judging order are stable.
    entries.sort(key=lambda e: str(e[1]["id"]) if isinstance(e[1], dict) else "")
    items, unlabelled = _validated_items(entries, manifest, rubrics_dir, source, "the dataset's tags")
    canonical = json.dumps(
        {"manifest": manifest.model_dump(mode="json"), "items": [i.model_dump(mode="json") for i in items]},
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return CalibrationSet(
        path=None, manifest=manifest, items=items, unlabelled=unlabelled, hash=digest, location=source
    )


def push_calibration_set(path: str | Path, name: str, experiment: str = "lockgate/calibration") -> str:
    """Write a JSONL set (labelled items only) and its manifest to an MLflow evaluation dataset; returns its id.

    Refuses a name already taken: a calibration set's labels are not silently merged.
    """
    from lockgate.registry.genai import create_evaluation_dataset

    cset = load_calibration_set(path)
    manifest = cset.manifest
    tags = {
        DATASET_TAGS["description"]: manifest.description,
        DATASET_TAGS["labels_from"]: manifest.labels_from,
        DATASET_TAGS["method"]: manifest.method,
        DATASET_TAGS["labellers"]: json.dumps([lab.model_dump() for lab in manifest.labellers]),
        T.DATASET_PUSHED_FROM: cset.location,
    }
    records = []
    for item in cset.items:
        inputs = {"prompt": item.prompt, "response": item.response}
        if item.context is not None:
            inputs["context"] = item.context
        expectations: dict[str, Any] = {"id": item.id, "rubric": item.rubric, "labels": dict(item.labels)}
        if item.note:
            expectations["note"] = item.note
        records.append({"inputs": inputs, "expectations": expectations})
    return create_evaluation_dataset(name, experiment, tags, records)


def labeller_agreement(
    items: Sequence[CalibrationItem],
    labellers: Sequence[str],
    statistics: StatisticsConfig,
    rubrics_dir: str | Path | None = None,
) -> list[LabellerAgreement]:
    """Spearman and kappa between each pair of labellers, on the items both labelled (0-1 scale)."""
    rubrics = {r: load_rubric(r, rubrics_dir=rubrics_dir) for r in {i.rubric for i in items}}
    resamples = min(1000, statistics.bootstrap_resamples)
    out: list[LabellerAgreement] = []
    for a, b in itertools.combinations(sorted(labellers), 2):
        both = [i for i in items if a in i.labels and b in i.labels]
        xa = [rubrics[i.rubric].normalise(i.labels[a]) for i in both]
        xb = [rubrics[i.rubric].normalise(i.labels[b]) for i in both]
        rho, kappa = bootstrap_agreement(xa, xb, KAPPA_LEVELS, statistics.confidence, resamples, statistics.seed)
        out.append(LabellerAgreement(a=a, b=b, n=len(both), spearman=rho, kappa=kappa))
    return out


def calibration_rubrics(rubrics: Sequence[str]) -> list[str]:
    """The rubrics whose items calibrate the requested ones (pairwise leans on relevance)."""
    out: list[str] = [r for r in rubrics if r != "pairwise"]
    if "pairwise" in rubrics and "relevance" not in out:
        out.append("relevance")
    return out


def _judge_value(rubric: Rubric, score: float) -> float:
    """A judge score on the shared 0-1 scale, as a label for kappa: binary rubrics pick a side."""
    norm = rubric.normalise(score)
    return float(round(norm)) if rubric.kind == "binary" else norm


def evaluate_agreement(
    cset: CalibrationSet,
    judgments: Sequence[Judgment],
    *,
    judge: str,
    description: str,
    config: QualityConfig,
    statistics: StatisticsConfig,
    rubrics: Sequence[str] | None = None,
) -> CalibrationResult:
    """Agreement of judgments with the labels (their mean per item); pure (no judge call).

    `rubrics`: the rubrics requested (default: those of the set); items of other rubrics
    are left out, and requested rubrics without items are listed as uncalibrated.
    """
    wanted = calibration_rubrics(rubrics) if rubrics is not None else sorted({i.rubric for i in cset.items})
    items = [i for i in cset.items if i.rubric in wanted]
    by_id = {j.item_id: j for j in judgments}
    loaded = {r: load_rubric(r, rubrics_dir=config.rubrics_dir) for r in {i.rubric for i in items}}
    labels: list[float] = []
    spear_judge: list[float] = []
    kappa_judge: list[float] = []
    results: list[ItemResult] = []
    per: dict[str, tuple[list[float], list[float], list[float], int]] = {}
    for item in items:
        rubric = loaded[item.rubric]
        j = by_id.get(item.id)
        h = rubric.normalise(item.score)
        entry = per.setdefault(rubric.id, ([], [], [], 0))
        per[rubric.id] = (entry[0], entry[1], entry[2], entry[3] + 1)
        if j is None or j.score is None:
            error = j.error if j else "missing"
            results.append(ItemResult(id=item.id, rubric=rubric.id, label=item.score, judge=None, error=error))
            continue
        results.append(ItemResult(id=item.id, rubric=rubric.id, label=item.score, judge=j.score))
        labels.append(h)
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
    rho, kappa = _agreement(spear_judge, kappa_judge, labels, statistics)
    thresholds = {
        "min_spearman": config.min_calibration_spearman,
        "min_kappa": config.min_calibration_kappa,
        "min_scored": config.min_calibration_scored,
    }
    reasons: list[str] = []
    n_items = len(items)
    share = len(labels) / n_items if n_items else 0.0
    if not n_items:
        reasons.append(f"calibration set {cset.manifest.name} has no labelled item for the rubrics {wanted}")
    elif share < config.min_calibration_scored:
        reasons.append(
            f"the judge scored {len(labels)} of {n_items} calibration items ({share:.0%}), "
            f"below {config.min_calibration_scored:.0%}"
        )
    if rho is None or rho.value < config.min_calibration_spearman:
        reasons.append(f"Spearman {_fmt(rho)} with the set's labels is below {config.min_calibration_spearman}")
    if kappa is None or kappa.value < config.min_calibration_kappa:
        reasons.append(f"Cohen's kappa {_fmt(kappa)} is below {config.min_calibration_kappa}")
    manifest = cset.manifest
    return CalibrationResult(
        judge=judge,
        description=description,
        set_path=cset.location or str(cset.path),
        set_hash=cset.hash,
        set_name=manifest.name,
        set_description=manifest.description,
        labels_from=manifest.labels_from,
        method=manifest.method,
        labellers=list(manifest.labellers),
        labeller_agreement=labeller_agreement(
            items, [lab.id for lab in manifest.labellers], statistics, config.rubrics_dir
        ),
        set_size=len(cset.items),
        n_unlabelled=cset.unlabelled,
        rubrics=sorted(r.id for r in loaded.values()),
        uncalibrated_rubrics=sorted(r for r in wanted if r not in loaded),
        n_items=n_items,
        n_scored=len(labels),
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
    spear_judge: list[float], kappa_judge: list[float], labels: list[float], statistics: StatisticsConfig
) -> tuple[Estimate | None, Estimate | None]:
    # Spearman uses the judge's continuous expected scores; kappa its labels (binary rubrics rounded).
    resamples = min(1000, statistics.bootstrap_resamples)
    rho, _ = bootstrap_agreement(spear_judge, labels, KAPPA_LEVELS, statistics.confidence, resamples, statistics.seed)
    _, kappa = bootstrap_agreement(kappa_judge, labels, KAPPA_LEVELS, statistics.confidence, resamples, statistics.seed)
    return rho, kappa


def calibrate(
    backend_judge: Callable[[list[JudgeRequest]], list[Judgment]],
    *,
    judge: str,
    description: str,
    rubrics: Sequence[str],
    config: QualityConfig,
    statistics: StatisticsConfig,
    redact: Callable[[str | None], str | None],
    cache_dir: Path | None = None,
    max_chars: int = 2000,
    set_path: str | Path | None = None,
) -> CalibrationResult:
    """Score the calibration set with the judge and measure agreement.

    The set is `set_path`, else the policy's `quality.calibration_set`, else the packaged
    example set. Results are cached in `cache_dir` for judges whose answers cannot
    change behind the same identity (local weights, fingerprinted); endpoint judges are
    asked every run.
    """
    cset = load_calibration_set(set_path or config.calibration_set, config.rubrics_dir)
    wanted = set(calibration_rubrics(rubrics))
    items = [i for i in cset.items if i.rubric in wanted]
    key_src = json.dumps(
        [CACHE_SCHEMA, judge, cset.hash, sorted(wanted), max_chars, config.model_dump(mode="json")], sort_keys=True
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    cache_file = cache_dir / f"{key}.json" if cache_dir and judge.startswith("local:") else None
    if cache_file and cache_file.exists():
        try:
            cached = CalibrationResult.model_validate_json(cache_file.read_text())
            log.info("judge calibration from cache %s", cache_file)
            return cached.model_copy(update={"cached": True})
        except ValidationError:
            log.warning("ignoring unreadable calibration cache %s", cache_file)
    rubric_objs = {r: load_rubric(r, rubrics_dir=config.rubrics_dir) for r in {i.rubric for i in items}}
    requests = [
        JudgeRequest(
            item_id=i.id,
            rubric=rubric_objs[i.rubric],
            prompt=redact(i.prompt) or "",
            response=redact(i.response) or "",
            context=redact(i.context),
        )
        for i in items
    ]
    log.info(
        "calibrating the judge on %d labelled items of set %s (%s)",
        len(requests),
        cset.manifest.name,
        ", ".join(sorted(wanted)),
    )
    judgments = backend_judge(requests)
    result = evaluate_agreement(
        cset,
        judgments,
        judge=judge,
        description=description,
        config=config,
        statistics=statistics,
        rubrics=list(rubrics),
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
