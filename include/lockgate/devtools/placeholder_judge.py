"""The demo's placeholder judge: a seeded random-weight tiny model, built once per LOCKGATE_HOME.

A policy asks for it by name, `quality.judge.backend: placeholder` (the shipped demo policy,
include/lockgate.yaml, does), so the quality pipeline runs end to end where no judge model can
be downloaded. It carries no signal about quality; calibration against the labelled set shows
that, and the quality job then keeps its scores out of the evidence. The runtime never falls
back to it: `backend: local` without `model_path` is a configuration error.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.devtools.tiny_model import build_tiny_model

if TYPE_CHECKING:
    from lockgate.judge.backends.local import LocalJudge
    from lockgate.policy.schema import JudgeConfig

log = logging.getLogger(__name__)

PLACEHOLDER_JUDGE_SEED = 1234


def placeholder_judge_dir(home: Path) -> Path:
    """Where the seeded random-weight placeholder judge lives (built once per LOCKGATE_HOME)."""
    return home / "judge" / f"tiny-judge-seed{PLACEHOLDER_JUDGE_SEED}"


def ensure_placeholder_judge(home: Path) -> Path:
    """Build the placeholder judge if missing: a tiny random model, so the pipeline runs end to end."""
    target = placeholder_judge_dir(home)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.warning("the policy names the placeholder judge: building a random-weight model in %s", target)
    # Build beside, then rename: a concurrent task never sees half a model directory.
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    build_tiny_model(tmp, seed=PLACEHOLDER_JUDGE_SEED)
    try:
        os.rename(tmp, target)
    except OSError:
        if not (target / "config.json").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another task won the race; use its copy
    return target


def make_placeholder_judge(config: JudgeConfig, home: Path) -> LocalJudge:
    """The judge of `backend: placeholder`: the local backend on the placeholder model, labelled as such."""
    from lockgate.judge.backends.local import LocalJudge

    return LocalJudge.from_config(config, ensure_placeholder_judge(home), placeholder=True)
