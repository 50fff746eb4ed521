"""The measurement loop: each version, each serving configuration, each batch size, interleaved.

One request is a batch of prompts run through a manual KV-cache loop: a prefill
(logits of the last position only) and greedy argmax, then one forward pass per new
token. The manual loop is what a serving stack does, without `generate()`'s per-step
bookkeeping (measured 2x slower on small models), and it gives a clock mark after
every token:

* GPU: CUDA events recorded on the stream after the prefill and after each step, one
  synchronisation at the end of the request (no sync inside the timed loop);
* CPU: `time.perf_counter()` at the same points, or `time.thread_time()` (policy
  `cpu_clock: thread_cpu`, one torch thread): the CPU time of the measuring thread, which
  leaves out the time a shared machine gave to other processes.

The Python garbage collector is paused during a timed request (as `timeit` does), and
everything that is not serving work (building inputs, resetting a static cache,
memory probes, NVML reads) happens outside the timed region.

Versions are interleaved request by request, A B then B A, inside every repetition,
so slow drifts of the machine (thermal, other tenants) hit both alike. Warm-up
requests run first for every (version, configuration, batch size), and the first one's
wall time is kept apart: for `static_compile` it holds the compilation.

A configuration that fails (out of memory at a batch size, a compile error) is
recorded with its message and skipped for every version; the rest goes on.
"""

from __future__ import annotations

import copy
import gc
import inspect
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgate.benchmark.environment import DeviceChoice, peak_rss_bytes, rss_bytes
from lockgate.benchmark.hardware import ModelShape
from lockgate.benchmark.workload import PromptSet, PromptTokens, Request, build_requests, interleaved_order
from lockgate.errors import InvalidModelError

log = logging.getLogger(__name__)

SERVING_CONFIGS = ("eager", "static_compile", "int8_dynamic")


@dataclass
class LoadedModel:
    """A version's model on the benchmark device, and what the formulas need to know about it."""

    role: str
    version: str
    path: Path
    model: Any
    config: dict[str, Any]
    shape: ModelShape | None
    weight_bytes: int
    n_params: int
    load_s: float

    @property
    def vocab_size(self) -> int:
        return int(self.config.get("vocab_size") or 0)

    @property
    def max_positions(self) -> int | None:
        value = self.config.get("max_position_embeddings") or self.config.get("n_positions")
        return int(value) if value else None


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a state dict (quantized packed parameters included)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return int(obj.numel() * obj.element_size())
    if isinstance(obj, (tuple, list)):
        return sum(tensor_bytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(tensor_bytes(o) for o in obj.values())
    return 0


def _model_bytes(model: Any) -> int:
    # Tied weights appear once in parameters(); state_dict() would count them twice.
    params = sum(int(p.numel() * p.element_size()) for p in model.parameters())
    buffers = sum(int(b.numel() * b.element_size()) for b in model.buffers())
    return params + buffers


def load_model(role: str, version: str, path: Path, device: DeviceChoice) -> LoadedModel:
    """Load a Hugging Face causal LM directory onto the device in the benchmark dtype.

    Raises:
        InvalidModelError: not a causal LM, missing or unreadable artifacts.
    """
    import torch

    from lockgate.models import load_hf_directory

    dtype = getattr(torch, device.dtype)
    started = time.perf_counter()
    try:
        model, _tokenizer = load_hf_directory(path, device=device.torch_device, dtype=dtype)
    except InvalidModelError as exc:
        raise InvalidModelError(f"{role} v{version}: {exc.message}") from None
    except torch.OutOfMemoryError:
        raise
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        # transformers raises these for corrupt weights, shape mismatches, unknown tokenizer files.
        raise InvalidModelError(f"{role} v{version} cannot be loaded: {type(exc).__name__}: {exc}") from None
    config = model.config.to_dict()
    try:
        shape: ModelShape | None = ModelShape.from_config(config)
    except ValueError:
        shape = None
    return LoadedModel(
        role=role,
        version=version,
        path=Path(path),
        model=model,
        config=config,
        shape=shape,
        weight_bytes=_model_bytes(model),
        n_params=sum(int(p.numel()) for p in model.parameters()),
        load_s=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Plan:
    """What to measure: the same for every version."""

    batch_sizes: tuple[int, ...]
    new_tokens: int
    repetitions: int
    warmups: int
    configs: tuple[str, ...] = ("eager",)
    seed: int = 0
    cpu_threads: int | None = None
    cpu_clock: str = "wall"  # "wall" (perf_counter) or "thread_cpu" (thread_time), CPU only


@dataclass
class RequestRecord:
    """One measured request of one version."""

    role: str
    config: str
    batch_size: int
    repetition: int
    request: int
    prompt_tokens: int  # real (unpadded) prompt tokens of the batch
    padded_len: int
    new_tokens: int
    ttft_ms: float
    step_ms: list[float]  # one per decode step: the inter-token latencies
    e2e_ms: float
    workset_bytes: int  # memory the request added on top of the loaded models
    weight_bytes: int
    energy_mj: float | None = None
    reserved_bytes: int | None = None


@dataclass
class CellFailure:
    """A (configuration, batch size) that could not be measured, and why."""

    config: str
    batch_size: int | None  # None: the configuration failed for every batch size
    role: str | None
    kind: str  # "out_of_memory", "unsupported", "error"
    message: str


@dataclass
class Measurements:
    roles: list[str]
    device: DeviceChoice
    plan: Plan
    prompts: PromptSet
    records: list[RequestRecord] = field(default_factory=list)
    failures: list[CellFailure] = field(default_factory=list)
    first_warmup_ms: dict[str, float] = field(default_factory=dict)  # "<role>|<config>|bs<B>"
    setup_s: dict[str, float] = field(default_factory=dict)  # "<role>|<config>": quantization etc.
    notes: list[str] = field(default_factory=list)
    process: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def failed(self, config: str, batch_size: int) -> bool:
        return any(f.config == config and f.batch_size in (None, batch_size) for f in self.failures)


# --------------------------------------------------------------------------- clocks and probes


class _CpuClock:
    """`perf_counter` (wall time), or `thread_time` (CPU time of this thread: excludes time preempted)."""

    def __init__(self, marks: int, clock: str = "wall") -> None:
        self._t = [0.0] * marks
        self._i = 0
        self._now = time.thread_time if clock == "thread_cpu" else time.perf_counter

    def start(self) -> None:
        self._i = 0
        self.mark()

    def mark(self) -> None:
        self._t[self._i] = self._now()
        self._i += 1

    def finish(self) -> list[float]:
        t = self._t
        return [(t[k + 1] - t[k]) * 1e3 for k in range(self._i - 1)]


class _CudaClock:
    def __init__(self, marks: int) -> None:
        import torch

        event: Any = torch.cuda.Event
        self._ev = [event(enable_timing=True) for _ in range(marks)]
        self._i = 0

    def start(self) -> None:
        self._i = 0
        self.mark()

    def mark(self) -> None:
        self._ev[self._i].record()
        self._i += 1

    def finish(self) -> list[float]:
        ev = self._ev
        ev[self._i - 1].synchronize()
        return [float(ev[k].elapsed_time(ev[k + 1])) for k in range(self._i - 1)]


class _MemoryProbe:
    """Bytes a request adds: the CUDA allocator's peak over its start, or the growth of RSS on CPU.

    On CPU the KV cache is still alive when `stop()` runs, so RSS growth covers it; freed
    activations reused by the allocator are not seen (a lower bound).
    """

    def __init__(self, device: DeviceChoice) -> None:
        self.cuda = device.kind == "cuda"
        self.index = device.index
        self._start = 0

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.index)
            self._start = int(torch.cuda.memory_allocated(self.index))
        else:
            self._start = rss_bytes()

    def stop(self) -> tuple[int, int | None]:
        if self.cuda:
            import torch

            peak = int(torch.cuda.max_memory_allocated(self.index))
            return max(0, peak - self._start), int(torch.cuda.max_memory_reserved(self.index))
        return max(0, rss_bytes() - self._start), None


# --------------------------------------------------------------------------- inputs and runners


@dataclass
class _Inputs:
    """Device tensors of one request, built once and reused by every version and repetition."""

    ids: Any  # [B, L]
    length: int
    mask: Any  # [B, L + new] when the batch is padded, else None
    prefill_pos: Any  # [B, L] when padded, else None
    decode_pos: Any  # [B, new] when padded, else None
    static: dict[int, Any] = field(default_factory=dict)  # per max_cache_len: (mask, prefill_pos, step positions)


def _make_inputs(request: Request, tokens: PromptTokens, device: str, new_tokens: int) -> _Inputs:
    import torch

    length = request.padded_len
    rows, masks = [], []
    for i in request.prompts:
        ids = tokens.ids[i]
        pad = length - len(ids)
        rows.append([0] * pad + ids)  # left padding, as a serving stack batches
        masks.append([0] * pad + [1] * (len(ids) + new_tokens))
    ids_t = torch.tensor(rows, dtype=torch.long, device=device)
    if not request.padded:
        return _Inputs(ids_t, length, None, None, None)
    mask = torch.tensor(masks, dtype=torch.long, device=device)
    prefill_pos = (mask[:, :length].cumsum(-1) - 1).clamp(min=0)
    decode_pos = prefill_pos[:, -1:] + torch.arange(1, new_tokens + 1, device=device)
    return _Inputs(ids_t, length, mask, prefill_pos, decode_pos)


def _argmax(logits: Any) -> Any:
    return logits[:, -1, :].argmax(dim=-1, keepdim=True)


class _EagerRunner:
    """The model as loaded, with transformers' dynamic KV cache."""

    def __init__(self, model: Any, weight_bytes: int) -> None:
        self.model = model
        self.weight_bytes = weight_bytes
        self.cache: Any = None
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}

    def prepare(self, inp: _Inputs, batch_size: int) -> None:
        self.cache = None

    def prefill(self, inp: _Inputs) -> Any:
        if inp.mask is None:
            # No padding: only the arguments a minimal loop passes (every extra keyword costs time per step).
            out = self.model(input_ids=inp.ids, use_cache=True, **self._keep)
        else:
            out = self.model(
                input_ids=inp.ids,
                attention_mask=inp.mask[:, : inp.length],
                position_ids=inp.prefill_pos,
                use_cache=True,
                **self._keep,
            )
        self.cache = out.past_key_values
        return _argmax(out.logits)

    def step(self, inp: _Inputs, token: Any, t: int) -> Any:
        if inp.mask is None:
            out = self.model(input_ids=token, past_key_values=self.cache, use_cache=True)
        else:
            out = self.model(
                input_ids=token,
                attention_mask=inp.mask[:, : inp.length + t + 1],
                position_ids=inp.decode_pos[:, t : t + 1],
                past_key_values=self.cache,
                use_cache=True,
            )
        return _argmax(out.logits)

    def release(self) -> None:
        self.cache = None


class _StaticCompileRunner:
    """A static KV cache (one per batch size, reset between requests) and a `torch.compile`d decode step.

    The prefill stays eager, as transformers recommends (its shape changes with every
    prompt); the decode step has one shape per batch size, so it compiles once per size.
    Inputs of the compiled step keep fixed shapes: the full-length attention mask and
    one position tensor per step.
    """

    def __init__(
        self, model: Any, weight_bytes: int, max_cache_len: int, device: DeviceChoice, compile_step: bool = True
    ) -> None:
        import torch

        self.compile_step = compile_step  # False: the static cache alone (tests of its logic, without compiling)
        self.model = model
        self.weight_bytes = weight_bytes
        self.max_cache_len = max_cache_len
        self.cuda = device.kind == "cuda"
        # CUDA graphs remove the per-step launch overhead, the point of a static cache on a GPU.
        self.mode = "reduce-overhead" if self.cuda else "default"
        self._caches: dict[int, Any] = {}
        self._decoders: dict[int, Callable[..., Any]] = {}
        self._bs = 0
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
        # One compiled graph per (version, batch size) shares one code object: allow them all.
        limit = getattr(torch._dynamo.config, "recompile_limit", None)
        if limit is not None and limit < 64:
            torch._dynamo.config.recompile_limit = 64

    def _setup(self, batch_size: int) -> None:
        import torch
        from transformers import StaticCache

        cache = StaticCache(config=self.model.config, max_cache_len=self.max_cache_len)
        model = self.model

        def decode(token: Any, mask: Any, positions: Any) -> Any:
            return model(
                input_ids=token, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
            ).logits

        self._caches[batch_size] = cache
        self._decoders[batch_size] = (
            torch.compile(decode, mode=self.mode, dynamic=False) if self.compile_step else decode
        )

    def _static_inputs(self, inp: _Inputs, batch_size: int, new_tokens: int) -> Any:
        import torch

        if self.max_cache_len not in inp.static:
            device = inp.ids.device
            mask = torch.ones((batch_size, self.max_cache_len), dtype=torch.long, device=device)
            if inp.mask is not None:
                mask[:, : inp.length] = inp.mask[:, : inp.length]
                prefill_pos = inp.prefill_pos
                steps = [inp.decode_pos[:, t : t + 1].clone() for t in range(new_tokens)]
            else:
                prefill_pos = torch.arange(inp.length, device=device).expand(batch_size, -1)
                steps = [torch.full((batch_size, 1), inp.length + t, device=device) for t in range(new_tokens)]
            inp.static[self.max_cache_len] = (mask, prefill_pos, steps)
        return inp.static[self.max_cache_len]

    def prepare(self, inp: _Inputs, batch_size: int, new_tokens: int = 0) -> None:
        if batch_size not in self._caches:
            self._setup(batch_size)
        self._bs = batch_size
        self._static_inputs(inp, batch_size, max(new_tokens, 1))
        self._caches[batch_size].reset()

    def prefill(self, inp: _Inputs) -> Any:
        mask, prefill_pos, _ = inp.static[self.max_cache_len]
        out = self.model(
            input_ids=inp.ids,
            attention_mask=mask,
            position_ids=prefill_pos,
            past_key_values=self._caches[self._bs],
            use_cache=True,
            **self._keep,
        )
        return _argmax(out.logits)

    def step(self, inp: _Inputs, token: Any, t: int) -> Any:
        mask, _, steps = inp.static[self.max_cache_len]
        if self.cuda and self.compile_step:
            import torch

            mark_step: Any = torch.compiler.cudagraph_mark_step_begin
            mark_step()
        return _argmax(self._decoders[self._bs](token, mask, steps[t]))

    def release(self) -> None:
        pass  # the static cache is kept for the next request of this batch size


def _quantize_int8(model: Any) -> Any:
    """`torch.ao` dynamic int8 quantization of every Linear layer, on a copy (CPU only)."""
    import torch

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        quantize: Any = quantize_dynamic
        return quantize(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


# --------------------------------------------------------------------------- the loop


Progress = Callable[[str], None]


class Session:
    """State of one `run_plan`: runners, inputs, clocks, and the cells still alive.

    `run_plan` drives it; `bench/benchmark_fidelity.py` calls `measure` directly to pair each
    harness request with its own minimal loop on the same prompt.
    """

    def __init__(self, models: Sequence[LoadedModel], prompts: PromptSet, plan: Plan, device: DeviceChoice) -> None:
        self.models = {m.role: m for m in models}
        self.plan = plan
        self.device = device
        self.out = Measurements([m.role for m in models], device, plan, prompts)
        vocab = min(m.vocab_size for m in models) or 256
        self.tokens = PromptTokens.generate(prompts.lengths, vocab, seed=plan.seed)
        self.requests = {bs: build_requests(prompts.lengths, bs) for bs in plan.batch_sizes}
        self.max_cache_len = max(prompts.lengths) + plan.new_tokens
        self._inputs: dict[tuple[int, int], _Inputs] = {}
        self.runners: dict[tuple[str, str], Any] = {}
        marks = plan.new_tokens + 1
        self.clock: Any = _CudaClock(marks) if device.kind == "cuda" else _CpuClock(marks, plan.cpu_clock)
        self.memory = _MemoryProbe(device)
        self.energy: Any = None
        if device.kind == "cuda":
            from lockgate.benchmark.environment import EnergyMeter

            self.energy = EnergyMeter(device.index)
            if not self.energy.available:
                self.out.notes.append(f"energy per token not measured: {self.energy.reason}")

    def inputs(self, bs: int, req: Request) -> _Inputs:
        key = (bs, req.index)
        if key not in self._inputs:
            self._inputs[key] = _make_inputs(req, self.tokens, self.device.torch_device, self.plan.new_tokens)
        return self._inputs[key]

    def fail(self, config: str, bs: int | None, role: str | None, kind: str, message: str) -> None:
        self.out.failures.append(CellFailure(config, bs, role, kind, message))
        where = f"batch size {bs}" if bs is not None else "every batch size"
        log.warning("benchmark: %s at %s (%s) skipped: %s", config, where, role or "all versions", message)
        self._free()

    def _free(self) -> None:
        gc.collect()
        if self.device.kind == "cuda":
            import torch

            torch.cuda.empty_cache()

    def setup_runners(self) -> None:
        for config in self.plan.configs:
            for role, m in self.models.items():
                started = time.perf_counter()
                try:
                    self.runners[(role, config)] = self._runner(config, m)
                except NotImplementedError as exc:
                    self.fail(config, None, None, "unsupported", str(exc))
                    break
                except Exception as exc:  # noqa: BLE001 - a configuration that cannot be built is skipped, not fatal
                    kind = "out_of_memory" if is_out_of_memory(exc) else "error"
                    self.fail(config, None, role, kind, f"{type(exc).__name__}: {exc}")
                    break
                self.out.setup_s[f"{role}|{config}"] = time.perf_counter() - started

    def _runner(self, config: str, m: LoadedModel) -> Any:
        if config == "eager":
            return _EagerRunner(m.model, m.weight_bytes)
        if config == "int8_dynamic":
            if self.device.kind != "cpu":
                raise NotImplementedError("int8_dynamic (torch.ao dynamic quantization) is a CPU serving configuration")
            quantized = _quantize_int8(m.model)
            return _EagerRunner(quantized, tensor_bytes(quantized.state_dict()))
        if config == "static_compile":
            return _StaticCompileRunner(m.model, m.weight_bytes, self.max_cache_len, self.device)
        raise NotImplementedError(f"unknown serving configuration {config!r}; known: {list(SERVING_CONFIGS)}")

    def measure(self, role: str, config: str, bs: int, req: Request, repetition: int) -> RequestRecord:
        runner = self.runners[(role, config)]
        inp = self.inputs(bs, req)
        new = self.plan.new_tokens
        if isinstance(runner, _StaticCompileRunner):
            runner.prepare(inp, bs, new)
        else:
            runner.prepare(inp, bs)
        energy0 = self.energy.read() if self.energy is not None else None
        self.memory.start()
        clock = self.clock
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            clock.start()
            token = runner.prefill(inp)
            clock.mark()
            for t in range(new - 1):
                token = runner.step(inp, token, t)
                clock.mark()
            intervals = clock.finish()
        finally:
            if gc_was_enabled:
                gc.enable()
        workset, reserved = self.memory.stop()
        runner.release()
        energy1 = self.energy.read() if self.energy is not None else None
        energy = energy1 - energy0 if energy0 is not None and energy1 is not None else None
        return RequestRecord(
            role=role,
            config=config,
            batch_size=bs,
            repetition=repetition,
            request=req.index,
            prompt_tokens=req.prompt_tokens,
            padded_len=req.padded_len,
            new_tokens=new,
            ttft_ms=intervals[0],
            step_ms=intervals[1:],
            e2e_ms=sum(intervals),
            workset_bytes=workset,
            weight_bytes=runner.weight_bytes,
            energy_mj=energy,
            reserved_bytes=reserved,
        )

    def guarded(self, role: str, config: str, bs: int, req: Request, repetition: int) -> RequestRecord | None:
        """Measure one request; a failure skips the whole (configuration, batch size) cell."""
        try:
            return self.measure(role, config, bs, req, repetition)
        except Exception as exc:  # noqa: BLE001 - one failing cell is recorded and skipped; the rest goes on
            runner = self.runners.get((role, config))
            if runner is not None:
                runner.release()
            if is_out_of_memory(exc):
                self.fail(config, bs, role, "out_of_memory", f"out of memory at batch size {bs}: {exc}")
            else:
                self.fail(config, bs, role, "error", f"{type(exc).__name__}: {exc}")
            return None

    def cells(self) -> list[tuple[str, int]]:
        return [
            (config, bs)
            for bs in self.plan.batch_sizes
            for config in self.plan.configs
            if not self.out.failed(config, bs)
        ]


def run_plan(
    models: Sequence[LoadedModel],
    prompts: PromptSet,
    plan: Plan,
    device: DeviceChoice,
    progress: Progress | None = None,
) -> Measurements:
    """Warm up, then measure every (configuration, batch size) for every version, interleaved.

    Args:
        models: the loaded versions, challenger first.
        prompts: the prompt lengths (already fitted to the models' context).
        plan: batch sizes, new tokens, repetitions, warm-ups, serving configurations.
        device: where the models are.
        progress: called with a short label after the warm-up and after each repetition.

    Returns:
        Every request's timings, and the cells that failed with why.
    """
    import torch

    started = time.perf_counter()
    threads_before = torch.get_num_threads()
    if device.kind == "cpu" and plan.cpu_threads:
        torch.set_num_threads(plan.cpu_threads)
    session = Session(models, prompts, plan, device)
    roles = list(session.models)
    try:
        with torch.inference_mode():
            session.setup_runners()
            warmups = plan.warmups
            if "static_compile" in plan.configs and warmups < 1:
                warmups = 1
                session.out.notes.append("static_compile needs a warm-up to compile: 1 warm-up request was run")
            for config, bs in session.cells():
                for role in roles:
                    if session.out.failed(config, bs):
                        break  # one version failed here: the cell is skipped for every version
                    reqs = session.requests[bs]
                    for w in range(warmups):
                        t0 = time.perf_counter()
                        if session.guarded(role, config, bs, reqs[w % len(reqs)], -1) is None:
                            break
                        if w == 0:
                            session.out.first_warmup_ms[f"{role}|{config}|bs{bs}"] = (time.perf_counter() - t0) * 1e3
            if progress:
                progress("warm-up done")
            for rep in range(plan.repetitions):
                for config, bs in session.cells():
                    for req in session.requests[bs]:
                        for role in interleaved_order(roles, rep, req.index):
                            record = session.guarded(role, config, bs, req, rep)
                            if record is None:
                                break
                            session.out.records.append(record)
                        if session.out.failed(config, bs):
                            break
                gc.collect()  # between repetitions, outside any timed region
                if progress:
                    progress(f"repetition {rep + 1}/{plan.repetitions} done")
    finally:
        if session.energy is not None:
            session.energy.close()
        if device.kind == "cpu" and plan.cpu_threads:
            torch.set_num_threads(threads_before)
    failed = {(f.config, f.batch_size) for f in session.out.failures}
    session.out.records = [
        r for r in session.out.records if (r.config, r.batch_size) not in failed and (r.config, None) not in failed
    ]
    session.out.process["peak_rss_mb"] = peak_rss_bytes() / 2**20
    if device.kind == "cuda":
        session.out.process["gpu_max_reserved_mb"] = torch.cuda.max_memory_reserved(device.index) / 2**20
    session.out.wall_s = time.perf_counter() - started
    return session.out
