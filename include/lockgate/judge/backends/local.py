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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.errors import JudgeError
from lockgate.judge.backends.base import Progress
from lockgate.judge.rubrics import Rubric
from lockgate.judge.scoring import JudgeRequest, Judgment, judgment_from_distribution, judgment_from_text
from lockgate.settings import JudgeConfig

log = logging.getLogger(__name__)

_ANSWER_CUE = "\nAnswer:"
MIN_SHARED_PREFIX = 32  # tokens; below this the plain padded batch is as fast


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
        batch_size: int = 8,
        device: str = "auto",
        rationale: bool = False,
        rationale_max_new_tokens: int = 48,
        max_input_chars: int = 2000,
        min_score_mass: float = 0.0,
        placeholder: bool = False,
        prefix_cache: bool = True,
    ) -> None:
        import torch

        from lockgate.models import load_hf_directory

        self.path = Path(model_path).expanduser().resolve()
        self.device = pick_device(device)
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        started = time.perf_counter()
        self.model, self.tokenizer = load_hf_directory(self.path, device=self.device, dtype=dtype)
        self.batch_size = batch_size
        self.rationale = rationale
        self.rationale_max_new_tokens = rationale_max_new_tokens
        self.max_input_chars = max_input_chars
        self.min_score_mass = min_score_mass
        self.placeholder = placeholder
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self._labels: dict[str, LabelTokens] = {}
        self.prefix_cache = prefix_cache
        self._prefix_states: dict[tuple[int, ...], Any] = {}
        self._fingerprint = _fingerprint(self.path)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        log.info(
            "local judge %s (%d parameters) on %s loaded in %.1f s",
            self.path,
            self.n_params,
            self.device,
            time.perf_counter() - started,
        )

    @classmethod
    def from_config(cls, config: JudgeConfig, path: Path, placeholder: bool = False) -> LocalJudge:
        return cls(
            path,
            batch_size=config.batch_size,
            device=config.device,
            rationale=config.rationale,
            rationale_max_new_tokens=config.rationale_max_new_tokens,
            max_input_chars=config.max_input_chars,
            min_score_mass=config.min_score_mass,
            placeholder=placeholder,
        )

    @property
    def identity(self) -> str:
        return f"local:{self.path}:{self._fingerprint}"

    @property
    def description(self) -> str:
        kind = "placeholder random-weight model" if self.placeholder else "local model"
        return f"{kind} {self.path.name} ({self.n_params:,} parameters, {self.device}), next-token label distribution"

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

    def _label_probs_shared_prefix(self, texts: list[str], labels: LabelTokens) -> list[dict[str, float]] | None:
        """Score a batch whose prompts share a long token prefix (the rubric's instructions).

        The prefix goes through the model once (and is reused by later batches of the
        rubric); each row then runs only its own tokens on a copy of that cache, right
        padded, and the logits are taken at each row's last real token. Returns None
        when the batch shares too little to be worth it, or a text exceeds the context.
        """
        import copy

        import torch

        ids = [self.tokenizer.encode(t, add_special_tokens=not self._chat) for t in texts]
        longest = max(len(i) for i in ids)
        if longest > self.max_positions:
            return None
        shared = 0
        first = ids[0]
        limit = min(len(i) for i in ids) - 1  # every row keeps at least one token of its own
        while shared < limit and all(i[shared] == first[shared] for i in ids):
            shared += 1
        if shared < MIN_SHARED_PREFIX:
            return None
        state = copy.deepcopy(self._prefix_state(tuple(first[:shared])))
        state.batch_repeat_interleave(len(ids))
        rest = [i[shared:] for i in ids]
        width = max(len(r) for r in rest)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rest], device=self.device)
        own = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rest], device=self.device)
        mask = torch.cat([torch.ones((len(ids), shared), dtype=own.dtype, device=self.device), own], dim=1)
        positions = torch.arange(shared, shared + width, device=self.device).expand(len(ids), width)
        last = torch.tensor([[len(r) - 1] for r in rest], device=self.device)
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=state,
                use_cache=True,
                logits_to_keep=last,
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

    def _judge_batch(self, batch: list[JudgeRequest]) -> list[Judgment]:
        rubric = batch[0].rubric
        labels = self.label_tokens(rubric)
        texts = [self.prompt_text(r) for r in batch]
        dists = self._label_probs(texts, labels)
        out = [
            judgment_from_distribution(r.item_id, rubric, d, self.min_score_mass)
            for r, d in zip(batch, dists, strict=True)
        ]
        if self.rationale:
            self._rationales(texts, out)
        return out

    def judge(self, requests: Sequence[JudgeRequest], progress: Progress | None = None) -> list[Judgment]:
        """Batched: requests are grouped by rubric and sorted by length so padding stays small."""
        results: dict[int, Judgment] = {}
        order = sorted(range(len(requests)), key=lambda i: (requests[i].rubric.id, len(requests[i].render())))
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
                judged = self._judge_batch(batch)
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
