"""What a person watching a job sees: `<job> <model> step i/N: <what> (<elapsed> s)` lines.

`lockgate run` prints them (INFO) and an Airflow task log shows them, one per step as it ends,
so a long job is never silent; a step that is long in itself (encoding thousands of texts, judging
hundreds of samples) also reports its own count as it goes.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("lockgate.progress")


class JobSteps:
    """Numbered steps of one job run; calling it logs the step that just ended."""

    def __init__(self, job: str, model_name: str, total: int) -> None:
        self.job = job
        self.model_name = model_name
        self.total = max(1, total)
        self.done = 0
        self._started = time.perf_counter()

    def __call__(self, label: str) -> None:
        self.done = min(self.done + 1, self.total)
        elapsed = time.perf_counter() - self._started
        log.info("%s %s step %d/%d: %s (%.1f s)", self.job, self.model_name, self.done, self.total, label, elapsed)


def count_progress(what: str, done: int, total: int) -> None:
    """`<what> <done>/<total>`: the inside of a long step."""
    log.info("%s %d/%d", what, done, total)
