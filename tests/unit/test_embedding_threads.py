"""How many torch threads the MiniLM encoder (and the local judge) take: `lockgate.cpu`."""

from __future__ import annotations

import os

import pytest

from lockgate import cpu, embeddings
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
    assert cpu.own_running_threads() >= 1  # the caller itself is running
    assert cpu.runnable_tasks() >= 1
    monkeypatch.setattr(cpu, "runnable_tasks", lambda: 3)
    monkeypatch.setattr(cpu, "own_running_threads", lambda: 2)
    assert cpu.busy_elsewhere() == 1.0
    monkeypatch.setattr(cpu, "own_running_threads", lambda: 0)  # counted between two reads
    assert cpu.busy_elsewhere() == 2.0
    monkeypatch.setattr(cpu, "own_running_threads", lambda: 5)
    assert cpu.busy_elsewhere() == 0.0


def test_a_task_runnable_for_an_instant_is_not_load_but_a_busy_process_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """One runnable count alone would halve the threads of a whole step for a task that ran for an instant."""
    monkeypatch.setattr(cpu, "own_running_threads", lambda: 1)
    transient = iter([2, 1, 2])
    monkeypatch.setattr(cpu, "runnable_tasks", lambda: next(transient))
    assert cpu.busy_elsewhere(interval_s=0) == 0.0
    busy = iter([2, 2, 3])
    monkeypatch.setattr(cpu, "runnable_tasks", lambda: next(busy))
    assert cpu.busy_elsewhere(interval_s=0) == 1.0


def test_thread_count_follows_other_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKGATE_EMBEDDINGS_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(cpu, "busy_elsewhere", lambda **_: 0.0)
    assert embeddings._threads() == cores
    monkeypatch.setattr(cpu, "busy_elsewhere", lambda **_: float(cores + 4))
    assert embeddings._threads() == 1


def test_torch_threads_are_restored_after_the_block() -> None:
    import torch

    before = torch.get_num_threads()
    with cpu.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
