"""The embedding cache: texts met before are not encoded again, and a broken cache only costs time."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from lockgate import embeddings


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace MiniLM by a deterministic encoder and record what it was asked to encode."""
    calls: list[list[str]] = []

    def fake_encode(texts: list[str], batch_size: int) -> np.ndarray:
        calls.append(list(texts))
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=embeddings.EMBEDDING_DIM) for t in texts]
        return np.asarray([r / np.linalg.norm(r) for r in rows], dtype=np.float32)

    monkeypatch.setattr(embeddings, "_encode", fake_encode)
    return calls


def test_known_texts_come_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoded: list[list[str]]
) -> None:
    monkeypatch.setenv("LOCKGATE_EMBEDDINGS_CACHE", str(tmp_path / "cache.sqlite"))
    first = embeddings.embed_texts(["a", "b", "a", None])  # type: ignore[list-item]
    assert encoded == [["a", "b", ""]]  # each distinct text once; None is the empty text
    assert first.shape == (4, embeddings.EMBEDDING_DIM) and first.dtype == np.float32
    np.testing.assert_array_equal(first[0], first[2])

    again = embeddings.embed_texts(["b", "c", "a"])
    assert encoded[1:] == [["c"]]
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[2], first[0])

    embeddings.embed_texts(["a", "b", "c"])
    assert len(encoded) == 2  # all cached: the model is not called


def test_default_cache_lives_under_lockgate_home(lockgate_env: Path, encoded: list[list[str]]) -> None:
    embeddings.embed_texts(["x"])
    assert (lockgate_env / "cache" / f"{embeddings.MODEL_NAME}.sqlite").is_file()


def test_cache_off_encodes_every_time(monkeypatch: pytest.MonkeyPatch, encoded: list[list[str]]) -> None:
    monkeypatch.setenv("LOCKGATE_EMBEDDINGS_CACHE", "off")
    embeddings.embed_texts(["x"])
    embeddings.embed_texts(["x"])
    assert encoded == [["x"], ["x"]]


def test_unusable_cache_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoded: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "cache.sqlite"
    broken.write_bytes(b"this is not a SQLite database" * 100)
    monkeypatch.setenv("LOCKGATE_EMBEDDINGS_CACHE", str(broken))
    with caplog.at_level(logging.WARNING, logger="lockgate.embeddings"):
        vectors = embeddings.embed_texts(["x", "y"])
    assert vectors.shape == (2, embeddings.EMBEDDING_DIM)
    assert encoded == [["x", "y"]]
    assert "not read" in caplog.text and "not written" in caplog.text


def test_cache_keeps_the_newest_rows(tmp_path: Path, encoded: list[list[str]]) -> None:
    cache = embeddings.EmbeddingCache(tmp_path / "small.sqlite", max_rows=3)
    vectors = {t: np.full(embeddings.EMBEDDING_DIM, i, dtype=np.float32) for i, t in enumerate("abcde")}
    cache.put(vectors)
    assert set(cache.get(list("abcde"))) == {"c", "d", "e"}
    np.testing.assert_array_equal(cache.get(["e"])["e"], vectors["e"])


def test_cache_in_a_folder_that_cannot_be_created_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoded: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LOCKGATE_EMBEDDINGS_CACHE", str(blocker / "cache.sqlite"))
    with caplog.at_level(logging.WARNING, logger="lockgate.embeddings"):
        assert embeddings.embed_texts(["x"]).shape == (1, embeddings.EMBEDDING_DIM)
    assert "not read" in caplog.text and "not written" in caplog.text
