"""The one interface every judge backend implements, and the factory the policy picks from."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from lockgate.errors import ConfigError
from lockgate.judge.scoring import JudgeRequest, Judgment
from lockgate.policy.schema import JudgeConfig

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (judged so far, total) as batches finish."""

# `backend: placeholder` (the demo's random-weight judge) is dev tooling, named here by its module
# path and imported only when a policy asks for it (the one such edge; tests/test_layering.py).
PLACEHOLDER_BACKEND = "lockgate.devtools.placeholder_judge:make_placeholder_judge"


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


def make_backend(config: JudgeConfig, home: Path | None = None) -> JudgeBackend:
    """The backend the policy names. Heavy imports happen here, not at module import."""
    if config.backend == "openai":
        from lockgate.judge.backends.openai_compat import OpenAICompatibleJudge

        return OpenAICompatibleJudge.from_config(config)
    if config.backend == "mlflow":
        from lockgate.judge.backends.mlflow_genai import MlflowGenAIJudge

        return MlflowGenAIJudge.from_config(config)
    if config.backend == "placeholder":
        import importlib

        from lockgate.settings import get_settings

        module_name, factory = PLACEHOLDER_BACKEND.split(":")
        backend: JudgeBackend = getattr(importlib.import_module(module_name), factory)(
            config, home or get_settings().home
        )
        return backend
    if not config.model_path:
        raise ConfigError(
            "backend 'local' needs the directory of the judge model (a Hugging Face causal LM); "
            "or name another backend (openai, mlflow; `placeholder` is the demo's random-weight judge, no signal)",
            key="quality.judge.model_path",
        )
    from lockgate.judge.backends.local import LocalJudge

    return LocalJudge.from_config(config, Path(config.model_path).expanduser())
