"""The one interface every judge backend implements, and the factory the policy picks from."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from lockgate.judge.scoring import JudgeRequest, Judgment
from lockgate.settings import JudgeConfig

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (judged so far, total) as batches finish."""

PLACEHOLDER_JUDGE_SEED = 1234


@runtime_checkable
class JudgeBackend(Protocol):
    """Scores many requests at once; a sample that fails is an unscored judgment, not an exception."""

    @property
    def identity(self) -> str:
        """What the judge is (backend, model, weights fingerprint): keys the calibration cache."""
        ...

    @property
    def description(self) -> str:
        """One line for reports."""
        ...

    def judge(self, requests: Sequence[JudgeRequest], progress: Progress | None = None) -> list[Judgment]:
        """One judgment per request, in the requests' order."""
        ...

    def close(self) -> None:
        """Release the model or the HTTP client."""
        ...


def placeholder_judge_dir(home: Path) -> Path:
    """Where the seeded random-weight placeholder judge lives (built once per LOCKGATE_HOME)."""
    return home / "judge" / f"tiny-judge-seed{PLACEHOLDER_JUDGE_SEED}"


def ensure_placeholder_judge(home: Path) -> Path:
    """Build the placeholder judge if missing: a tiny random model, so the pipeline runs end to end.

    It carries no signal about quality; calibration against the labelled calibration set shows
    that, and the quality job then keeps its scores out of the evidence.
    """
    import os
    import tempfile

    from lockgate.devtools.tiny_model import build_tiny_model

    target = placeholder_judge_dir(home)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.warning("no judge model configured: building a random-weight placeholder judge in %s", target)
    # Build beside, then rename: a concurrent task never sees half a model directory.
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    build_tiny_model(tmp, seed=PLACEHOLDER_JUDGE_SEED)
    try:
        os.rename(tmp, target)
    except OSError:
        if not (target / "config.json").exists():
            raise
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)  # another task won the race; use its copy
    return target


def make_backend(config: JudgeConfig, home: Path | None = None) -> JudgeBackend:
    """The backend the policy names. Heavy imports happen here, not at module import."""
    if config.backend == "openai":
        from lockgate.judge.backends.openai_compat import OpenAICompatibleJudge

        return OpenAICompatibleJudge.from_config(config)
    if config.backend == "mlflow":
        from lockgate.judge.backends.mlflow_genai import MlflowGenAIJudge

        return MlflowGenAIJudge.from_config(config)
    from lockgate.judge.backends.local import LocalJudge

    if config.model_path:
        path = Path(config.model_path).expanduser()
        placeholder = False
    else:
        from lockgate.settings import get_settings

        path = ensure_placeholder_judge(home or get_settings().home)
        placeholder = True
    return LocalJudge.from_config(config, path, placeholder=placeholder)
