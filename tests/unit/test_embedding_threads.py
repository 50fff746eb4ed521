"""How many torch threads the MiniLM encoder takes."""

from __future__ import annotations

import os

import pytest

from lockgate import embeddings
from lockgate.errors import ConfigError


def test_explicit_thread_count_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_EMBEDDINGS_THREADS", "3")
    assert embeddings._threads() == 3
    for bad in ("0", "many"):  # a thread count below 1 is a mistake to name, not to round up
        monkeypatch.setenv("LOCKGATE_EMBEDDINGS_THREADS", bad)
        with pytest.raises(ConfigError, match="LOCKGATE_EMBEDDINGS_THREADS"):
            embeddings._threads()


def test_own_running_threads_are_not_load_from_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """This job's own threads (the tabular statistics beside the encoder) are not another process's load."""
    assert embeddings._own_running_threads() >= 1  # the caller itself is running
    assert embeddings._runnable_tasks() >= 1
    monkeypatch.setattr(embeddings, "_runnable_tasks", lambda: 3)
    monkeypatch.setattr(embeddings, "_own_running_threads", lambda: 2)
    assert embeddings._busy_elsewhere() == 1.0
    monkeypatch.setattr(embeddings, "_own_running_threads", lambda: 0)  # counted between two reads
    assert embeddings._busy_elsewhere() == 2.0
    monkeypatch.setattr(embeddings, "_own_running_threads", lambda: 5)
    assert embeddings._busy_elsewhere() == 0.0


def test_thread_count_follows_other_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKGATE_EMBEDDINGS_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(embeddings, "_busy_elsewhere", lambda: 0.0)
    assert embeddings._threads() == cores
    monkeypatch.setattr(embeddings, "_busy_elsewhere", lambda: float(cores + 4))
    assert embeddings._threads() == 1
