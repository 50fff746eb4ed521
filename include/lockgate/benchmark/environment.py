"""Where a benchmark ran: the device choice, the environment fingerprint, memory probes and NVML energy.

A ratio of two versions is only comparable with another ratio taken in the same
environment, so every summary carries a fingerprint (GPU, driver, CUDA, torch,
transformers, dtype, clocks, threads) and a hash of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import dataclass
from typing import Any

from lockgate.errors import LockgateError

log = logging.getLogger(__name__)


class GpuRequiredError(LockgateError):
    """The policy requires a GPU (`benchmark.require_gpu`) and none is available."""

    code = "gpu_required"


@dataclass(frozen=True)
class DeviceChoice:
    """The torch device and dtype the benchmark runs on."""

    kind: str  # "cuda" or "cpu"
    name: str  # "NVIDIA H100 80GB HBM3", or the CPU model
    dtype: str  # "bfloat16", "float16", "float32"
    index: int = 0

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" else "cpu"


def choose_device(gpu_dtype: str, require_gpu: bool) -> DeviceChoice:
    """CUDA with the policy's dtype when there is a GPU; else the CPU in float32 (or `GpuRequiredError`)."""
    import torch

    if torch.cuda.is_available():
        dtype = gpu_dtype
        if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            # T4/V100 have no bfloat16: float16 is what they would serve in.
            log.warning("this GPU has no bfloat16 support; benchmarking in float16")
            dtype = "float16"
        return DeviceChoice("cuda", torch.cuda.get_device_name(0), dtype, 0)
    if require_gpu:
        raise GpuRequiredError(
            "the policy requires a GPU (benchmark.require_gpu: true) and torch sees none "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
            "run the benchmark task on a GPU worker (queue 'gpu') or set require_gpu: false"
        )
    return DeviceChoice("cpu", cpu_model(), "float32")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> str:
    """The CPU's model and the matrix features bfloat16 speed depends on, for a benchmark's header.

    Ratios of batched bfloat16 work to one-at-a-time float32 work differ by CPU: AMX's matrix units
    speed up the first, not the second.
    """
    import torch

    def has(probe: str) -> str:
        check = getattr(torch.cpu, probe, None)
        return "yes" if check is not None and check() else "no"

    return (
        f"{cpu_model()}, {os.cpu_count()} cores; AMX: {has('_is_amx_tile_supported')}, "
        f"AVX512-BF16: {has('_is_avx512_bf16_supported')}"
    )


def rss_bytes() -> int:
    """Resident set size of this process now."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident set (ru_maxrss, KiB on Linux)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class EnergyMeter:
    """Cumulative GPU energy from NVML (millijoules, Volta and newer); `read()` is None where unavailable."""

    def __init__(self, device_index: int = 0) -> None:
        self.available = False
        self.reason = "no GPU"
        self._handle: Any = None
        self._nvml: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception as exc:  # noqa: BLE001 - NVML missing, no driver, or an old GPU: energy is simply n/a
            self.reason = f"NVML energy counter unavailable: {type(exc).__name__}: {exc}"
            return
        self._nvml, self._handle, self.available, self.reason = pynvml, handle, True, "ok"

    def read(self) -> float | None:
        if not self.available:
            return None
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def close(self) -> None:
        if self.available:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001, S110 - shutting NVML down is best effort
                pass
            self.available = False


def _nvml_facts(index: int) -> dict[str, Any]:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no NVML: the fingerprint says so
        return {"nvml": f"unavailable ({type(exc).__name__})"}
    facts: dict[str, Any] = {}
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(index)

        def get(key: str, fn: Any, *args: Any) -> None:
            try:
                value = fn(*args)
                facts[key] = value.decode() if isinstance(value, bytes) else value
            except Exception:  # noqa: BLE001 - a counter this GPU lacks is left out
                facts[key] = None

        get("driver", pynvml.nvmlSystemGetDriverVersion)
        get("sm_clock_mhz", pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM)
        get("sm_clock_max_mhz", pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_SM)
        get("mem_clock_mhz", pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_MEM)
        get("mem_clock_max_mhz", pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_MEM)
        get("power_limit_mw", pynvml.nvmlDeviceGetPowerManagementLimit, h)
        get("persistence_mode", pynvml.nvmlDeviceGetPersistenceMode, h)
        get("temperature_c", pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
        get("gpu_count", pynvml.nvmlDeviceGetCount)
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110 - best effort
            pass
    return facts


def fingerprint(device: DeviceChoice, threads: int | None = None) -> dict[str, Any]:
    """The software and hardware a measurement depends on, with a stable hash of the comparable part."""
    import torch
    import transformers

    facts: dict[str, Any] = {
        "device": device.kind,
        "device_name": device.name,
        "dtype": device.dtype,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
    }
    if device.kind == "cuda":
        props = torch.cuda.get_device_properties(device.index)
        cudnn_version: Any = torch.backends.cudnn.version
        facts.update(
            {
                "cuda": torch.version.cuda,
                "cudnn": cudnn_version(),
                "gpu_memory_gb": round(props.total_memory / 2**30, 1),
                "gpu_capability": f"{props.major}.{props.minor}",
                "gpu_multiprocessors": props.multi_processor_count,
                "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                **_nvml_facts(device.index),
            }
        )
    # The hash leaves out what changes between identical runs (clocks, temperature).
    stable = {k: v for k, v in facts.items() if k not in {"sm_clock_mhz", "mem_clock_mhz", "temperature_c"}}
    facts["hash"] = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return facts
