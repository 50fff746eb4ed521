"""Progress lines: numbered job steps, and a long encoding that reports its count as it goes."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lockgate.progress import JobSteps


def test_job_steps_are_numbered_and_timed(caplog: pytest.LogCaptureFixture) -> None:
    steps = JobSteps("drift", "support-bot", 3)
    with caplog.at_level(logging.INFO, logger="lockgate.progress"):
        for label in ("windows", "sampled", "compared", "one too many"):
            steps(label)
    said = [r.getMessage() for r in caplog.records]
    assert [m.rsplit(" (", 1)[0] for m in said] == [
        "drift support-bot step 1/3: windows",
        "drift support-bot step 2/3: sampled",
        "drift support-bot step 3/3: compared",
        "drift support-bot step 3/3: one too many",  # never past its total
    ]
    assert all(m.endswith(" s)") for m in said)


class _FakeMiniLM:
    device = "cpu"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        self.calls.append(len(texts))
        return np.full((len(texts), 384), float(len(self.calls)), dtype=np.float32)


def test_a_long_encoding_reports_its_count_and_keeps_the_order(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from lockgate import embeddings

    fake = _FakeMiniLM()
    monkeypatch.setattr(embeddings, "get_model", lambda: fake)
    with caplog.at_level(logging.INFO, logger="lockgate.progress"):
        vectors = embeddings._encode([f"text {i}" for i in range(2500)], batch_size=32)
    assert fake.calls == [1024, 1024, 452]
    assert vectors.shape == (2500, 384)
    assert vectors[0, 0] == 1 and vectors[1024, 0] == 2 and vectors[-1, 0] == 3  # chunks in order
    assert [r.getMessage() for r in caplog.records] == [
        "MiniLM: texts encoded 1024/2500",
        "MiniLM: texts encoded 2048/2500",
        "MiniLM: texts encoded 2500/2500",
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lockgate.progress"):
        assert embeddings._encode(["short"], batch_size=32).shape == (1, 384)
    assert caplog.records == []  # one chunk: nothing to report
