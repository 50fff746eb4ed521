"""The measurement harness on real (tiny) models: records, greedy correctness, configurations, failures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from lockgate.benchmark import harness
from lockgate.benchmark.environment import DeviceChoice, GpuRequiredError, choose_device
from lockgate.benchmark.harness import Plan, load_model, run_plan
from lockgate.benchmark.workload import PromptSet, PromptTokens, build_requests
from lockgate.devtools.tiny_model import build_tiny_model
from lockgate.errors import InvalidModelError
from lockgate.models import hf_directory

CPU = DeviceChoice("cpu", "test CPU", "float32")
PROMPTS = PromptSet((5, 9, 14), "synthetic", "test")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # One build (tokenizer training is the slow part on a busy CPU); both versions load it.
    root = tmp_path_factory.mktemp("bench-models")
    return {"a": build_tiny_model(root / "a", seed=0)}


@pytest.fixture(scope="module")
def pair(model_dirs: dict[str, Path]) -> list[harness.LoadedModel]:
    return [load_model("challenger", "2", model_dirs["a"], CPU), load_model("champion", "1", model_dirs["a"], CPU)]


def test_every_request_is_recorded_for_both_versions(pair: list[harness.LoadedModel]) -> None:
    plan = Plan(batch_sizes=(1, 2), new_tokens=4, repetitions=2, warmups=1, cpu_threads=1)
    labels: list[str] = []
    m = run_plan(pair, PROMPTS, plan, CPU, progress=labels.append)
    assert m.failures == []
    # (3 requests at bs1 + 2 at bs2) x 2 repetitions x 2 versions
    assert len(m.records) == (3 + 2) * 2 * 2
    for r in m.records:
        assert r.ttft_ms > 0 and len(r.step_ms) == 3 and all(s > 0 for s in r.step_ms)
        assert r.e2e_ms == pytest.approx(r.ttft_ms + sum(r.step_ms))
        assert r.weight_bytes == pair[0].weight_bytes
    assert {r.prompt_tokens for r in m.records if r.batch_size == 2} == {5 + 9, 14 + 5}
    assert set(m.first_warmup_ms) == {f"{role}|eager|bs{bs}" for role in ("challenger", "champion") for bs in (1, 2)}
    assert labels == ["warm-up done", "repetition 1/2 done", "repetition 2/2 done"]
    assert torch.get_num_threads() >= 1  # restored after the run


def _greedy(runner: object, inp: harness._Inputs, batch_size: int, new: int) -> torch.Tensor:
    with torch.inference_mode():
        if isinstance(runner, harness._StaticCompileRunner):
            runner.prepare(inp, batch_size, new)
        else:
            runner.prepare(inp, batch_size)  # type: ignore[attr-defined]
        out = [runner.prefill(inp)]  # type: ignore[attr-defined]
        for t in range(new - 1):
            out.append(runner.step(inp, out[-1], t))  # type: ignore[attr-defined]
        return torch.cat(out, dim=1)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_manual_loops_generate_what_generate_does(pair: list[harness.LoadedModel], batch_size: int) -> None:
    """The timed loops (left padding, positions, dynamic and static KV cache) really decode greedily."""
    model = pair[0].model
    new = 5
    tokens = PromptTokens.generate(PROMPTS.lengths, pair[0].vocab_size, seed=0)
    req = build_requests(PROMPTS.lengths, batch_size)[0]
    inp = harness._make_inputs(req, tokens, "cpu", new)
    mask = inp.mask[:, : inp.length] if inp.mask is not None else torch.ones_like(inp.ids)
    with torch.inference_mode():
        ref = model.generate(
            input_ids=inp.ids,
            attention_mask=mask,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )[:, inp.length :]
    assert torch.equal(_greedy(harness._EagerRunner(model, 0), inp, batch_size, new), ref)
    static = harness._StaticCompileRunner(model, 0, max(PROMPTS.lengths) + new, CPU, compile_step=False)
    assert torch.equal(_greedy(static, inp, batch_size, new), ref)
    assert torch.equal(_greedy(static, inp, batch_size, new), ref)  # the cache is reset between requests


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("LOCKGATE_TEST_COMPILE") != "1",
    reason="torch.compile of the decode step takes 1-3 minutes on this 2-core CPU; set LOCKGATE_TEST_COMPILE=1",
)
def test_static_compile_configuration(pair: list[harness.LoadedModel]) -> None:
    plan = Plan(batch_sizes=(1,), new_tokens=4, repetitions=2, warmups=1, configs=("eager", "static_compile"))
    m = run_plan(pair[:1], PromptSet((6, 9), "synthetic", "t"), plan, CPU)
    assert m.failures == []
    compiled = [r for r in m.records if r.config == "static_compile"]
    assert len(compiled) == 2 * 2 and all(r.ttft_ms > 0 for r in compiled)
    # The compilation is in the first warm-up, kept apart from the measured latencies.
    first = m.first_warmup_ms["challenger|static_compile|bs1"]
    assert first > 10 * max(r.e2e_ms for r in compiled)
    tokens = PromptTokens.generate((6, 9), pair[0].vocab_size, seed=0)
    inp = harness._make_inputs(build_requests((6, 9), 1)[0], tokens, "cpu", 4)
    static = harness._StaticCompileRunner(pair[0].model, 0, 9 + 4, CPU)
    assert torch.equal(_greedy(static, inp, 1, 4), _greedy(harness._EagerRunner(pair[0].model, 0), inp, 1, 4))


def test_int8_dynamic_configuration_runs_on_cpu(pair: list[harness.LoadedModel]) -> None:
    plan = Plan(batch_sizes=(1,), new_tokens=3, repetitions=2, warmups=0, configs=("eager", "int8_dynamic"))
    m = run_plan(pair, PromptSet((6, 8), "synthetic", "t"), plan, CPU)
    assert m.failures == []
    assert {r.config for r in m.records} == {"eager", "int8_dynamic"}
    int8 = [r for r in m.records if r.config == "int8_dynamic"]
    assert len(int8) == 2 * 2 * 2 and all(r.ttft_ms > 0 for r in int8)
    assert set(m.setup_s) >= {"challenger|int8_dynamic", "champion|int8_dynamic"}


def test_out_of_memory_at_one_batch_size_skips_only_that_size(
    pair: list[harness.LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = harness.Session.measure

    def measure(self: harness.Session, role: str, config: str, bs: int, req: object, rep: int) -> object:
        if bs == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, role, config, bs, req, rep)  # type: ignore[arg-type]

    monkeypatch.setattr(harness.Session, "measure", measure)
    plan = Plan(batch_sizes=(1, 2), new_tokens=3, repetitions=2, warmups=1)
    m = run_plan(pair, PROMPTS, plan, CPU)
    assert [(f.config, f.batch_size, f.kind) for f in m.failures] == [("eager", 2, "out_of_memory")]
    assert "batch size 2" in m.failures[0].message
    assert {r.batch_size for r in m.records} == {1}
    assert len(m.records) == 3 * 2 * 2


def test_unsupported_configuration_is_recorded(pair: list[harness.LoadedModel]) -> None:
    gpu = DeviceChoice("cuda", "fake", "bfloat16")
    session = harness.Session(pair, PROMPTS, Plan((1,), 3, 2, 0, ("int8_dynamic",)), CPU)
    session.device = gpu
    session.setup_runners()
    assert [(f.config, f.kind) for f in session.out.failures] == [("int8_dynamic", "unsupported")]


def test_not_a_causal_lm_and_missing_weights_are_invalid_models(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    from transformers import ViTConfig

    vit = tmp_path / "vit"
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(vit)
    with pytest.raises(InvalidModelError, match="not a causal LM"):
        load_model("challenger", "3", vit, CPU)
    broken = tmp_path / "broken"
    shutil.copytree(model_dirs["a"], broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(InvalidModelError, match="challenger v4"):
        load_model("challenger", "4", broken, CPU)


def test_transformers_flavor_layout_is_reassembled(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """What `mlflow.transformers.log_model` writes: MLmodel, model/, components/tokenizer/."""
    root = tmp_path / "artifacts"
    (root / "model").mkdir(parents=True)
    (root / "components" / "tokenizer").mkdir(parents=True)
    for f in model_dirs["a"].iterdir():
        dest = "components/tokenizer" if f.name.startswith("tokenizer") else "model"
        shutil.copy(f, root / dest / f.name)
    (root / "MLmodel").write_text("flavors:\n  transformers:\n    model_binary: model\n  python_function: {}\n")
    hf = hf_directory(root)
    assert (hf / "config.json").exists() and (hf / "tokenizer.json").exists()
    assert load_model("champion", "1", hf, CPU).n_params == load_model("champion", "1", model_dirs["a"], CPU).n_params
    (root / "MLmodel").write_text("flavors:\n  sklearn: {}\n")
    with pytest.raises(InvalidModelError, match="not a transformers model"):
        hf_directory(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidModelError, match="artifacts missing"):
        hf_directory(empty)


def test_cpu_fallback_and_required_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CPU fallback is not taken")
    assert choose_device("bfloat16", require_gpu=False).kind == "cpu"
    assert choose_device("bfloat16", require_gpu=False).dtype == "float32"
    with pytest.raises(GpuRequiredError, match="requires a GPU"):
        choose_device("bfloat16", require_gpu=True)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: CUDA events, allocator peaks and NVML need one"
)
def test_gpu_measurement_with_cuda_events(model_dirs: dict[str, Path]) -> None:
    device = choose_device("bfloat16", require_gpu=True)
    models = [
        load_model("challenger", "2", model_dirs["b"], device),
        load_model("champion", "1", model_dirs["a"], device),
    ]
    plan = Plan(batch_sizes=(1, 2), new_tokens=4, repetitions=2, warmups=1, configs=("eager", "static_compile"))
    m = run_plan(models, PROMPTS, plan, device)
    assert m.failures == []
    assert all(r.ttft_ms > 0 and r.reserved_bytes for r in m.records)
    assert "gpu_max_reserved_mb" in m.process
