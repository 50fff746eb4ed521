"""From measured requests to evidence: per-cell distributions, metrics with intervals, ratios, validity.

Metric names (the contract with the promotion gates, `benchmark.<name>`): the headline
cell (batch size 1, or the smallest measured, in serving configuration `eager`) gives
the plain names (`ttft_ms_p50`, ...); other batch sizes of the headline configuration
are `<name>.bs<B>`, other configurations `<name>.<config>.bs<B>`.

Ratios of medians (`*_p50`) are paired: the median of challenger / champion over requests
measured back to back on the same prompt (see `stats.paired_bootstrap`). Tails, throughputs
and memory are ratios of the two versions' statistics.

A run is invalid (no gate may use it) when, in any cell, the coefficient of variation
across repetitions of the comparison exceeds `max_cv`: the per-repetition median of the
paired ratios of TTFT, TPOT or end-to-end latency (or, with one version, its own
per-repetition median). Each version's own CV is reported beside it: it includes the
drift of the machine, which interleaving cancels from the ratios.

Only numpy and the evidence models here: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lockgate.benchmark import hardware, stats
from lockgate.benchmark.harness import Measurements, RequestRecord
from lockgate.evidence import Estimate, MetricEvidence, SummaryStatus

CV_METRICS = ("ttft_ms", "tpot_ms", "e2e_ms")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    keys: tuple[str, ...]
    stat: stats.Statistic
    unit: str
    description: str
    direction: str = "lower_is_better"
    paired: bool = False  # ratio = the statistic of the paired ratios (medians only)
    max_resamples: int | None = None  # cap for statistics over every decode step (large arrays)


ITL_MAX_RESAMPLES = 500


def _pct(key: str, q: int, unit: str, what: str) -> MetricSpec:
    paired = q == 50
    how = "ratio: median of paired per-request ratios" if paired else f"ratio of the two p{q}"
    return MetricSpec(
        f"{key}_p{q}",
        (key,),
        stats.percentile_stat(key, q),
        unit,
        f"{q}th percentile of {what}; {how}",
        paired=paired,
        # Every decode step is a value: the bootstrap of these arrays is the slow part of the analysis.
        max_resamples=ITL_MAX_RESAMPLES if key == "itl_ms" else None,
    )


BASE_METRICS: tuple[MetricSpec, ...] = (
    *(_pct("ttft_ms", q, "ms", "time to first token (prefill + first argmax) per request") for q in (50, 90, 99)),
    *(_pct("tpot_ms", q, "ms", "time per output token after the first, per request") for q in (50, 90, 99)),
    *(_pct("itl_ms", q, "ms", "inter-token latency, every decode step") for q in (50, 90, 99)),
    *(_pct("e2e_ms", q, "ms", "end-to-end latency per request") for q in (50, 90, 99)),
    MetricSpec(
        "prefill_tokens_per_s",
        ("prompt_tokens", "ttft_s"),
        stats.ratio_of_sums_stat("prompt_tokens", "ttft_s"),
        "tokens/s",
        "prompt tokens (unpadded) over total time to first token",
        "higher_is_better",
    ),
    MetricSpec(
        "decode_tokens_per_s",
        ("decode_tokens", "decode_s"),
        stats.ratio_of_sums_stat("decode_tokens", "decode_s"),
        "tokens/s",
        "tokens generated after the first over total decode time",
        "higher_is_better",
    ),
    MetricSpec(
        "peak_memory_mb",
        ("memory_mb",),
        stats.max_stat("memory_mb"),
        "MiB",
        "weights plus the largest memory one request added (CUDA allocator peak on GPU, RSS growth on CPU)",
    ),
)


@dataclass
class CellResult:
    """One (configuration, batch size): each version's distributions and noise."""

    config: str
    batch_size: int
    repetitions: int
    requests: int
    per_role: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Analysis:
    metrics: dict[str, MetricEvidence]
    cells: list[CellResult]
    headline: dict[str, Any] | None
    status: SummaryStatus
    message: str | None
    problems: list[str]
    notes: list[str]


def metric_key(name: str, config: str, batch_size: int, headline: tuple[str, int]) -> str:
    """The contract's name of a metric in a cell (see the module docstring)."""
    head_config, head_bs = headline
    if config == head_config:
        return name if batch_size == head_bs else f"{name}.bs{batch_size}"
    return f"{name}.{config}.bs{batch_size}"


def choose_headline(configs: Sequence[str], batch_sizes: Sequence[int]) -> tuple[str, int]:
    """`eager` (else the first configuration) at batch size 1 (else the smallest)."""
    config = "eager" if "eager" in configs else configs[0]
    return config, min(batch_sizes)


def cell_arrays(
    records: Sequence[RequestRecord], shape: hardware.ModelShape | None, dtype_bytes: float
) -> dict[str, np.ndarray]:
    """Arrays shaped [repetitions, requests(, steps)] of one version in one cell."""
    reps = sorted({r.repetition for r in records})
    reqs = sorted({r.request for r in records})
    if len(records) != len(reps) * len(reqs):
        raise ValueError(f"incomplete cell: {len(records)} records for {len(reps)} x {len(reqs)}")
    ri = {v: i for i, v in enumerate(reps)}
    qi = {v: i for i, v in enumerate(reqs)}
    grid: list[list[RequestRecord | None]] = [[None] * len(reqs) for _ in reps]
    for r in records:
        grid[ri[r.repetition]][qi[r.request]] = r

    def arr(fn: Any) -> np.ndarray:
        return np.array([[fn(r) for r in row] for row in grid], dtype=np.float64)

    ttft = arr(lambda r: r.ttft_ms)
    e2e = arr(lambda r: r.e2e_ms)
    steps = arr(lambda r: r.new_tokens - 1)
    out: dict[str, np.ndarray] = {
        "ttft_ms": ttft,
        "e2e_ms": e2e,
        "ttft_s": ttft / 1e3,
        "decode_s": (e2e - ttft) / 1e3,
        "prompt_tokens": arr(lambda r: r.prompt_tokens),
        "decode_tokens": arr(lambda r: r.batch_size * (r.new_tokens - 1)),
        "generated_tokens": arr(lambda r: r.batch_size * r.new_tokens),
        "memory_mb": arr(lambda r: (r.weight_bytes + r.workset_bytes) / 2**20),
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        out["tpot_ms"] = np.where(steps > 0, (e2e - ttft) / np.maximum(steps, 1), np.nan)
    out["itl_ms"] = np.array([[r.step_ms for r in row] for row in grid], dtype=np.float64)  # type: ignore[union-attr]
    if all(r.energy_mj is not None for r in records):
        out["energy_mj"] = arr(lambda r: r.energy_mj)
    if shape is not None:
        out["prefill_flops"] = arr(lambda r: hardware.prefill_flops(shape, r.batch_size, r.padded_len))
        out["decode_bytes"] = arr(
            lambda r: hardware.decode_bytes(shape, r.batch_size, r.padded_len, r.new_tokens - 1, dtype_bytes)
        )
        out["decode_flops"] = arr(lambda r: hardware.decode_flops(shape, r.batch_size, r.padded_len, r.new_tokens - 1))
    return out


def _gpu_specs(
    measurements: Measurements, spec: hardware.GpuSpec | None, config: str, arrays: dict[str, np.ndarray]
) -> list[MetricSpec]:
    """MFU, MBU and energy per token, where the device and the counters allow them."""
    out: list[MetricSpec] = []
    if measurements.device.kind != "cuda" or config == "int8_dynamic":
        return out
    if spec is not None and "prefill_flops" in arrays:
        peak_flops = spec.peak_flops(measurements.device.dtype)
        if peak_flops:
            out.append(
                MetricSpec(
                    "mfu_prefill",
                    ("prefill_flops", "ttft_s"),
                    stats.ratio_of_sums_stat("prefill_flops", "ttft_s", 1 / peak_flops),
                    "fraction",
                    f"prefill model FLOPs/s over the {spec.name} {measurements.device.dtype} dense peak",
                    "higher_is_better",
                )
            )
        out.append(
            MetricSpec(
                "mbu_decode",
                ("decode_bytes", "decode_s"),
                stats.ratio_of_sums_stat("decode_bytes", "decode_s", 1 / spec.peak_bytes_per_s),
                "fraction",
                f"decode bytes/s (weights + KV cache) over the {spec.name} memory bandwidth",
                "higher_is_better",
            )
        )
    if "energy_mj" in arrays:
        out.append(
            MetricSpec(
                "energy_mj_per_token",
                ("energy_mj", "generated_tokens"),
                stats.ratio_of_sums_stat("energy_mj", "generated_tokens"),
                "mJ/token",
                "GPU energy (NVML counter) per generated token",
            )
        )
    return out


def _estimate(iv: stats.Interval) -> Estimate | None:
    if not math.isfinite(iv.value):
        return None
    return Estimate(value=iv.value, ci_low=iv.low, ci_high=iv.high, confidence=iv.confidence, n=iv.n)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def analyse(
    measurements: Measurements,
    shapes: dict[str, hardware.ModelShape | None],
    *,
    confidence: float,
    resamples: int,
    seed: int,
    max_cv: float,
) -> Analysis:
    """Metrics (challenger, champion and ratio estimates), per-cell details and the run's validity."""
    plan = measurements.plan
    roles = measurements.roles
    device = measurements.device
    gpu = hardware.lookup_gpu(device.name) if device.kind == "cuda" else None
    notes: list[str] = []
    if device.kind == "cpu":
        notes.append("MFU and MBU are not reported on CPU (no peak figures); achieved FLOP/s and bytes/s are.")
        notes.append("Energy per token needs NVML (a GPU); not measured on CPU.")
    elif gpu is None:
        notes.append(f"{device.name} is not in the table of known GPUs: MFU and MBU are not reported.")
    dtype_bytes = hardware.DTYPE_BYTES.get(device.dtype, 4.0)

    by_cell: dict[tuple[str, int], dict[str, list[RequestRecord]]] = {}
    for r in measurements.records:
        by_cell.setdefault((r.config, r.batch_size), {}).setdefault(r.role, []).append(r)
    measured = [(c, bs) for bs in plan.batch_sizes for c in plan.configs if (c, bs) in by_cell]
    headline = choose_headline(plan.configs, plan.batch_sizes)

    metrics: dict[str, MetricEvidence] = {}
    cells: list[CellResult] = []
    problems: list[str] = []
    for config, bs in measured:
        per_role = by_cell[(config, bs)]
        if any(role not in per_role for role in roles):
            continue
        arrays = {
            role: cell_arrays(per_role[role], shapes.get(role), 1.0 if config == "int8_dynamic" else dtype_bytes)
            for role in roles
        }
        first = arrays[roles[0]]
        cell = CellResult(config, bs, first["ttft_ms"].shape[0], first["ttft_ms"].shape[1])
        for role in roles:
            a = arrays[role]
            info: dict[str, Any] = {}
            for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
                info[key] = stats.describe(a[key]).as_dict()
            for key in CV_METRICS:
                median = stats.percentile_stat(key, 50)
                cv = stats.coefficient_of_variation(stats.per_repetition(median, {key: a[key]}))
                info[f"cv_{key}"] = _finite_or_none(cv)
                if len(roles) == 1 and math.isfinite(cv) and cv > max_cv:
                    problems.append(
                        f"{role} {config} bs{bs}: CV of the per-repetition median {key} is {cv:.2f} > max_cv {max_cv:g}"
                    )
                if len(roles) == 2 and role == roles[0]:
                    pcv = stats.paired_cv(median, {key: a[key]}, {key: arrays[roles[1]][key]})
                    info[f"paired_cv_{key}"] = _finite_or_none(pcv)
                    if math.isfinite(pcv) and pcv > max_cv:
                        problems.append(
                            f"{config} bs{bs}: CV of the per-repetition median challenger/champion {key} ratio "
                            f"is {pcv:.2f} > max_cv {max_cv:g}"
                        )
            info["samples_ms"] = {k: a[k].ravel().round(4).tolist() for k in ("ttft_ms", "tpot_ms", "e2e_ms")}
            if "prefill_flops" in a:
                info["prefill_gflops_per_s"] = float(a["prefill_flops"].sum() / a["ttft_s"].sum() / 1e9)
                info["decode_gbytes_per_s"] = float(a["decode_bytes"].sum() / a["decode_s"].sum() / 1e9)
            reserved = [r.reserved_bytes for r in per_role[role] if r.reserved_bytes is not None]
            if reserved:
                # The CUDA caching allocator's reservation is process-wide (both versions' weights included).
                info["gpu_reserved_mb_max"] = max(reserved) / 2**20
            info["workset_mb_max"] = max(r.workset_bytes for r in per_role[role]) / 2**20
            info["weights_mb"] = per_role[role][0].weight_bytes / 2**20
            key = f"{role}|{config}|bs{bs}"
            if key in measurements.first_warmup_ms:
                info["first_warmup_ms"] = measurements.first_warmup_ms[key]
                if config == "static_compile":
                    # The first warm-up request holds the compilation; a measured request does the rest.
                    info["compile_s"] = max(0.0, (measurements.first_warmup_ms[key] - info["e2e_ms"]["p50"]) / 1e3)
            cell.per_role[role] = info
        specs = [*BASE_METRICS, *_gpu_specs(measurements, gpu, config, first)]
        for spec in specs:
            a_arr = {k: arrays[roles[0]][k] for k in spec.keys}
            b_arr = {k: arrays[roles[1]][k] for k in spec.keys} if len(roles) > 1 else None
            if any(k not in arrays[r] for r in roles for k in spec.keys):
                continue
            cmp = stats.paired_bootstrap(spec.stat, a_arr, b_arr, resamples=resamples, confidence=confidence, seed=seed)
            name = metric_key(spec.name, config, bs, headline)
            challenger = _estimate(cmp.a)
            if challenger is None:
                continue
            metrics[name] = MetricEvidence(
                challenger=challenger,
                champion=_estimate(cmp.b) if cmp.b is not None else None,
                ratio=_estimate(cmp.ratio) if cmp.ratio is not None else None,
                unit=spec.unit,
                description=f"{spec.description} ({config}, batch size {bs}; {spec.direction.replace('_', ' ')})",
            )
            for role, iv in zip(roles, (cmp.a, cmp.b), strict=False):
                if iv is not None:
                    cell.per_role[role].setdefault("metrics", {})[spec.name] = _finite_or_none(iv.value)
        cells.append(cell)

    status: SummaryStatus = "ok"
    message: str | None = None
    head_cell = next((c for c in cells if (c.config, c.batch_size) == headline), None)
    if head_cell is None:
        reasons = [
            f.message for f in measurements.failures if f.config == headline[0] and f.batch_size in (None, headline[1])
        ]
        status = "error"
        message = f"the headline cell ({headline[0]}, batch size {headline[1]}) could not be measured" + (
            f": {reasons[0]}" if reasons else ""
        )
    elif problems:
        status = "invalid"
        message = f"measurements too noisy to use ({len(problems)} cell(s) above max_cv {max_cv:g}); worst: " + max(
            problems, key=lambda p: float(p.split(" is ")[1].split(" ")[0])
        )
    headline_info = {"config": headline[0], "batch_size": headline[1]} if head_cell is not None else None
    return Analysis(metrics, cells, headline_info, status, message, problems, notes)
