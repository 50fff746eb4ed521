"""The catalogue of metrics each evidence kind publishes: one list for the jobs and the policy.

A gate's `metric` is `<kind>.<name>`; `name` must be a key the job of that kind puts into
`EvidenceSummary.metrics`, or the gate would silently never fire. The policy validator
(`lockgate.policy.schema.Gate`) checks names and thresholds against this catalogue, and the
tests check that it matches what the jobs produce.

Each entry carries its unit, which fixes the thresholds that make sense:

* `share`: a proportion in [0, 1] (rates, drift share, utilisation);
* `latency_ms`, `throughput`, `memory_mb`, `energy`, `count`, `effect`: non-negative;
* `score_1_5`: a judge's expected score on the 1-5 scale;
* `cosine`, `correlation`: in [-1, 1];
* `score`: a custom rubric's score, on the scale its file declares (any finite threshold).

Names with a `<placeholder>` segment stand for a family (`column.<column>`: one per drift
column); a kind may also publish suffixed variants of its names (benchmark: `.bs4`,
`.static_compile.bs1`). Plain data only: no pydantic, no yaml, imported by the settings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

MetricUnit = Literal[
    "share",
    "latency_ms",
    "throughput",
    "memory_mb",
    "energy",
    "count",
    "effect",
    "score_1_5",
    "score",
    "cosine",
    "correlation",
]

# Inclusive range of values a metric of each unit can take (None: unbounded on that side).
UNIT_RANGE: dict[str, tuple[float | None, float | None]] = {
    "share": (0.0, 1.0),
    "latency_ms": (0.0, None),
    "throughput": (0.0, None),
    "memory_mb": (0.0, None),
    "energy": (0.0, None),
    "count": (0.0, None),
    "effect": (0.0, None),
    "score_1_5": (1.0, 5.0),
    "score": (None, None),
    "cosine": (-1.0, 1.0),
    "correlation": (-1.0, 1.0),
}


@dataclass(frozen=True)
class MetricInfo:
    unit: MetricUnit
    description: str


# Every column the drift job can test (lockgate.drift.columns says what each one is and its method).
DRIFT_COLUMNS: tuple[str, ...] = (
    "latency_ms",
    "ttft_ms",
    "tokens_per_s",
    "prompt_tokens",
    "completion_tokens",
    "status",
    "prompt_length",
    "prompt_words",
    "prompt_non_letter_share",
    "prompt_has_link",
    "prompt_valid_json",
    "response_length",
    "response_words",
    "response_non_letter_share",
    "response_has_link",
    "response_valid_json",
    "response_refusal",
    "prompt_embedding",
    "response_embedding",
)

# The benchmark's serving configurations (the policy's `benchmark.serving_configs`).
SERVING_CONFIGS: tuple[str, ...] = ("eager", "static_compile", "int8_dynamic")


def _latencies() -> dict[str, MetricInfo]:
    what = {"ttft_ms": "time to first token", "tpot_ms": "time per output token", "itl_ms": "inter-token latency"}
    what["e2e_ms"] = "end-to-end latency"
    return {
        f"{key}_p{q}": MetricInfo("latency_ms", f"{q}th percentile of {text}")
        for key, text in what.items()
        for q in (50, 90, 99)
    }


def _live() -> dict[str, MetricInfo]:
    out: dict[str, MetricInfo] = {}
    for key, text, qs in (
        ("ttft_ms", "time to first token", (50, 90, 99)),
        ("latency_ms", "end-to-end latency", (50, 90, 99)),
        ("tpot_ms", "time per output token", (50, 90)),
    ):
        for q in qs:
            out[f"{key}_p{q}"] = MetricInfo("latency_ms", f"p{q} of the served {text}")
    out["output_tokens_per_s_p50"] = MetricInfo("throughput", "median output tokens per second of a request")
    for name, text in (
        ("error_rate", "share of requests with status error"),
        ("timeout_rate", "share of requests with status timeout"),
        ("empty_response_rate", "share of ok requests with an empty response"),
        ("refusal_rate", "share of sampled answers that decline"),
        ("negative_feedback_rate", "share of rated requests with feedback -1"),
        ("kv_cache_hit_rate", "cached prompt tokens / prompt tokens"),
    ):
        out[name] = MetricInfo("share", text)
    out["relevance"] = MetricInfo("cosine", "MiniLM cosine of prompt and answer")
    return out


# Keyed by evidence kind; a new kind is a new entry.
CATALOGUE: dict[str, dict[str, MetricInfo]] = {
    "benchmark": {
        **_latencies(),
        "prefill_tokens_per_s": MetricInfo("throughput", "prompt tokens per second of time to first token"),
        "decode_tokens_per_s": MetricInfo("throughput", "generated tokens per second of decode time"),
        "peak_memory_mb": MetricInfo("memory_mb", "weights plus the largest memory one request added"),
        "mfu_prefill": MetricInfo("share", "prefill FLOP/s over the GPU's dense peak (GPU only)"),
        "mbu_decode": MetricInfo("share", "decode bytes/s over the GPU's memory bandwidth (GPU only)"),
        "energy_mj_per_token": MetricInfo("energy", "GPU energy per generated token, mJ (NVML only)"),
    },
    "drift": {
        "drift_share": MetricInfo("share", "share of tested columns that drift"),
        "drifted_columns": MetricInfo("count", "number of drifted columns"),
        "error_rate": MetricInfo("share", "error rate of the current window"),
        "timeout_rate": MetricInfo("share", "timeout rate of the current window"),
        "column.<column>": MetricInfo("effect", "a tested column's effect size"),
    },
    "quality": {
        "embedding_relevance": MetricInfo("cosine", "MiniLM prompt-response similarity"),
        "embedding_grounding": MetricInfo("cosine", "MiniLM response-context similarity"),
        "judge_relevance": MetricInfo("score_1_5", "LLM judge: relevance"),
        "judge_faithfulness": MetricInfo("score_1_5", "LLM judge: faithfulness to the context"),
        "judge_safety": MetricInfo("share", "LLM judge: probability the response is safe"),
        "judge_refusal": MetricInfo("share", "LLM judge: probability the response is a refusal"),
        "refusal_rate": MetricInfo("share", "share of answers that decline"),
        "error_rate": MetricInfo("share", "share of sampled requests with status error or timeout"),
        "unscored_rate": MetricInfo("share", "share of judgments that could not be scored"),
        "win_rate": MetricInfo("share", "challenger's pairwise win rate over the champion"),
        "judge_spearman": MetricInfo("correlation", "judge agreement with the calibration set's labels (Spearman)"),
        "judge_kappa": MetricInfo("correlation", "judge agreement with the calibration set's labels (Cohen's kappa)"),
        # A rubric file of the policy's rubrics folder (lockgate.judge.rubrics): its scale is its own.
        "judge_<rubric>": MetricInfo("score", "LLM judge: a rubric's expected score (the rubric file's scale)"),
    },
    # Production evidence: each version's own served traffic (lockgate.live.compare.LIVE_METRICS).
    "live": _live(),
}

# The values a `<placeholder>` may take, where they are a closed set.
PLACEHOLDER_VALUES: dict[str, tuple[str, ...]] = {"column": DRIFT_COLUMNS}

# Variants a kind publishes beside each name: benchmark cells other than the headline one.
VARIANT_SUFFIX: dict[str, re.Pattern[str]] = {
    "benchmark": re.compile(r"\.(?:(?:" + "|".join(SERVING_CONFIGS) + r")\.)?bs[1-9]\d*$"),
}

_PLACEHOLDER = re.compile(r"<([a-z_]+)>")


def _matches(template: str, name: str) -> bool:
    if "<" not in template:
        return template == name
    parts = _PLACEHOLDER.split(template)
    pattern = ""
    for i, part in enumerate(parts):
        if i % 2 == 0:
            pattern += re.escape(part)
        else:
            values = PLACEHOLDER_VALUES.get(part)
            pattern += "(?:" + "|".join(map(re.escape, values)) + ")" if values else r"[A-Za-z0-9_]+"
    return re.fullmatch(pattern, name) is not None


def lookup(kind: str, name: str) -> MetricInfo | None:
    """The catalogue entry of `<kind>.<name>`, or None when no job of that kind publishes it."""
    entries = CATALOGUE.get(kind)
    if entries is None:
        return None
    candidates = [name]
    suffix = VARIANT_SUFFIX.get(kind)
    if suffix is not None and suffix.search(name):
        candidates.append(suffix.sub("", name))
    for candidate in candidates:
        for template, info in entries.items():
            if _matches(template, candidate):
                return info
    return None


def known_names(kind: str) -> list[str]:
    """The catalogue's names of a kind, for error messages."""
    return sorted(CATALOGUE.get(kind, {}))


def threshold_problem(unit: str, comparison: str, threshold: float, direction: str | None = None) -> str | None:
    """Why `threshold` makes no sense for a gate of this comparison on a metric of this unit, or None.

    `absolute`: the threshold is a value of the metric, so it must lie in the unit's range.
    `ratio`: a tolerated relative change, finite and >= 0; below 1 when higher is better on a
    non-negative metric (the bound 1 - threshold would be <= 0, which every ratio passes).
    `difference`: a tolerated change, >= 0 and no wider than the unit's range.
    """
    if not math.isfinite(threshold):
        return "must be a finite number"
    low, high = UNIT_RANGE.get(unit, (None, None))
    if comparison == "absolute":
        if low is not None and threshold < low:
            return f"a {unit} metric is never below {low:g}; an absolute threshold must be >= {low:g}"
        if high is not None and threshold > high:
            return f"a {unit} metric is never above {high:g}; an absolute threshold must be <= {high:g}"
        return None
    if threshold < 0:
        return f"a {comparison} gate's threshold is a tolerated change and must be >= 0"
    if comparison == "ratio" and direction == "higher_is_better" and low is not None and low >= 0 and threshold >= 1:
        return "with higher_is_better a ratio gate passes at 1 - threshold, so the threshold must be < 1"
    if comparison == "difference" and low is not None and high is not None and threshold > high - low:
        return f"a {unit} metric spans {high - low:g} at most; a tolerated difference must be <= {high - low:g}"
    return None
