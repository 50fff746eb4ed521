"""Tiny Llama-architecture causal LMs built locally: the demo's and the tests' model versions.

No model can be downloaded on the demo's and CI's machines, so they build their own: a
byte-level BPE tokenizer trained on a small local corpus, and a `LlamaForCausalLM` with random
weights from a config. The same code builds a 100M+ parameter model for GPU measurements
(`lockgate models build-tiny --hidden 768 --layers 12`). Register a built directory with
`lockgate models register` (`lockgate.models`), as any other model.
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


def cmd_build_tiny(args: argparse.Namespace) -> int:
    out = build_tiny_model(args.dir, seed=args.seed, hidden=args.hidden, layers=args.layers, heads=args.heads)
    print(f"built a tiny Llama causal LM in {out}")
    return 0
