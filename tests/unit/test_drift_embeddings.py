"""The shared MiniLM helper: shape, normalisation, offline load once, row-wise cosine."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate import embeddings


def test_cosine_similarities_row_wise() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(embeddings.cosine_similarities(a, b), [1.0, 0.0, 0.0])


def test_cosine_similarities_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        embeddings.cosine_similarities(np.zeros((2, 3)), np.zeros((3, 3)))


def test_empty_input_does_not_load_model() -> None:
    out = embeddings.embed_texts([])
    assert out.shape == (0, embeddings.EMBEDDING_DIM)


@pytest.mark.slow
def test_embed_texts_normalised_and_semantic() -> None:
    vecs = embeddings.embed_texts(["How do I reset my password?", "password reset steps", "Tomato soup recipe", ""])
    assert vecs.shape == (4, 384)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    sims = embeddings.cosine_similarities(vecs[[0, 0]], vecs[[1, 2]])
    assert sims[0] > sims[1] + 0.3
    assert embeddings.get_model() is embeddings.get_model()
