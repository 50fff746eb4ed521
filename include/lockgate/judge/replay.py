"""Replay: generate a challenger's answers to sampled production prompts (GPU when present).

Used when the challenger has no live traffic. The prompts are the champion's
sampled, already redacted prompts, so the challenger answers exactly what the
champion answered and the comparison can be paired. Greedy decoding, so reruns of
a task give the same answers. A prompt the model fails on becomes an `error` row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def replay_input(prompt: str, context: str | None, tokenizer: Any) -> str:
    """The text the challenger sees: its chat template when it has one, else a plain Q/A frame."""
    user = f"Context:\n{context}\n\nQuestion:\n{prompt}" if context else prompt
    if getattr(tokenizer, "chat_template", None):
        return str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
        )
    return f"{user}\nAnswer:"


def generate_responses(
    model_dir: str | Path,
    rows: Sequence[dict[str, Any]],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    device: str = "auto",
    max_input_tokens: int = 1024,
) -> list[dict[str, Any]]:
    """One replay row per input row: {request_id, prompt, context, response, status, latency_ms}."""
    import torch

    from lockgate.judge.backends.local import pick_device
    from lockgate.models import load_hf_directory

    dev = pick_device(device)
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    model, tokenizer = load_hf_directory(model_dir, device=dev, dtype=dtype)
    limit = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    max_len = max(16, min(max_input_tokens, limit - max_new_tokens))
    tokenizer.truncation_side = "left"
    out: list[dict[str, Any]] = []
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["prompt"] or ""))
    results: dict[int, dict[str, Any]] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        texts = [replay_input(rows[i]["prompt"] or "", rows[i].get("context"), tokenizer) for i in idx]
        t0 = time.perf_counter()
        try:
            enc = tokenizer(
                texts,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_len,
                add_special_tokens=not getattr(tokenizer, "chat_template", None),
            ).to(dev)
            with torch.inference_mode():
                gen = model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            answers = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            statuses = ["ok"] * len(idx)
        except RuntimeError as exc:  # e.g. out of memory: these prompts are errors, the rest goes on
            log.warning("replay batch of %d failed: %s", len(idx), exc)
            if dev == "cuda":
                torch.cuda.empty_cache()
            answers = [""] * len(idx)
            statuses = ["error"] * len(idx)
        per_row_ms = (time.perf_counter() - t0) * 1000 / max(1, len(idx))
        for i, answer, status in zip(idx, answers, statuses, strict=True):
            row = rows[i]
            results[i] = {
                "request_id": row["request_id"],
                "prompt": row["prompt"],
                "context": row.get("context"),
                "response": answer.strip() if status == "ok" else None,
                "status": status,
                "latency_ms": round(per_row_ms, 3),
            }
        log.info("replayed %d/%d prompts", min(start + batch_size, len(order)), len(order))
    out = [results[i] for i in range(len(rows))]
    del model
    if dev == "cuda":
        torch.cuda.empty_cache()
    return out
