"""Judge backends behind one interface (`base.JudgeBackend`), chosen by the policy (`make_backend`)."""

from lockgate.judge.backends.base import JudgeBackend, make_backend

__all__ = ["JudgeBackend", "make_backend"]
