"""What the drift job compares: the catalog of columns, and the feature table built from sampled logs.

Raw prompt and response text never becomes a compared column: it is described
(descriptors) and embedded (MiniLM). That keeps hostile text out of Evidently's
HTML, which embeds its data in a `<script>` block, and avoids Evidently's text
drift (a TF-IDF domain classifier that is the slowest part of its preset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.drift.descriptors import describe_texts
from lockgate.drift.stats import ColumnKind
from lockgate.metrics import DRIFT_COLUMNS

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: ColumnKind
    group: str  # operational, prompt, response
    description: str


CATALOG: dict[str, ColumnSpec] = {
    c.name: c
    for c in (
        ColumnSpec("latency_ms", "numeric", "operational", "end-to-end latency (ms)"),
        ColumnSpec("ttft_ms", "numeric", "operational", "time to first token (ms), successful requests"),
        ColumnSpec("tokens_per_s", "numeric", "operational", "completion tokens / latency, successful requests"),
        ColumnSpec("prompt_tokens", "numeric", "operational", "prompt tokens"),
        ColumnSpec("completion_tokens", "numeric", "operational", "completion tokens"),
        ColumnSpec("status", "categorical", "operational", "request status (ok, error, timeout, ...)"),
        ColumnSpec("prompt_length", "numeric", "prompt", "prompt characters"),
        ColumnSpec("prompt_words", "numeric", "prompt", "prompt words"),
        ColumnSpec("prompt_non_letter_share", "numeric", "prompt", "share of non-letter characters in the prompt"),
        ColumnSpec("prompt_has_link", "categorical", "prompt", "prompt contains a link"),
        ColumnSpec("prompt_valid_json", "categorical", "prompt", "prompt is a JSON object or array"),
        ColumnSpec("response_length", "numeric", "response", "response characters"),
        ColumnSpec("response_words", "numeric", "response", "response words"),
        ColumnSpec(
            "response_non_letter_share", "numeric", "response", "share of non-letter characters in the response"
        ),
        ColumnSpec("response_has_link", "categorical", "response", "response contains a link"),
        ColumnSpec("response_valid_json", "categorical", "response", "response is a JSON object or array"),
        ColumnSpec("response_refusal", "categorical", "response", "response contains a refusal phrase"),
        ColumnSpec("prompt_embedding", "embedding", "prompt", "MiniLM embedding of the prompt"),
        ColumnSpec("response_embedding", "embedding", "response", "MiniLM embedding of the response"),
    )
}

EMBEDDING_SOURCES = {"prompt_embedding": "prompt", "response_embedding": "response"}

if tuple(CATALOG) != DRIFT_COLUMNS:  # pragma: no cover - a developer error, caught by the unit tests too
    raise RuntimeError("lockgate.drift.columns.CATALOG and lockgate.metrics.DRIFT_COLUMNS disagree")


def selected_columns(columns: Sequence[str] | None, embeddings: bool) -> list[ColumnSpec]:
    """The policy's columns (all by default), without embeddings when they are disabled."""
    names = list(columns) if columns else list(DRIFT_COLUMNS)
    return [CATALOG[n] for n in names if embeddings or CATALOG[n].kind != "embedding"]


def _flag_labels(values: list[bool | None]) -> list[str | None]:
    return [None if v is None else ("yes" if v else "no") for v in values]


def build_features(logs: pd.DataFrame, refusal_phrases: Sequence[str]) -> pd.DataFrame:
    """The table of compared (non-embedding) columns, one row per sampled log row.

    Numeric columns are float with NaN where a value does not exist (no TTFT or
    response on a failed request); categorical columns are strings or None.
    """
    import pandas as pd

    ok = logs["status"].astype(str) == "ok"
    latency = pd.to_numeric(logs["latency_ms"], errors="coerce").astype(float)
    completion = pd.to_numeric(logs["completion_tokens"], errors="coerce").astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        tps = completion / (latency / 1000.0)
    tps = tps.where(ok & (completion > 0) & (latency > 0))

    data: dict[str, Any] = {
        "latency_ms": latency,
        "ttft_ms": pd.to_numeric(logs["ttft_ms"], errors="coerce").astype(float).where(ok),
        "tokens_per_s": tps,
        "prompt_tokens": pd.to_numeric(logs["prompt_tokens"], errors="coerce").astype(float),
        "completion_tokens": completion,
        "status": logs["status"].astype(str).tolist(),
    }
    prompts = describe_texts(_texts(logs["prompt"]), ())
    responses = describe_texts(_texts(logs["response"]), refusal_phrases)
    for prefix, d in (("prompt", prompts), ("response", responses)):
        data[f"{prefix}_length"] = d.length
        data[f"{prefix}_words"] = d.words
        data[f"{prefix}_non_letter_share"] = d.non_letter_share
        data[f"{prefix}_has_link"] = _flag_labels(d.has_link)
        data[f"{prefix}_valid_json"] = _flag_labels(d.valid_json)
    data["response_refusal"] = _flag_labels(responses.refusal)
    frame = pd.DataFrame(data, index=logs.index)
    return frame[[c for c in DRIFT_COLUMNS if c in frame.columns]]


def _texts(series: pd.Series) -> list[str | None]:
    return [v if isinstance(v, str) else None for v in series.tolist()]
