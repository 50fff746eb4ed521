"""The benchmark's workload: prompt lengths shaped like production traffic, and the requests built from them.

Prompt lengths are a deterministic sample of `prompt_tokens` from the inference-log
store for the model and window (`lockgate.logs.sampling.token_length_distribution`);
when the store has no rows for it, a fixed synthetic set (a seeded log-normal around
48 tokens, like short chat prompts) stands in, and the report says so.

Prompt *content* is seeded random token ids: the cost of a forward pass depends on
the number of tokens, not on which ones, and ids in the range both versions' vocab
share give each version the same input. Generation runs to the full length without
stopping at end-of-sequence (vLLM's `ignore_eos`), so every request does the same work
on both versions.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lockgate.policy.schema import CurrentWindow, LogsConfig

log = logging.getLogger(__name__)

SYNTHETIC_MEDIAN_TOKENS = 48
SYNTHETIC_SIGMA = 0.6
SYNTHETIC_RANGE = (4, 512)


@dataclass(frozen=True)
class PromptSet:
    """Prompt lengths in tokens, and where they came from."""

    lengths: tuple[int, ...]
    source: str  # "logs" or "synthetic"
    detail: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    truncated: int = 0  # lengths cut to the models' context limit

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "detail": self.detail,
            "n": len(self.lengths),
            "lengths": list(self.lengths),
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "truncated": self.truncated,
        }


def synthetic_lengths(n: int, seed: int = 0) -> list[int]:
    """A fixed, seeded set of chat-like prompt lengths (log-normal, median 48 tokens)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not cryptography
    lo, hi = SYNTHETIC_RANGE
    return [
        min(hi, max(lo, round(rng.lognormvariate(math.log(SYNTHETIC_MEDIAN_TOKENS), SYNTHETIC_SIGMA))))
        for _ in range(n)
    ]


def benchmark_window(
    window: CurrentWindow, data_interval: tuple[datetime, datetime] | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The log window whose prompt lengths shape the load: the policy's current window.

    A `data_interval` window is the DAG run's interval, widened back to `min_hours`
    (a manual run's interval is empty); outside Airflow it ends now.
    """
    if window.mode == "fixed":
        return window.start, window.end
    end = data_interval[1] if data_interval else (now or datetime.now(UTC))
    start = data_interval[0] if data_interval else end
    start = min(start, end - timedelta(hours=window.min_hours))
    return start, end


def load_prompt_lengths(
    logs_url: str,
    model_name: str,
    window: tuple[datetime, datetime],
    n: int,
    seed: int,
    logs_config: LogsConfig,
) -> PromptSet:
    """Production prompt lengths for the model and window, else the synthetic set.

    A log store without the table, or without rows for the model in the window, gives
    the synthetic set. A store that does not answer raises (the task is retried).
    """
    import sqlalchemy as sa

    from lockgate.logs.db import make_engine, safe_url
    from lockgate.logs.sampling import Window, token_length_distribution

    start, end = window
    engine = make_engine(logs_url)
    try:
        schema, _, table = logs_config.table.rpartition(".")
        if not sa.inspect(engine).has_table(table, schema=schema or None):
            return PromptSet(
                tuple(synthetic_lengths(n, seed)),
                "synthetic",
                f"the log store {safe_url(logs_url)} has no table {logs_config.table!r}",
            )
        lengths = token_length_distribution(engine, model_name, Window(start, end), n=n, seed=seed, config=logs_config)
    finally:
        engine.dispose()
    if not lengths:
        return PromptSet(
            tuple(synthetic_lengths(n, seed)),
            "synthetic",
            f"no logged prompts of {model_name!r} in [{start.isoformat()}, {end.isoformat()})",
        )
    detail = f"{len(lengths)} prompt lengths sampled from the logs of {model_name!r}"
    if len(lengths) < n:
        detail += f" (fewer than the {n} requested: the window holds no more)"
    return PromptSet(tuple(lengths), "logs", detail, start, end)


def fit_to_context(prompts: PromptSet, max_prompt_tokens: int) -> PromptSet:
    """Cut lengths to what every model can hold with the new tokens (counted in `truncated`)."""
    limit = max(1, max_prompt_tokens)
    fitted = tuple(min(max(1, n), limit) for n in prompts.lengths)
    cut = sum(1 for n in prompts.lengths if n > limit)
    if not cut:
        return prompts
    return PromptSet(fitted, prompts.source, prompts.detail, prompts.window_start, prompts.window_end, cut)


@dataclass(frozen=True)
class Request:
    """One batch: which prompts, their lengths, and the padded length of the batch."""

    index: int
    prompts: tuple[int, ...]
    lengths: tuple[int, ...]

    @property
    def batch_size(self) -> int:
        return len(self.prompts)

    @property
    def padded_len(self) -> int:
        return max(self.lengths)

    @property
    def prompt_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def padded(self) -> bool:
        return min(self.lengths) != max(self.lengths)


def build_requests(lengths: Sequence[int], batch_size: int) -> list[Request]:
    """Full batches over the prompts in sample order; the last batch wraps around to the first prompts.

    Every request holds exactly `batch_size` prompts so a static KV cache and a compiled
    graph keep one shape per batch size.
    """
    if batch_size < 1 or not lengths:
        raise ValueError("need a positive batch size and at least one prompt")
    n = len(lengths)
    count = math.ceil(n / batch_size)
    out = []
    for r in range(count):
        idx = tuple((r * batch_size + i) % n for i in range(batch_size))
        out.append(Request(r, idx, tuple(lengths[i] for i in idx)))
    return out


@dataclass
class PromptTokens:
    """Seeded random token ids for each prompt, shared by every version."""

    ids: list[list[int]] = field(default_factory=list)

    @classmethod
    def generate(cls, lengths: Sequence[int], vocab_size: int, seed: int = 0) -> PromptTokens:
        rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not cryptography
        # Stay clear of the first ids, where tokenizers keep their special tokens.
        low = min(8, max(0, vocab_size - 1))
        return cls([[rng.randrange(low, vocab_size) for _ in range(n)] for n in lengths])


def interleaved_order(roles: Sequence[str], repetition: int, request: int) -> list[str]:
    """A B for even (repetition + request), B A for odd: each side goes first equally often."""
    order = list(roles)
    if (repetition + request) % 2:
        order.reverse()
    return order
