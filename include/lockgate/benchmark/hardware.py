"""Peak figures of known GPUs, and the FLOPs and bytes a request moves: hence MFU and MBU.

* MFU (model FLOPs utilisation) of the prefill: the FLOPs the model needs for the
  prompt, divided by the time to first token, over the GPU's dense peak for the dtype.
* MBU (model bandwidth utilisation) of the decode: the bytes one decode step must read
  (every weight once, plus the KV cache so far), divided by the time per output
  token, over the GPU's memory bandwidth. Decoding a small batch is bound by memory
  bandwidth, so MBU says how close to the hardware's limit a serving stack runs.

The formulas count model work ("useful" FLOPs and bytes, as in the PaLM paper's MFU),
not what a kernel happens to execute: padding of a static KV cache, recomputation
and kernel overheads lower the utilisation rather than raise the count. Peak figures
are the vendors' dense (no sparsity) datasheet numbers. No CPU table: on a CPU the
achieved FLOP/s and bytes/s are reported, and MFU/MBU are not available.

Pure functions over plain data: no torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GpuSpec:
    """Datasheet peaks of one GPU model (dense tensor-core TFLOP/s per dtype, memory GB/s)."""

    name: str
    pattern: str  # regular expression matched against torch.cuda.get_device_name(), lower case
    tflops: Mapping[str, float]
    memory_bandwidth_gbs: float

    def peak_flops(self, dtype: str) -> float | None:
        tf = self.tflops.get(dtype)
        return tf * 1e12 if tf else None

    @property
    def peak_bytes_per_s(self) -> float:
        return self.memory_bandwidth_gbs * 1e9


# Most specific patterns first: "H100 NVL" and "H100 PCIe" before the SXM default.
KNOWN_GPUS: tuple[GpuSpec, ...] = (
    GpuSpec("NVIDIA B200", r"\bb200\b", {"bfloat16": 2250, "float16": 2250, "float32": 80}, 8000),
    GpuSpec("NVIDIA H200 NVL", r"h200 nvl", {"bfloat16": 835.5, "float16": 835.5, "float32": 60}, 4800),
    GpuSpec("NVIDIA H200", r"\bh200\b", {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}, 4800),
    GpuSpec("NVIDIA H100 NVL", r"h100 nvl", {"bfloat16": 835.5, "float16": 835.5, "float32": 60}, 3900),
    GpuSpec("NVIDIA H100 PCIe", r"h100.*pcie", {"bfloat16": 756.5, "float16": 756.5, "float32": 51.2}, 2000),
    GpuSpec("NVIDIA H100 SXM", r"\bh100\b", {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}, 3350),
    GpuSpec("NVIDIA A100 SXM 80GB", r"a100.*sxm.*80", {"bfloat16": 312, "float16": 312, "float32": 19.5}, 2039),
    GpuSpec("NVIDIA A100 PCIe 80GB", r"a100.*80", {"bfloat16": 312, "float16": 312, "float32": 19.5}, 1935),
    GpuSpec("NVIDIA A100 40GB", r"\ba100\b", {"bfloat16": 312, "float16": 312, "float32": 19.5}, 1555),
    GpuSpec("NVIDIA L40S", r"\bl40s\b", {"bfloat16": 362.05, "float16": 362.05, "float32": 91.6}, 864),
    GpuSpec("NVIDIA L4", r"\bl4\b", {"bfloat16": 121, "float16": 121, "float32": 30.3}, 300),
    GpuSpec("NVIDIA A10", r"\ba10\b", {"bfloat16": 125, "float16": 125, "float32": 31.2}, 600),
    GpuSpec("NVIDIA T4", r"\bt4\b", {"float16": 65, "float32": 8.1}, 320),
    GpuSpec("NVIDIA V100", r"\bv100\b", {"float16": 125, "float32": 15.7}, 900),
)


def lookup_gpu(device_name: str) -> GpuSpec | None:
    """The known GPU whose pattern matches the device name, if any."""
    name = device_name.lower()
    for spec in KNOWN_GPUS:
        if re.search(spec.pattern, name):
            return spec
    return None


# --------------------------------------------------------------------------- model shape


def _first(config: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        value = config.get(key)
        if value is not None:
            return value
    return default


_GATED_MLP_TYPES = {
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "olmo", "olmo2",
}  # fmt: skip


@dataclass(frozen=True)
class ModelShape:
    """What the FLOPs and bytes formulas need from a decoder-only transformer's config."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    mlp_matrices: int  # 3 for a gated MLP (Llama), 2 for GPT-2 style

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """From a Hugging Face config dict (Llama and GPT-2 naming both understood)."""
        hidden = int(_first(config, "hidden_size", "n_embd", "d_model", default=0))
        layers = int(_first(config, "num_hidden_layers", "n_layer", "num_layers", default=0))
        heads = int(_first(config, "num_attention_heads", "n_head", default=1))
        if hidden <= 0 or layers <= 0 or heads <= 0:
            raise ValueError("config lacks hidden size, layer count or head count")
        kv_heads = int(_first(config, "num_key_value_heads", default=heads))
        head_dim = int(_first(config, "head_dim", default=hidden // heads))
        intermediate = int(_first(config, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden))
        vocab = int(_first(config, "vocab_size", default=0))
        gated = str(config.get("model_type", "")) in _GATED_MLP_TYPES
        return cls(layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, 3 if gated else 2)

    @property
    def layer_linear_params(self) -> int:
        attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        return attn + self.mlp_matrices * self.hidden * self.intermediate

    @property
    def linear_params(self) -> int:
        """Parameters of every matrix multiplication of the decoder stack (not the LM head)."""
        return self.layers * self.layer_linear_params

    @property
    def head_params(self) -> int:
        return self.hidden * self.vocab

    def kv_bytes_per_token(self, dtype_bytes: float) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


# --------------------------------------------------------------------------- work per request


def prefill_flops(shape: ModelShape, batch: int, prompt_len: int) -> float:
    """FLOPs of one prefill of `batch` sequences of `prompt_len` tokens (logits of the last token only).

    Matmuls: 2 FLOPs per parameter per token. Causal attention: query i meets i + 1
    keys, 2 FLOPs each for the scores and again for the weighted values, per head dim.
    """
    tokens = batch * prompt_len
    linear = 2.0 * shape.linear_params * tokens
    pairs = batch * prompt_len * (prompt_len + 1) / 2
    attention = 4.0 * shape.layers * shape.heads * shape.head_dim * pairs
    head = 2.0 * shape.head_params * batch
    return linear + attention + head


def _context_sum(prompt_len: int, steps: int) -> float:
    # Decode step t (1-based) attends prompt_len + t positions.
    return steps * prompt_len + steps * (steps + 1) / 2


def decode_flops(shape: ModelShape, batch: int, prompt_len: int, steps: int) -> float:
    """FLOPs of `steps` decode steps after a prompt of `prompt_len` tokens."""
    if steps <= 0:
        return 0.0
    per_token = 2.0 * (shape.linear_params + shape.head_params)
    attention = 4.0 * shape.layers * shape.heads * shape.head_dim * _context_sum(prompt_len, steps)
    return batch * (per_token * steps + attention)


def decode_bytes(shape: ModelShape, batch: int, prompt_len: int, steps: int, dtype_bytes: float) -> float:
    """Bytes `steps` decode steps must move: all weights once per step, the KV cache read and the new entry written."""
    if steps <= 0:
        return 0.0
    weights = (shape.linear_params + shape.head_params) * dtype_bytes * steps
    kv = shape.kv_bytes_per_token(dtype_bytes) * batch * (_context_sum(prompt_len, steps) + steps)
    return weights + kv


def utilisation(amount: float, seconds: float, peak_per_s: float | None) -> float | None:
    """amount / seconds / peak; None when the peak is unknown or the time is not positive."""
    if peak_per_s is None or peak_per_s <= 0 or seconds <= 0:
        return None
    return amount / seconds / peak_per_s


DTYPE_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 1.0}
