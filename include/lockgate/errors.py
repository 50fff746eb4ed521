"""Domain errors. Each carries a stable code so tests and callers can tell them apart.

Bad data and policy violations raise these and fail a task without retry;
transient I/O errors are left to propagate so Airflow retries them.
"""

from __future__ import annotations


class LockgateError(Exception):
    """Base of every error lockgate raises on purpose."""

    code = "lockgate_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(LockgateError):
    """A settings, policy or airflow_settings.yaml value is invalid; `key` names it."""

    code = "invalid_config"

    def __init__(self, message: str, key: str | None = None, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        at = f"{key}: " if key else ""
        super().__init__(f"{where}{at}{message}")
        self.key = key
        self.source = source


class ServiceUnavailableError(LockgateError):
    """A service (PostgreSQL, MLflow, Airflow) does not answer at `url`."""

    code = "service_unavailable"

    def __init__(self, service: str, url: str, reason: str, hint: str | None = None) -> None:
        msg = f"{service} is not reachable at {url}: {reason}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
        self.service = service
        self.url = url


class InsufficientDataError(LockgateError):
    """A window holds too few usable rows to compute the evidence."""

    code = "insufficient_data"


class UnknownModelVersionError(LockgateError):
    """A model name, version or alias that the registry does not know."""

    code = "unknown_model_version"


class InvalidModelError(LockgateError):
    """A registered version cannot be used (not a causal LM, missing artifacts)."""

    code = "invalid_model"


class EvidenceError(LockgateError):
    """An evidence summary is missing, malformed or for other versions."""

    code = "invalid_evidence"


class ConcurrentMoveError(LockgateError):
    """The champion changed between the decision and the move; the move was aborted."""

    code = "concurrent_move"


class JudgeError(LockgateError):
    """A judge backend failed in a way that is not a single unscored sample."""

    code = "judge_error"
