"""A local transformers causal LM as judge, scored from its next-token distribution.

Instead of generating an answer and parsing it (one sample at a time, many decode
steps), the judge prompt of many samples goes through one batched forward pass,
and the probabilities of the rubric's label tokens at the last position give the
expected score and a confidence. The rubric's instructions, the same tokens for
every sample, are run once and their KV cache is shared by every batch of that
rubric, so each sample only pays for its own text. A short rationale can be generated afterwards,
still in batches. On a machine with CUDA the model runs there in bfloat16.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.errors import JudgeError
from lockgate.judge.backends.base import Progress
from lockgate.judge.rubrics import Rubric
from lockgate.judge.scoring import JudgeRequest, Judgment, judgment_from_distribution, judgment_from_text
from lockgate.models import native_bfloat16
from lockgate.policy.schema import JudgeConfig

log = logging.getLogger(__name__)

_ANSWER_CUE = "\nAnswer:"
MIN_SHARED_PREFIX = 32  # tokens; below this the plain padded batch is as fast
# Tokenizing the shared instructions once: worth it from this many texts and characters.
SPLIT_MIN_TEXTS = 8
SPLIT_MIN_CHARS = 200
# First characters of every kind that can follow the instructions' last line break.
SPLIT_PROBES = (
    "Can I", "can", " leading space", "  two", "\tTab", "\nNewline", "\r\nCRLF", "\n\n", "7 days", "'quote'",
    '"double"', "(paren", "[END]", "<b>", "-dash", ".dot", "_under", "Élan", "日本語", "😀 emoji", "\u0301accent",
    "\u00a0nbsp", "",
)  # fmt: skip
# Decoder layers whose forward is input norm -> (q, k, v, optional q/k norm, rotary) attention ->
# o_proj -> residual -> post-attention norm -> MLP -> residual, as in transformers' Llama.
LAST_POSITION_LAYERS = frozenset({"LlamaDecoderLayer", "MistralDecoderLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer"})


@dataclass(frozen=True)
class LabelTokens:
    """How a rubric's labels follow the judge prompt: the suffix appended, and each label's first token."""

    suffix: str
    token_ids: dict[str, int]
    single_token: bool


def _fingerprint(path: Path) -> str:
    """Config plus weight file names and sizes: changes when the judge's weights change."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin") or f.name.startswith("tokenizer")):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.name == "config.json":
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


def pick_dtype(requested: str, device: str) -> str:
    """auto: bfloat16 where it is native (GPUs, recent x86 CPUs), else float32 (emulated bf16 is slower)."""
    if requested == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return requested


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise JudgeError("judge.device is 'cuda' but no CUDA device is available")
    return requested


class LocalJudge:
    """A Hugging Face causal LM directory used as a batched judge."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        batch_size: int = 32,
        device: str = "auto",
        dtype: str = "auto",
        rationale: bool = False,
        rationale_max_new_tokens: int = 48,
        max_input_chars: int = 2000,
        min_score_mass: float = 0.0,
        placeholder: bool = False,
        prefix_cache: bool = True,
        threads: int | None = None,
    ) -> None:
        import torch

        from lockgate.models import load_hf_directory

        self.path = Path(model_path).expanduser().resolve()
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        started = time.perf_counter()
        self.model, self.tokenizer = load_hf_directory(self.path, device=self.device, dtype=getattr(torch, self.dtype))
        self.batch_size = batch_size
        self.rationale = rationale
        self.rationale_max_new_tokens = rationale_max_new_tokens
        self.max_input_chars = max_input_chars
        self.min_score_mass = min_score_mass
        self.placeholder = placeholder
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self._labels: dict[str, LabelTokens] = {}
        self.prefix_cache = prefix_cache
        self.threads = threads
        self._prefix_states: dict[tuple[int, ...], Any] = {}
        self._known_ids: dict[str, list[int]] = {}
        self._split_checked: dict[str, list[int] | None] = {}
        self.last_position_forward = _supports_last_position_forward(self.model)
        self._fingerprint = _fingerprint(self.path)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        log.info(
            "local judge %s (%d parameters) on %s in %s loaded in %.1f s; last-position forward: %s",
            self.path,
            self.n_params,
            self.device,
            self.dtype,
            time.perf_counter() - started,
            self.last_position_forward,
        )

    @classmethod
    def from_config(cls, config: JudgeConfig, path: Path, placeholder: bool = False) -> LocalJudge:
        return cls(
            path,
            batch_size=config.batch_size,
            device=config.device,
            dtype=config.dtype,
            rationale=config.rationale,
            rationale_max_new_tokens=config.rationale_max_new_tokens,
            max_input_chars=config.max_input_chars,
            min_score_mass=config.min_score_mass,
            placeholder=placeholder,
            threads=config.threads,
        )

    @property
    def identity(self) -> str:
        # The dtype changes the scores a little, so it is part of what calibration was measured on.
        return f"local:{self.path}:{self._fingerprint}:{self.dtype}"

    @property
    def description(self) -> str:
        kind = "placeholder random-weight model" if self.placeholder else "local model"
        return (
            f"{kind} {self.path.name} ({self.n_params:,} parameters, {self.device}, {self.dtype}), "
            "next-token label distribution"
        )

    def close(self) -> None:
        self._prefix_states.clear()
        self.model = None
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ prompts

    @property
    def _chat(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def _prefix(self, text: str) -> str:
        if self._chat:
            out = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
            return str(out)
        return text.rstrip("\n")

    def label_tokens(self, rubric: Rubric) -> LabelTokens:
        """The first token of each label as it would follow the prompt; labels must differ in it.

        Tokenizers split " 2" and "2" differently (byte-level BPE, SentencePiece digits),
        so each way of ending the prompt is tried: labels that are one token each are
        best, labels that at least start with distinct tokens are accepted.
        """
        if rubric.id in self._labels:
            return self._labels[rubric.id]
        base = self._prefix("Rate this.")
        options = (
            [("", ""), ("", " ")] if self._chat else [(_ANSWER_CUE, " "), (_ANSWER_CUE + " ", ""), (_ANSWER_CUE, "")]
        )
        found: list[LabelTokens] = []
        for suffix, sep in options:
            probe = base + suffix
            probe_ids = self.tokenizer.encode(probe, add_special_tokens=False)
            ids: dict[str, int] = {}
            single = True
            for label in rubric.labels:
                full = self.tokenizer.encode(probe + sep + label, add_special_tokens=False)
                if full[: len(probe_ids)] != probe_ids or len(full) <= len(probe_ids):
                    break
                ids[label] = full[len(probe_ids)]
                single = single and len(full) == len(probe_ids) + 1
            if len(ids) == len(rubric.labels) and len(set(ids.values())) == len(ids):
                found.append(LabelTokens(suffix=suffix, token_ids=ids, single_token=single))
        if not found:
            raise JudgeError(f"the judge's tokenizer cannot tell the labels of {rubric.id} apart: {rubric.labels}")
        best = next((f for f in found if f.single_token), found[0])
        self._labels[rubric.id] = best
        return best

    def prompt_text(self, request: JudgeRequest) -> str:
        return self._prefix(request.render(self.max_input_chars)) + self.label_tokens(request.rubric).suffix

    # ------------------------------------------------------------------ scoring

    def _encode(self, texts: list[str], room: int = 0) -> Any:
        self.tokenizer.truncation_side = "left"  # keep the end: the question and the answer cue
        enc = self.tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max(16, self.max_positions - 1 - room),
            add_special_tokens=not self._chat,
        )
        return enc.to(self.device)

    def _label_probs(self, texts: list[str], labels: LabelTokens) -> list[dict[str, float]]:
        """Label probabilities at the last position of each text (shared-prefix path when possible)."""
        if self.prefix_cache and len(texts) > 1:
            try:
                probs = self._label_probs_shared_prefix(texts, labels)
            except Exception as exc:  # noqa: BLE001 - a model whose cache API differs: plain batches still work
                log.warning("shared-prefix scoring unavailable for this model (%s); using padded batches", exc)
                self.prefix_cache = False
            else:
                if probs is not None:
                    return probs
        return self._label_probs_padded(texts, labels)

    def _pick(self, logits: Any, labels: LabelTokens) -> list[dict[str, float]]:
        import torch

        probs = torch.softmax(logits.float(), dim=-1)
        order = list(labels.token_ids)
        picked = probs[:, [labels.token_ids[label] for label in order]].cpu().tolist()
        return [dict(zip(order, row, strict=True)) for row in picked]

    def _label_probs_padded(self, texts: list[str], labels: LabelTokens) -> list[dict[str, float]]:
        import torch

        enc = self._encode(texts)
        mask = enc["attention_mask"]
        # Left padding: positions must count real tokens only, as generate() does.
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(
                input_ids=enc["input_ids"], attention_mask=mask, position_ids=position_ids, logits_to_keep=1
            )
        return self._pick(out.logits[:, -1, :], labels)

    def _prefix_state(self, prefix: tuple[int, ...]) -> Any:
        """The KV cache of a token prefix at batch size 1, computed once per rubric and kept."""
        import torch

        if prefix not in self._prefix_states:
            if len(self._prefix_states) >= 8:
                self._prefix_states.pop(next(iter(self._prefix_states)))
            ids = torch.tensor([prefix], device=self.device)
            with torch.inference_mode():
                out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            self._prefix_states[prefix] = out.past_key_values
        return self._prefix_states[prefix]

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, as `tokenizer(texts)` gives them (those of this `judge()` call are known)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._known_ids]
        found = dict(zip(missing, self._tokenize(missing), strict=True)) if missing else {}
        return [self._known_ids[t] if t in self._known_ids else found[t] for t in texts]

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, as `tokenizer(texts)["input_ids"]` gives them.

        The rubric's instructions, the same characters at the start of every text, are tokenized
        once, and only what follows them per text, where this tokenizer is shown to split there
        (`_split_after`); otherwise every text whole.
        """
        head = self._shared_head(texts)
        head_ids = self._split_after(head) if head else None
        if head is None or head_ids is None:
            return self._tokenize_each(texts, special=True)
        split = [head_ids + ids for ids in self._tokenize_each([t[len(head) :] for t in texts], special=False)]
        if self._tokenize_each(texts[:1], special=True)[0] != split[0]:  # a last check on a real text
            self._split_checked[head] = None
            return self._tokenize_each(texts, special=True)
        return split

    @staticmethod
    def _shared_head(texts: list[str]) -> str | None:
        """The texts' common start up to and with its last line break, when it is long enough to matter."""
        if len(texts) < SPLIT_MIN_TEXTS:
            return None
        common = os.path.commonprefix(texts)
        cut = common.rfind("\n") + 1
        return common[:cut] if cut >= SPLIT_MIN_CHARS else None

    def _split_after(self, head: str) -> list[int] | None:
        """`head`'s token ids when text after it tokenizes the same alone as after `head`, else None.

        Checked once per head with continuations of every kind of first character (a pre-tokenizer
        decides a boundary from the character after it): a tokenizer that merges across the line
        break, marks the start of a text (SentencePiece's leading space) or appends a special token
        fails a probe and tokenizes every text whole.
        """
        if head not in self._split_checked:
            head_ids = self._tokenize_each([head], special=True)[0]
            whole = self._tokenize_each([head + p for p in SPLIT_PROBES], special=True)
            alone = self._tokenize_each(list(SPLIT_PROBES), special=False)
            fits = all(w == head_ids + a for w, a in zip(whole, alone, strict=True))
            self._split_checked[head] = head_ids if fits else None
        return self._split_checked[head]

    def _tokenize_each(self, texts: list[str], special: bool) -> list[list[int]]:
        """One batched call to the Rust tokenizer, without the character offsets nobody reads here."""
        add_special = special and not self._chat
        backend: Any = getattr(self.tokenizer, "backend_tokenizer", None)
        fast = getattr(backend, "encode_batch_fast", None)
        if fast is not None:
            # transformers leaves the padding and truncation of its last call set on the backend
            backend.no_padding()
            backend.no_truncation()
            return [e.ids for e in fast(texts, add_special_tokens=add_special)]
        return [list(i) for i in self.tokenizer(texts, add_special_tokens=add_special)["input_ids"]]

    def _label_probs_shared_prefix(self, texts: list[str], labels: LabelTokens) -> list[dict[str, float]] | None:
        """Score a batch whose prompts share a long token prefix (the rubric's instructions).

        The prefix goes through the model once (and is reused by later batches of the
        rubric); each row then runs only its own tokens on a copy of that cache, right
        padded, and the logits are taken at each row's last real token. Returns None
        when the batch shares too little to be worth it, or a text exceeds the context.
        """
        import copy

        import torch

        ids = self._token_ids(texts)
        longest = max(len(i) for i in ids)
        if longest > self.max_positions:
            return None
        first = ids[0]
        # every row keeps at least one token of its own; the common prefix of the lexicographic
        # smallest and largest rows is that of all rows
        shared = min(len(os.path.commonprefix(ids)), min(len(i) for i in ids) - 1)
        if shared < MIN_SHARED_PREFIX:
            return None

        def prefix_state() -> Any:
            state = copy.deepcopy(self._prefix_state(tuple(first[:shared])))
            state.batch_repeat_interleave(len(ids))
            return state

        rest = [i[shared:] for i in ids]
        width = max(len(r) for r in rest)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = _right_padded(rest, width, pad).to(self.device)
        last = torch.tensor([len(r) - 1 for r in rest], device=self.device)
        if self.last_position_forward and _window_allows(self.model, shared + width):
            try:
                # reads the shared prefix's cache, never extends it: no per-batch copy
                logits = _last_position_logits(
                    self.model, input_ids, last, shared, self._prefix_state(tuple(first[:shared]))
                )
            except Exception as exc:  # noqa: BLE001 - a layer that differs after all: the model's own forward
                log.warning("last-position forward unavailable for this model (%s); using its own forward", exc)
                self.last_position_forward = False
            else:
                return self._pick(logits, labels)
        state = prefix_state()
        own = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rest], device=self.device)
        mask = torch.cat([torch.ones((len(ids), shared), dtype=own.dtype, device=self.device), own], dim=1)
        positions = torch.arange(shared, shared + width, device=self.device).expand(len(ids), width)
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=state,
                use_cache=True,
                logits_to_keep=last[:, None],
            )
        return self._pick(out.logits[:, -1, :], labels)

    def _rationales(self, texts: list[str], judgments: list[Judgment]) -> None:
        import torch

        prompts = [f"{t} {j.label}\nReason:" for t, j in zip(texts, judgments, strict=True) if j.scored]
        targets = [j for j in judgments if j.scored]
        if not prompts:
            return
        enc = self._encode(prompts, room=self.rationale_max_new_tokens)
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=self.rationale_max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        for j, text in zip(targets, self.tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
            j.rationale = text.strip().split("\n", 1)[0][:300] or None

    def _judge_batch(self, batch: list[JudgeRequest], texts: list[str] | None = None) -> list[Judgment]:
        rubric = batch[0].rubric
        labels = self.label_tokens(rubric)
        texts = texts if texts is not None else [self.prompt_text(r) for r in batch]
        dists = self._label_probs(texts, labels)
        out = [
            judgment_from_distribution(r.item_id, rubric, d, self.min_score_mass)
            for r, d in zip(batch, dists, strict=True)
        ]
        if self.rationale:
            self._rationales(texts, out)
        return out

    def judge(self, requests: Sequence[JudgeRequest], progress: Progress | None = None) -> list[Judgment]:
        """Batched: requests are grouped by rubric and sorted by token count so padding stays small.

        Every prompt is tokenized up front in one call (the Rust tokenizer runs it on all cores).
        """
        from lockgate.cpu import free_cores, torch_threads

        texts = [self.prompt_text(r) for r in requests]
        self._known_ids = dict(zip(texts, self._tokenize(texts), strict=True)) if texts else {}
        # On a CPU, the cores other processes leave free (lockgate.cpu): batched passes on contended
        # cores wait on their slowest thread.
        threads: AbstractContextManager[None] = (
            torch_threads(self.threads or free_cores()) if self.device == "cpu" else nullcontext()
        )
        try:
            with threads:
                return self._judge_sorted(requests, texts, progress)
        finally:
            self._known_ids = {}

    def _judge_sorted(
        self, requests: Sequence[JudgeRequest], texts: list[str], progress: Progress | None
    ) -> list[Judgment]:
        results: dict[int, Judgment] = {}
        order = sorted(range(len(requests)), key=lambda i: (requests[i].rubric.id, len(self._known_ids[texts[i]])))
        batches: list[list[int]] = []
        for i in order:
            if (
                batches
                and len(batches[-1]) < self.batch_size
                and (requests[batches[-1][0]].rubric.id == requests[i].rubric.id)
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        done = 0
        for idx in batches:
            batch = [requests[i] for i in idx]
            try:
                judged = self._judge_batch(batch, [texts[i] for i in idx])
            except JudgeError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory: retry one by one below
                log.warning("judge batch of %d failed (%s); retrying one by one", len(batch), exc)
                self._free()
                judged = [self._judge_single(r) for r in batch]
            for i, j in zip(idx, judged, strict=True):
                results[i] = j
            done += len(idx)
            if progress:
                progress(done, len(requests))
        return [results[i] for i in range(len(requests))]

    def _judge_single(self, request: JudgeRequest) -> Judgment:
        try:
            return self._judge_batch([request])[0]
        except JudgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - one sample the model cannot score is unscored
            self._free()
            detail = f"{type(exc).__name__}: {exc}"
            return Judgment.unscored(request.item_id, request.rubric.id, "backend_error", detail)

    def _free(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ baseline

    def judge_by_generation(self, request: JudgeRequest, max_new_tokens: int = 8) -> Judgment:
        """The usual way, for comparison: generate the answer for one sample, then parse it."""
        import torch

        text = self._prefix(request.render(self.max_input_chars)) + ("" if self._chat else _ANSWER_CUE)
        enc = self._encode([text], room=max_new_tokens)
        with torch.inference_mode():
            out = self.model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id
            )
        answer = self.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        return judgment_from_text(request.item_id, request.rubric, answer)


# ---------------------------------------------------------------------- last-position forward


def _supports_last_position_forward(model: Any) -> bool:
    """A Llama-family causal LM whose layers `_last_position_logits` can drive."""
    core = getattr(model, "model", None)
    layers = getattr(core, "layers", None)
    needed = ("embed_tokens", "rotary_emb", "norm")
    if not layers or not all(hasattr(core, a) for a in needed) or not hasattr(model, "lm_head"):
        return False
    config = model.config
    if getattr(config, "num_hidden_layers", len(layers)) != len(layers):
        return False
    for layer in layers:
        attn = getattr(layer, "self_attn", None)
        if type(layer).__name__ not in LAST_POSITION_LAYERS or attn is None:
            return False
        if not all(hasattr(attn, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")):
            return False
    return True


def _window_allows(model: Any, length: int) -> bool:
    """False when a sliding attention window is shorter than the sequence (the mask here is plain causal)."""
    windows = [getattr(layer.self_attn, "sliding_window", None) for layer in model.model.layers]
    if type(model.model.layers[0]).__name__ == "MistralDecoderLayer":
        windows.append(getattr(model.config, "sliding_window", None))
    return all(w is None or w >= length for w in windows)


def _right_padded(rows: list[list[int]], width: int, pad: int) -> Any:
    """Token ids as one (rows, width) tensor, each row padded on the right (numpy fills it ~8x faster
    than `torch.tensor` reads nested lists)."""
    import numpy as np
    import torch

    grid = np.full((len(rows), width), pad, dtype=np.int64)
    for line, ids in zip(grid, rows, strict=True):
        line[: len(ids)] = ids
    return torch.from_numpy(grid)


def _rotate_half(x: Any) -> Any:
    import torch

    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _heads(attn: Any, x: Any, which: str, cos: Any = None, sin: Any = None) -> Any:
    """Queries, keys or values of `x` as (batch, heads, length, head_dim), normed and rotated as the model does."""
    out = getattr(attn, f"{which}_proj")(x).view(*x.shape[:-1], -1, attn.head_dim)
    norm = getattr(attn, f"{which}_norm", None)  # Qwen3 normalises each head's queries and keys
    if norm is not None:
        out = norm(out)
    out = out.transpose(1, 2)
    if cos is not None:
        out = out * cos.unsqueeze(1) + _rotate_half(out) * sin.unsqueeze(1)
    return out


def _flash_cpu() -> Any:
    """PyTorch's CPU flash-attention kernel, which also returns the log-sum-exp of each query's scores.

    `F.scaled_dot_product_attention` runs the same kernel but drops the log-sum-exp, without which
    two partial attentions (over the shared prefix, over a row's own tokens) cannot be merged.
    None where this build of PyTorch lacks it: the concatenated path serves then.
    """
    import torch

    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _repeat_kv(x: Any, heads: int) -> Any:
    """Keys or values with one copy per query head (grouped-query attention)."""
    groups = heads // x.shape[1]
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def _attend_split(
    query: Any, keys: Any, values: Any, prefix: tuple[Any, Any], own_mask: Any, scale: float, flash: Any
) -> Any:
    """Attention of each row's queries over the shared prefix and the row's own tokens, in two parts.

    The prefix's keys are the same for every row, so all rows' queries (and, under grouped-query
    attention, all query heads of a key head) attend to them in one call at batch size 1: no
    per-row or per-head copy of the prefix, no mask. Each row's own tokens are attended to under
    the causal mask (or `own_mask`), and the two parts are merged exactly through their
    log-sum-exps: the same softmax as over the concatenated keys.
    """
    import torch

    batch, heads, length, dim = query.shape
    kv_heads = prefix[0].shape[1]
    groups = heads // kv_heads
    # query head h reads key head h // groups (transformers' repeat_kv), so the query heads of one
    # key head are consecutive: fold them, with the rows, into one long query sequence per key head
    folded = query.view(batch, kv_heads, groups, length, dim).permute(1, 2, 0, 3, 4)
    folded = folded.reshape(1, kv_heads, groups * batch * length, dim)
    on_prefix, lse_prefix = flash(folded, prefix[0], prefix[1], 0.0, False, scale=scale)
    on_prefix = on_prefix.view(kv_heads, groups, batch, length, dim).permute(2, 0, 1, 3, 4)
    on_prefix = on_prefix.reshape(batch, heads, length, dim)
    lse_prefix = lse_prefix.view(kv_heads, groups, batch, length).permute(2, 0, 1, 3).reshape(batch, heads, length)
    keys, values = _repeat_kv(keys, heads), _repeat_kv(values, heads)
    if own_mask is None:
        on_own, lse_own = flash(query, keys, values, 0.0, True, scale=scale)
    else:
        on_own, lse_own = flash(query, keys, values, 0.0, False, attn_mask=own_mask, scale=scale)
    # softmax over both parts = own + w * (prefix - own), w = the prefix part's share of the mass
    share = torch.sigmoid(lse_prefix - lse_own).unsqueeze(-1)
    return torch.lerp(on_own.float(), on_prefix.float(), share).to(query.dtype)


def _attend_concat(query: Any, keys: Any, values: Any, prefix: tuple[Any, Any], own_mask: Any, scale: float) -> Any:
    """The same attention through the public kernel: the prefix copied per row, one additive mask."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - the usual name

    batch, _, length, _ = query.shape
    past, width = prefix[0].shape[-2], keys.shape[-2]
    keys = torch.cat([prefix[0].expand(batch, -1, -1, -1), keys], dim=-2)
    values = torch.cat([prefix[1].expand(batch, -1, -1, -1), values], dim=-2)
    if own_mask is None:
        causal = torch.ones(width, width, dtype=torch.bool, device=query.device).tril()
        own_mask = _additive_mask(causal, query.dtype)[None, None]
    mask = torch.cat([own_mask.new_zeros((*own_mask.shape[:-1], past)), own_mask], dim=-1)
    mask = mask.expand(batch, 1, length, past + width)
    return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=scale, enable_gqa=True)


def _additive_mask(allowed: Any, dtype: Any) -> Any:
    """An attention mask to add to the scores: 0 where `allowed`, the dtype's lowest value elsewhere."""
    import torch

    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def _prefix_layer(cache: Any, index: int) -> tuple[Any, Any]:
    """The cached prefix's keys and values of one layer, (1, kv_heads, prefix, head_dim) each."""
    layer = cache.layers[index]
    return layer.keys, layer.values


def _last_position_logits(model: Any, input_ids: Any, last: Any, past: int, cache: Any) -> Any:
    """Next-token logits at position `last[b]` of each right-padded row, after the `past` tokens of `cache`.

    `cache` holds the shared prefix at batch size 1 and is only read. Every layer but the last
    runs on all positions (their keys and values feed the next layer); the last layer computes
    keys and values for all positions but its query, attention output and MLP only at each row's
    last real token. Right padding needs no padding mask in the other layers: under the causal
    mask a real token never sees the padding after it.
    """
    import torch

    core = model.model
    batch, width = input_ids.shape
    device = input_ids.device
    rows = torch.arange(batch, device=device)
    flash = _flash_cpu() if device.type == "cpu" else None
    with torch.inference_mode():
        hidden = core.embed_tokens(input_ids)
        positions = torch.arange(past, past + width, device=device).expand(batch, width)
        cos, sin = core.rotary_emb(hidden, position_ids=positions)
        final = len(core.layers) - 1
        for index, layer in enumerate(core.layers):
            attn = layer.self_attn
            normed = layer.input_layernorm(hidden)
            keys, values = _heads(attn, normed, "k", cos, sin), _heads(attn, normed, "v")
            own_mask = None
            if index == final:
                hidden = hidden[rows, last][:, None]
                at_last = (normed[rows, last][:, None], cos[rows, last][:, None], sin[rows, last][:, None])
                query = _heads(attn, at_last[0], "q", at_last[1], at_last[2])
                allowed = torch.arange(width, device=device)[None, :] <= last[:, None]
                own_mask = _additive_mask(allowed, query.dtype)[:, None, None, :]
            else:
                query = _heads(attn, normed, "q", cos, sin)
            prefix = _prefix_layer(cache, attn.layer_idx)
            if flash is not None:
                context = _attend_split(query, keys, values, prefix, own_mask, attn.scaling, flash)
            else:
                context = _attend_concat(query, keys, values, prefix, own_mask, attn.scaling)
            hidden = hidden + attn.o_proj(context.transpose(1, 2).reshape(*hidden.shape[:2], -1))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return model.lm_head(core.norm(hidden))[:, 0]
