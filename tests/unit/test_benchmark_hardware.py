"""GPU peak table and the FLOPs / bytes formulas behind MFU and MBU."""

from __future__ import annotations

import pytest

from lockgate.benchmark import hardware
from lockgate.benchmark.hardware import ModelShape


@pytest.mark.parametrize(
    ("device_name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
        ("NVIDIA H100 NVL", "NVIDIA H100 NVL"),
        ("NVIDIA H200", "NVIDIA H200"),
        ("NVIDIA H200 NVL", "NVIDIA H200 NVL"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM 80GB"),
        ("NVIDIA A100 80GB PCIe", "NVIDIA A100 PCIe 80GB"),
        ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 40GB"),
        ("NVIDIA L4", "NVIDIA L4"),
        ("NVIDIA L40S", "NVIDIA L40S"),
        ("Tesla T4", "NVIDIA T4"),
        ("NVIDIA A10G", None),  # a different part from the A10: no guessed figures
        ("NVIDIA L40", None),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_lookup_gpu(device_name: str, expected: str | None) -> None:
    spec = hardware.lookup_gpu(device_name)
    assert (spec.name if spec else None) == expected


def test_peaks_are_dense_datasheet_figures() -> None:
    h100 = hardware.lookup_gpu("NVIDIA H100 80GB HBM3")
    assert h100 is not None
    assert h100.peak_flops("bfloat16") == pytest.approx(989.4e12)
    assert h100.peak_bytes_per_s == pytest.approx(3.35e12)
    t4 = hardware.lookup_gpu("Tesla T4")
    assert t4 is not None and t4.peak_flops("bfloat16") is None  # no bfloat16 on a T4


LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 256,
    "vocab_size": 512,
}


def test_shape_from_llama_and_gpt2_configs() -> None:
    s = ModelShape.from_config(LLAMA)
    assert (s.layers, s.hidden, s.heads, s.kv_heads, s.head_dim, s.intermediate, s.vocab, s.mlp_matrices) == (
        2, 64, 4, 2, 16, 256, 512, 3
    )  # fmt: skip
    # q and o: 64x64 each; k and v: 64x32 each; gated MLP: 3 x 64x256.
    assert s.layer_linear_params == 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 256
    g = ModelShape.from_config({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257})
    assert (g.layers, g.hidden, g.kv_heads, g.intermediate, g.mlp_matrices) == (12, 768, 12, 3072, 2)
    with pytest.raises(ValueError):
        ModelShape.from_config({"model_type": "bert"})


def test_prefill_flops_by_hand() -> None:
    s = ModelShape.from_config(LLAMA)
    batch, length = 2, 10
    linear = 2 * s.linear_params * batch * length
    attention = 4 * 2 * 4 * 16 * batch * (length * (length + 1) / 2)
    head = 2 * 64 * 512 * batch
    assert hardware.prefill_flops(s, batch, length) == pytest.approx(linear + attention + head)


def test_large_model_flops_approach_two_per_parameter_per_token() -> None:
    s = ModelShape.from_config({**LLAMA, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                                "num_key_value_heads": 12, "intermediate_size": 2048})  # fmt: skip
    tokens = 16
    per_token = hardware.prefill_flops(s, 1, tokens) / tokens
    assert per_token == pytest.approx(2 * s.linear_params, rel=0.05)


def test_decode_bytes_and_flops() -> None:
    s = ModelShape.from_config(LLAMA)
    steps, prompt, batch = 3, 10, 2
    weights = (s.linear_params + s.head_params) * 2 * steps
    contexts = (prompt + 1) + (prompt + 2) + (prompt + 3)
    kv = 2 * 2 * 2 * 16 * 2 * batch * (contexts + steps)
    assert hardware.decode_bytes(s, batch, prompt, steps, 2.0) == pytest.approx(weights + kv)
    flops = batch * (2 * (s.linear_params + s.head_params) * steps + 4 * 2 * 4 * 16 * contexts)
    assert hardware.decode_flops(s, batch, prompt, steps) == pytest.approx(flops)
    assert hardware.decode_bytes(s, batch, prompt, 0, 2.0) == 0.0


def test_utilisation() -> None:
    assert hardware.utilisation(50.0, 1.0, 100.0) == pytest.approx(0.5)
    assert hardware.utilisation(50.0, 1.0, None) is None
    assert hardware.utilisation(50.0, 0.0, 100.0) is None
