"""The policy's schema: what lockgate decides with, validated where it is declared.

`Policy` (watched models, gates, approvers, windows, statistics, redaction, per-job options)
is read from a YAML file (`include/lockgate.yaml` by default, `LOCKGATE_CONFIG` to override)
by `load_policy`; an invalid file raises `ConfigError` naming the bad key. Unknown keys are
errors. The decision code beside it (`gates.py`, `engine.py`) reads these models; where the
file is comes from `lockgate.settings`, the environment.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lockgate import metrics as metric_catalogue
from lockgate.errors import ConfigError
from lockgate.evidence import EvidenceKind
from lockgate.metrics import DRIFT_COLUMNS
from lockgate.settings import format_validation_error, get_settings, read_yaml_file


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a policy must not silently disable a gate.

    NaN and infinities are refused in every float: a NaN threshold compares false both
    ways, so it would pass or fail a gate whatever the evidence.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- gates


GateAction = Literal["block_promotion", "rollback", "warn"]
GateComparison = Literal["absolute", "ratio", "difference"]
GateSubject = Literal["challenger", "champion", "model"]
Direction = Literal["higher_is_better", "lower_is_better"]

_METRIC_RE = re.compile(r"^(benchmark|drift|quality|live)\.[A-Za-z0-9_.:-]+$")


class Gate(_Strict):
    """One gate: a metric, how it is compared, and what a failure does.

    * `absolute`: the subject's value (its unfavourable confidence bound when the
      metric is estimated) must be within `threshold`: at most `threshold` when
      lower is better, at least when higher is better.
    * `ratio`: challenger / champion. Passes when the unfavourable bound of the
      ratio's interval is within `1 + threshold` (lower is better) or
      `1 - threshold` (higher is better): `threshold` is the tolerated relative change.
    * `difference`: challenger - champion, tolerated degradation `threshold`.
    * `ratio` / `difference` with `subject: champion` (production evidence, `live.*` metrics):
      the champion now against its own baseline window, the same way.

    A `rollback` gate fails only when even the favourable end of the interval breaches the
    bound: rolling a serving champion back needs evidence of harm, not a lack of evidence of health.
    """

    name: str = Field(min_length=1, description="Unique name shown in reports and tags.")
    metric: str = Field(description="`<kind>.<metric>`, e.g. `benchmark.ttft_ms_p50`.")
    comparison: GateComparison = "absolute"
    subject: GateSubject = Field(
        "challenger",
        description="Whose value an `absolute` gate checks; `model` is model-wide (drift).",
    )
    direction: Direction = "lower_is_better"
    threshold: float
    action: GateAction = "block_promotion"
    confidence: float | None = Field(
        None,
        gt=0.5,
        lt=1.0,
        description="For estimated metrics: the interval level the evidence must carry.",
    )

    @field_validator("metric")
    @classmethod
    def _metric_has_kind(cls, v: str) -> str:
        if not _METRIC_RE.match(v):
            raise ValueError("must look like '<benchmark|drift|quality|live>.<metric name>'")
        return v

    @field_validator("metric")
    @classmethod
    def _metric_is_published(cls, v: str) -> str:
        kind, name = v.split(".", 1)
        if metric_catalogue.lookup(kind, name) is None:
            raise ValueError(
                f"no {kind} job publishes a metric {name!r}, so the gate would never fire; "
                f"known: {metric_catalogue.known_names(kind)} (see lockgate.metrics)"
            )
        return v

    @field_validator("threshold")
    @classmethod
    def _threshold_fits_metric(cls, v: float, info: ValidationInfo) -> float:
        metric, comparison = info.data.get("metric"), info.data.get("comparison")
        if metric is None or comparison is None:  # reported under their own keys
            return v
        entry = metric_catalogue.lookup(*metric.split(".", 1))
        unit = entry.unit if entry else ""
        problem = metric_catalogue.threshold_problem(unit, comparison, v, info.data.get("direction"))
        if problem:
            raise ValueError(f"{problem} (metric {metric}, comparison {comparison})")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> Gate:
        if self.comparison in ("ratio", "difference") and self.threshold < 0:
            raise ValueError("threshold of a ratio/difference gate is a tolerated change and must be >= 0")
        if self.comparison in ("ratio", "difference") and self.subject == "model":
            raise ValueError("ratio/difference gates compare two versions; subject must be 'challenger' or 'champion'")
        if self.comparison in ("ratio", "difference") and self.subject == "champion" and self.kind != "live":
            raise ValueError(
                "only production evidence (live.*) compares the champion with its own baseline; "
                "use subject 'challenger' to compare challenger with champion"
            )
        if self.action == "rollback" and self.subject == "challenger":
            raise ValueError("a rollback gate must check the champion (subject: champion or model)")
        return self

    @property
    def kind(self) -> EvidenceKind:
        return self.metric.split(".", 1)[0]  # type: ignore[return-value]

    @property
    def metric_name(self) -> str:
        return self.metric.split(".", 1)[1]


# --------------------------------------------------------------------------- windows


class FixedWindow(_Strict):
    """Fixed dates; a time without a zone is read as UTC (the log table's `ts` is timestamptz)."""

    mode: Literal["fixed"] = "fixed"
    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    @model_validator(mode="after")
    def _ordered(self) -> FixedWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class AfterPromotionWindow(_Strict):
    """The N days after the current champion was promoted (its own early traffic)."""

    mode: Literal["after_promotion"] = "after_promotion"
    days: float = Field(7, gt=0)


class ChampionBaselineWindow(_Strict):
    """The `days` before the current champion was promoted (`lockgate.promoted_at`): the traffic it
    was judged on. A shift that began after the promotion, even days before the current window,
    is compared against traffic from before it. Without a promotion time: the trailing `days`.
    The window never reaches into the current one."""

    mode: Literal["champion_baseline"] = "champion_baseline"
    days: float = Field(7, gt=0)


class TrailingWindow(_Strict):
    """The `days` before the current window, a common fallback for the reference."""

    mode: Literal["trailing"] = "trailing"
    days: float = Field(7, gt=0)
    gap_days: float = Field(0, ge=0)


class DataIntervalWindow(_Strict):
    """The DAG run's data interval (Airflow's partition of time for that run)."""

    mode: Literal["data_interval"] = "data_interval"
    min_hours: float = Field(
        24, gt=0, description="Widen a shorter data interval (manual runs) to this many hours back."
    )


ReferenceWindow = Annotated[
    FixedWindow | ChampionBaselineWindow | AfterPromotionWindow | TrailingWindow, Field(discriminator="mode")
]
CurrentWindow = Annotated[FixedWindow | DataIntervalWindow, Field(discriminator="mode")]


class Windows(_Strict):
    reference: ReferenceWindow = Field(default_factory=lambda: ChampionBaselineWindow())
    current: CurrentWindow = Field(default_factory=lambda: DataIntervalWindow())


# --------------------------------------------------------------------------- models


def _approver_name(name: str) -> str:
    if not name.strip():
        raise ValueError("an approver name must not be empty or only whitespace")
    if name != name.strip():
        raise ValueError(f"approver name {name!r} has leading or trailing whitespace")
    return name


class WatchedModel(_Strict):
    name: str = Field(min_length=1)
    approvers: list[Annotated[str, AfterValidator(_approver_name)]] = Field(
        default_factory=list, description="Names whose approval counts."
    )
    approval_expiry_hours: float = Field(72, gt=0)
    require_approval: bool = True
    windows: Windows = Field(default_factory=Windows)
    gates: list[Gate] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_gates(self) -> WatchedModel:
        names = [g.name for g in self.gates]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"gate names must be unique, repeated: {sorted(dup)}")
        if self.require_approval and not self.approvers:
            raise ValueError("require_approval is true but approvers is empty")
        return self


# --------------------------------------------------------------------------- sections


class StatisticsConfig(_Strict):
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    bootstrap_resamples: int = Field(2000, ge=100, le=100_000)
    seed: int = 0


class EvidenceConfig(_Strict):
    max_age_hours: float = Field(48, gt=0, description="Older summaries count as stale (missing).")


class RedactionConfig(_Strict):
    """What `lockgate.logs.redaction.Redactor` replaces before text leaves the log store."""

    secrets: bool = Field(
        True, description="API keys (OpenAI, Anthropic, Google, Slack), AWS access key ids, GitHub tokens, JWTs."
    )
    emails: bool = True
    phone_numbers: bool = Field(True, description="International, bracketed, North American and national numbers.")
    card_numbers: bool = Field(True, description="13-19 digits in any issuer grouping that pass the Luhn check.")
    ibans: bool = Field(True, description="IBANs, grouped or not, that pass the mod-97 check.")
    ip_addresses: bool = Field(True, description="IPv4 and IPv6 (full, compressed, v4-mapped).")
    patterns: dict[str, str] = Field(
        default_factory=dict, description="Extra named regular expressions, replaced by [NAME]."
    )

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {name!r} is not a valid regular expression: {exc}") from exc
        return v


class LogColumns(_Strict):
    """Map the contract's column names onto a user's existing table or view."""

    request_id: str = "request_id"
    ts: str = "ts"
    model_name: str = "model_name"
    model_version: str = "model_version"
    prompt: str = "prompt"
    response: str = "response"
    context: str = "context"
    latency_ms: str = "latency_ms"
    ttft_ms: str = "ttft_ms"
    prompt_tokens: str = "prompt_tokens"
    completion_tokens: str = "completion_tokens"
    status: str = "status"
    feedback: str = "feedback"
    metadata: str = "metadata"
    cached_tokens: str = Field(
        "cached_tokens",
        description="Optional column: prompt tokens served from the KV/prefix cache. A table without it "
        "falls back to `logs.cached_tokens_metadata_key`.",
    )


class LogsConfig(_Strict):
    table: str = Field("inference_logs", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    columns: LogColumns = Field(default_factory=LogColumns)
    max_text_chars: int = Field(32_000, gt=0, description="Longer prompt/response/context is quarantined.")
    max_latency_ms: float = Field(3_600_000, gt=0)
    statuses: list[str] = Field(default_factory=lambda: ["ok", "error", "timeout", "cancelled", "filtered"])
    cached_tokens_metadata_key: str | None = Field(
        "usage.prompt_tokens_details.cached_tokens",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="Dotted path in `metadata` to the cached prompt tokens, used when the table has no "
        "`cached_tokens` column (vLLM and OpenAI-compatible servers report "
        "usage.prompt_tokens_details.cached_tokens). null: no KV-cache hit rate.",
    )


ServingConfig = Literal["eager", "static_compile", "int8_dynamic"]
# A rubric is a file `<name>.jinja` (see lockgate.judge.rubrics); its name becomes the metric
# `quality.judge_<name>`, hence the restricted spelling.
RubricName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
RUBRIC_NAMES: tuple[str, ...] = ("relevance", "faithfulness", "safety", "refusal", "pairwise")
"""The rubrics packaged with lockgate (a policy's `quality.rubrics_dir` can add more)."""
RUBRIC_SUFFIX = ".jinja"
PACKAGED_RUBRICS_DIR = Path(__file__).resolve().parents[1] / "judge" / "rubrics"


def rubric_files(rubrics_dir: str | Path | None = None) -> dict[str, Path]:
    """Rubric name -> file: the packaged rubrics plus those in `rubrics_dir` (a name in both is an error)."""
    found = {p.name.removesuffix(RUBRIC_SUFFIX): p for p in sorted(PACKAGED_RUBRICS_DIR.glob(f"*{RUBRIC_SUFFIX}"))}
    if rubrics_dir is None:
        return found
    folder = Path(rubrics_dir).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"rubrics folder {str(folder)!r} does not exist", key="quality.rubrics_dir")
    for p in sorted(folder.glob(f"*{RUBRIC_SUFFIX}")):
        name = p.name.removesuffix(RUBRIC_SUFFIX)
        if name in found:
            raise ConfigError(
                f"{p} would replace the packaged rubric {name!r}: give it another name "
                "(scores under different wordings must not share a metric)",
                key="quality.rubrics_dir",
            )
        found[name] = p
    return found


class BenchmarkConfig(_Strict):
    """The benchmark job: what it measures and when a run is too noisy to use (see lockgate.benchmark)."""

    batch_sizes: list[Annotated[int, Field(gt=0)]] = Field(
        default_factory=lambda: [1, 4],
        min_length=1,
        description="Batch sizes measured; the smallest (normally 1) gives the headline metric names.",
    )
    max_new_tokens: int = Field(32, ge=2, description="Tokens generated per request (end-of-sequence ignored).")
    repetitions: int = Field(5, ge=2, description="Replays of the whole workload per version, interleaved.")
    warmups: int = Field(2, ge=0, description="Unmeasured requests per version, configuration and batch size.")
    max_cv: float = Field(
        0.25,
        gt=0,
        description="A run whose challenger/champion comparison varies more across repetitions "
        "(coefficient of variation of the per-repetition median ratio) is invalid.",
    )
    gpu_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    require_gpu: bool = Field(False, description="Without a GPU the run ends in an error instead of using the CPU.")
    serving_configs: list[ServingConfig] = Field(
        default_factory=lambda: list[ServingConfig](["eager"]),
        min_length=1,
        description="eager; static_compile (static KV cache + torch.compile); int8_dynamic (CPU only).",
    )
    prompt_samples: int = Field(32, gt=0, description="Prompt lengths sampled from the logs: the workload's size.")
    cpu_threads: int | None = Field(
        None, ge=1, description="torch threads on CPU (None: torch's default); 1 is steadiest on a shared machine."
    )
    cpu_clock: Literal["wall", "thread_cpu"] = Field(
        "wall",
        description="CPU timer: wall (perf_counter) or thread_cpu (thread_time: excludes time the OS gave to "
        "other processes; needs cpu_threads: 1).",
    )

    @field_validator("batch_sizes", "serving_configs")
    @classmethod
    def _no_repeats(cls, v: list[Any]) -> list[Any]:
        if len(set(v)) != len(v):
            raise ValueError(f"values must not repeat: {v}")
        return v

    @model_validator(mode="after")
    def _clock_needs_one_thread(self) -> BenchmarkConfig:
        if self.cpu_clock == "thread_cpu" and self.cpu_threads != 1:
            raise ValueError("cpu_clock thread_cpu counts one thread's time: set cpu_threads: 1")
        return self


DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = (
    "i'm sorry",
    "i am sorry",
    "i cannot",
    "i can't",
    "i can not",
    "i am unable",
    "i'm unable",
    "as an ai",
)


class DriftConfig(_Strict):
    """How the drift job samples, tests and decides.

    A column drifts only when its test is significant after Benjamini-Hochberg
    correction across all tested columns (`fdr_alpha`) AND its effect size reaches
    the column's minimum (`min_effect_sizes[column]`, else `min_effect_size`), so a
    huge sample does not flag a trivial shift. The method of each column is fixed by
    its kind, whatever the sample size: numeric: Kolmogorov-Smirnov p-value, effect
    = Wasserstein distance / reference std; categorical: chi-square (Fisher's exact
    test when sparse), effect = Jensen-Shannon distance (natural log); embeddings:
    held-out AUC of a classifier telling the windows apart, Mann-Whitney p-value,
    effect = 2*AUC-1. The effect measures are Evidently's own (`wasserstein`,
    `jensenshannon`, embeddings `model`), so its report shows the same numbers.
    """

    sample_size: int = Field(5000, gt=0, description="Rows sampled per window (deterministic).")
    min_rows: int = Field(50, gt=0, description="Fewer usable rows in a window: insufficient data.")
    fdr_alpha: float = Field(0.05, gt=0, lt=1, description="Benjamini-Hochberg false discovery rate.")
    min_effect_size: float = Field(0.1, ge=0, description="Minimum effect size for a column to drift.")
    min_effect_sizes: dict[str, Annotated[float, Field(ge=0)]] = Field(
        # Jensen-Shannon compresses shifts of rare categories: 1% -> 5% errors is a distance of 0.087.
        default_factory=lambda: {"status": 0.05},
        description="Per-column minimum effect sizes, overriding `min_effect_size`.",
    )
    columns: list[str] | None = Field(
        None, description="Columns to test (default: all of DRIFT_COLUMNS that the data allows)."
    )
    embeddings: bool = True
    embedding_sample_size: int = Field(
        # 300 per window: a held-out AUC of 0.6 is already significant, and MiniLM stays a few seconds.
        300,
        gt=0,
        description="Rows per window whose prompt and response are embedded (MiniLM, CPU).",
    )
    embedding_power: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Instead of `embedding_sample_size`: embed as many rows per window as give the embedding "
        "test this power at its minimum effect (e.g. 0.8; at most the rows sampled). Unset: the fixed size.",
    )
    refusal_phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSAL_PHRASES),
        description="Lower-case phrases that mark a response as a refusal.",
    )
    evidently_report: bool = Field(True, description="Also write Evidently's HTML report.")
    evidently_embeddings: bool = Field(
        True,
        description="Evidently's report also gets a section per embedding set (its EmbeddingsDrift, whose "
        "t-SNE picture is most of the job's time on a CPU: 2-5 s per set on two cores). false: Evidently's "
        "report covers the operational metrics and text descriptors; the embedding drift, verdict and "
        "charts, is on lockgate's page, as always.",
    )

    @field_validator("min_effect_sizes")
    @classmethod
    def _known_effect_columns(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(DRIFT_COLUMNS))
        if unknown:
            raise ValueError(f"unknown drift columns {unknown}; known: {list(DRIFT_COLUMNS)}")
        return v

    @model_validator(mode="after")
    def _power_needs_an_effect(self) -> DriftConfig:
        if self.embedding_power is not None:
            zero = [c for c in DRIFT_COLUMNS if c.endswith("_embedding") and self.min_effect(c) <= 0]
            if zero:
                raise ValueError(
                    f"embedding_power sizes the sample to detect the minimum effect, and {zero} have a minimum "
                    "effect of 0, which no sample size detects: give them one above 0 or unset embedding_power"
                )
        return self

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        unknown = sorted(set(v) - set(DRIFT_COLUMNS))
        if unknown:
            raise ValueError(f"unknown drift columns {unknown}; known: {list(DRIFT_COLUMNS)}")
        if not v:
            raise ValueError("must name at least one column (or be left out for all)")
        return v

    def min_effect(self, column: str) -> float:
        """The minimum effect size for `column`."""
        return self.min_effect_sizes.get(column, self.min_effect_size)


class JudgeConfig(_Strict):
    """The LLM judge: a local causal LM directory, an OpenAI-compatible endpoint, or an MLflow GenAI judge.

    `backend: local` needs `model_path` (checked when the judge is first used, so a policy
    without quality evidence need not name one). `backend: placeholder` is the demo's
    seeded random-weight tiny model (`lockgate.devtools.placeholder_judge`): it carries
    no signal, and its calibration says so.
    """

    backend: Literal["local", "openai", "mlflow", "placeholder"] = "local"
    model_path: str | None = Field(
        None, description="Local HF directory of the judge (backend: local; required there)."
    )
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint incl. /v1 (backend: openai).")
    model: str | None = Field(
        None, description="Model name sent to the endpoint; backend mlflow: an MLflow model URI (openai:/gpt-4o-mini)."
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    batch_size: int = Field(
        32, gt=0, description="Prompts per forward pass (backend: local); on a CPU 32 ran faster than 8 or 16."
    )
    concurrency: int = Field(4, gt=0, description="Requests in flight at once (backend: openai).")
    timeout_s: float = Field(60, gt=0, description="Per-request timeout (backend: openai).")
    max_retries: int = Field(3, ge=0, description="Retries of a request on 429, 5xx, timeouts, connection errors.")
    retry_backoff_s: float = Field(1.0, ge=0, description="First back-off; doubles per retry, with jitter.")
    max_requests: int = Field(2000, gt=0, description="Per-run budget of requests to the endpoint (retries count).")
    logprobs: bool = Field(
        True, description="Ask the endpoint for top logprobs to score from the distribution (falls back to text)."
    )
    rationale: bool = Field(False, description="Also generate a one-sentence rationale per judgment.")
    rationale_max_new_tokens: int = Field(48, gt=0)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present (backend: local).")
    threads: int | None = Field(
        None,
        ge=1,
        description="Torch threads while a local judge scores on a CPU; None: the cores other processes "
        "leave free at the time (backend: local).",
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="auto: bfloat16 where it is native (CUDA, CPUs with AVX512-BF16/AMX), else float32 "
        "(backend: local).",
    )
    max_input_chars: int = Field(2000, gt=0, description="Each text is cut to this many characters for the judge.")
    min_score_mass: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Local judge: probability the model puts on the score tokens below which "
        "the judgment is unscored (it wanted to say something else).",
    )

    @model_validator(mode="after")
    def _backend_has_target(self) -> JudgeConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url")
        if self.backend == "mlflow" and not (self.model and ":/" in self.model):
            raise ValueError("backend 'mlflow' needs model, an MLflow model URI such as openai:/gpt-4o-mini")
        if self.backend == "placeholder" and self.model_path:
            raise ValueError("backend 'placeholder' builds its own random-weight model: drop model_path")
        return self


class QualityConfig(_Strict):
    sample_size: int = Field(200, gt=0, description="Sampled log rows per version.")
    min_samples: int = Field(20, gt=0, description="Fewer judged rows for a version: its estimates are omitted.")
    rubrics_dir: str | None = Field(
        None,
        description="Folder of your own rubric files (`<name>.jinja`: YAML front matter and a Jinja2 "
        "template), added to the packaged ones; each yields `quality.judge_<name>`.",
    )
    rubrics: list[RubricName] = Field(
        default_factory=lambda: list(RUBRIC_NAMES),
        min_length=1,
        description="Rubrics the judge scores; each must be a rubric file present (packaged or rubrics_dir).",
    )
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    min_calibration_spearman: float = Field(0.5, ge=-1, le=1)
    min_calibration_kappa: float = Field(0.4, ge=-1, le=1)
    min_calibration_scored: float = Field(
        0.8, gt=0, le=1, description="Share of calibration items the judge must score for calibration to count."
    )
    calibration_set: str | None = Field(
        None,
        description="Labelled JSONL the judge is calibrated on, with its `<name>.meta.yaml` manifest "
        "(labellers, method); a bare name picks a packaged set; `mlflow:<name>` an MLflow evaluation dataset "
        "(lockgate.judge.calibration.load_mlflow_calibration_set). Default: the packaged example set "
        "`example_v1` (written and labelled by one lockgate engineer).",
    )
    replay_when_no_traffic: bool = True
    replay_max_new_tokens: int = Field(48, gt=0)
    replay_batch_size: int = Field(16, gt=0)
    worst_examples: int = Field(8, ge=0, description="Lowest-scored samples shown (redacted) in the report.")
    evidently_report: bool = Field(True, description="Also write an Evidently descriptor report beside ours.")
    mlflow_assessments: int = Field(
        0,
        ge=0,
        description="Answered samples per version logged to the quality run in MLflow as a trace (redacted) "
        "with the judge's assessments, for MLflow's GenAI views; 0: none.",
    )

    @field_validator("rubrics_dir")
    @classmethod
    def _rubrics_dir_exists(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                rubric_files(v)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("rubrics")
    @classmethod
    def _rubrics_present(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if "rubrics_dir" not in info.data:
            return v  # the folder itself is invalid: that error is reported on its own key
        present = rubric_files(info.data["rubrics_dir"])
        unknown = [r for r in v if r not in present]
        if unknown:
            raise ValueError(f"no rubric file for {unknown}; rubric files present: {sorted(present)}")
        if len(set(v)) != len(v):
            raise ValueError("rubric names must not repeat")
        return v


class LiveConfig(_Strict):
    """Production evidence: each version's own traffic in the current window (see lockgate.live)."""

    min_requests: int = Field(
        200, ge=10, description="Fewer requests for a version in the window: its live evidence is missing."
    )
    sample_size: int = Field(
        2000, ge=100, description="Requests per version sampled (deterministically) for the intervals."
    )
    relevance_sample_size: int = Field(
        300, ge=0, description="Answered requests per version whose prompt and answer MiniLM embeds (0: off)."
    )
    strata: int = Field(8, ge=1, le=20, description="Prompt-length strata (quantiles of prompt_tokens, pooled).")
    bootstrap_resamples: int = Field(1000, ge=200, le=100_000)
    baseline_days: float = Field(
        7, gt=0, description="The champion's baseline: this many days before its promotion (trailing without one)."
    )
    rollups: bool = Field(
        True,
        description="Keep per-hour aggregates of the log table (PostgreSQL) so a run reads only the hours it has "
        "not seen (see lockgate.live.rollups).",
    )
    rollup_settle_hours: float = Field(
        6,
        ge=0,
        le=24 * 30,
        description="Hours newer than this are aggregated on every run and never stored: rows updated in place "
        "(a late feedback) later than this after their hour are not seen by the rollups.",
    )


class RegistrationConfig(_Strict):
    """Evaluation on registration: the triggerer watches each model's `challenger` alias (see
    lockgate.registry.alias_watch) and a new challenger starts the `lockgate_challenger_alias` Asset's
    consumers (benchmark and quality, then promotion on their evidence) within one poll."""

    watch: bool = Field(True, description="Watch the `challenger` alias of every watched model.")
    poll_seconds: float = Field(
        30, ge=1, le=3600, description="Seconds between two reads of the registry's aliases by the triggerer."
    )


class ApprovalsConfig(_Strict):
    """How far an approval set in the registry's tags is trusted (README, "How to approve a promotion")."""

    mlflow_auth: bool = Field(
        False,
        description="The MLflow server runs lockgate's app (`mlflow server --app-name lockgate-auth`: MLflow "
        "authentication plus a server-written record of who wrote the approval tags). True: an approval in "
        "tags counts only when that record names the approver, with EDIT or MANAGE permission on the model "
        "(or an admin), and `lockgate approve` approves with the caller's own MLflow credentials. False: a "
        "tag's name is asserted and the approval is marked unauthenticated.",
    )


# --------------------------------------------------------------------------- policy


class Policy(_Strict):
    version: int = Field(1, ge=1)
    models: list[WatchedModel] = Field(min_length=1)
    statistics: StatisticsConfig = Field(default_factory=StatisticsConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    redaction: RedactionConfig = Field(default_factory=RedactionConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    registration: RegistrationConfig = Field(default_factory=RegistrationConfig)
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)

    @model_validator(mode="after")
    def _unique_models(self) -> Policy:
        names = [m.name for m in self.models]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"model names must be unique, repeated: {sorted(dup)}")
        return self

    def model(self, name: str) -> WatchedModel:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(f"model {name!r} is not watched; known: {[m.name for m in self.models]}", key="models")

    @property
    def policy_hash(self) -> str:
        """Hash of the validated content, stable across key order and comments."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    if not isinstance(data, dict):
        raise ConfigError("the policy must be a mapping at the top level", key="<root>", source=source)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        key, msg = format_validation_error(exc)
        raise ConfigError(f"invalid policy ({msg})", key=key, source=source) from None


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate the policy file (`LOCKGATE_CONFIG` or the default)."""
    p = Path(path) if path else get_settings().config_path
    return parse_policy(read_yaml_file(p, "policy file"), source=str(p))
