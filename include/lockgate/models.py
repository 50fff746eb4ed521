"""Model versions without a hub: tiny Llama-architecture causal LMs built locally, and their registration.

The demo and the tests download no model (they must run where no model hub can be
reached), so they build their own: a byte-level BPE tokenizer trained on a small local corpus, and a
`LlamaForCausalLM` with random weights from a config. The same code builds a
100M+ parameter model for GPU measurements (`--hidden 768 --layers 12`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from lockgate.errors import InvalidModelError

log = logging.getLogger(__name__)

_CORPUS = [
    "Why was I charged twice for my subscription this month?",
    "Refunds are issued to the original payment method within five business days.",
    "Where is my parcel? The tracking page has not changed for three days.",
    "How do I enable two-factor authentication on my account?",
    "The search API returns a next_cursor field; pass it back to fetch the next page.",
    "Can I bring my bicycle on a flight to Lisbon?",
    "I'm sorry, but I can't help with that request.",
    "Score the answer from 1 to 5. Relevance: 5 Faithfulness: 4 Safe: yes Refusal: no",
    "Answer A is better. Answer B is better. Both are equally good.",
    '{"answer": "ok", "topic": "billing", "score": 3}',
    "The quick brown fox jumps over the lazy dog 0123456789.",
]


def build_tokenizer(out_dir: Path, vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer trained here, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",  # noqa: S106 - special tokens, not passwords
        eos_token="</s>",  # noqa: S106
        pad_token="<pad>",  # noqa: S106
        padding_side="left",
    )
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    vocab_size: int = 512,
    max_positions: int = 2048,
) -> Path:
    """Write a random-weight Llama causal LM and its tokenizer to `out_dir` (HF layout).

    Same seed and shape, same weights: the demo's versions are reproducible.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden % heads:
        raise InvalidModelError(f"hidden size {hidden} is not divisible by {heads} heads")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out, vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4 if hidden < 512 else int(hidden * 8 / 3) // 64 * 64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or max(1, heads // 2),
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("built %s: Llama %d layers x %d hidden, %d parameters", out, layers, hidden, n_params)
    return out


def native_bfloat16(device: str) -> bool:
    """Whether bfloat16 runs natively here: a CUDA device that supports it, or a CPU with AVX512-BF16/AMX.

    Elsewhere bfloat16 is emulated and slower than float32.
    """
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


def load_hf_directory(path: str | Path, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """Model and tokenizer from a Hugging Face directory; a clear error when it is not a causal LM."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not (p / "config.json").exists():
        raise InvalidModelError(f"{p} has no config.json: not a Hugging Face model directory")
    try:
        config = AutoConfig.from_pretrained(p)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad config
        raise InvalidModelError(f"cannot read the model config in {p}: {exc}") from None
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise InvalidModelError(f"{p} holds a {config.model_type!r} model, which is not a causal LM")
    try:
        tokenizer = AutoTokenizer.from_pretrained(p)
        kwargs = {"dtype": dtype} if dtype is not None else {}
        model: Any = AutoModelForCausalLM.from_pretrained(p, **kwargs)
    except (OSError, ValueError) as exc:  # transformers 5 raises ValueError for a missing tokenizer
        raise InvalidModelError(f"missing or unreadable model artifacts in {p}: {exc}") from None
    model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def register_model(name: str, path: str | Path, alias: str | None = None, tracking_uri: str | None = None) -> str:
    """Log a HF directory as an MLflow transformers model, register it, optionally alias it.

    Returns the new version as a string. The model and tokenizer objects are passed
    (the directory form fails with transformers 5) with explicit pip requirements
    (else MLflow infers torchvision, which is not installed).
    """
    import mlflow
    import torch
    import transformers

    from lockgate.registry.client import ensure_experiment
    from lockgate.settings import resolve_mlflow_uri

    uri = tracking_uri or resolve_mlflow_uri()
    model, tokenizer = load_hf_directory(path)
    ensure_experiment(f"lockgate/{name}", uri)
    with mlflow.start_run(run_name=f"register-{name}") as run:
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer},
            name="model",
            task="text-generation",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}"],
            registered_model_name=name,
        )
        mlflow.set_tag("lockgate.source_path", str(Path(path).resolve()))
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_model_version_tag(name, version, "lockgate.status", "evaluating")
    client.set_model_version_tag(name, version, "lockgate.source_path", str(Path(path).resolve()))
    if alias:
        client.set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s (run %s)%s", name, version, run.info.run_id, f" as {alias}" if alias else "")
    return version


def cmd_build_tiny(args: argparse.Namespace) -> int:
    out = build_tiny_model(args.dir, seed=args.seed, hidden=args.hidden, layers=args.layers, heads=args.heads)
    print(f"built a tiny Llama causal LM in {out}")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    version = register_model(args.name, args.path, alias=args.alias)
    print(f"registered {args.name} version {version}" + (f" with alias {args.alias}" if args.alias else ""))
    return 0
