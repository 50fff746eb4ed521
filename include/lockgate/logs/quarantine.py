"""The log contract, checked row by row: rows that break it are counted by reason and kept out."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lockgate.policy.schema import LogsConfig

QUARANTINE_REASONS = (
    "missing_request_id",
    "missing_ts",
    "missing_model_version",
    "missing_prompt",
    "missing_response",
    "invalid_latency",
    "invalid_ttft",
    "invalid_tokens",
    "unknown_status",
    "invalid_feedback",
    "unparseable_metadata",
    "oversize_text",
)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def quarantine_reason(row: Mapping[str, Any], config: LogsConfig) -> str | None:
    """The first contract rule the row breaks, or None for a usable row."""
    if not row.get("request_id"):
        return "missing_request_id"
    if row.get("ts") is None:
        return "missing_ts"
    if not row.get("model_version"):
        return "missing_model_version"
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "missing_prompt"
    status = row.get("status")
    if status not in config.statuses:
        return "unknown_status"
    if status == "ok" and not isinstance(row.get("response"), str):
        return "missing_response"
    raw_latency: Any = row.get("latency_ms")
    if not _is_number(raw_latency):
        return "invalid_latency"
    latency = float(raw_latency)
    if latency < 0 or latency > config.max_latency_ms:
        return "invalid_latency"
    ttft = row.get("ttft_ms")
    if ttft is not None and (not _is_number(ttft) or ttft < 0 or ttft > latency):
        return "invalid_ttft"
    for col in ("prompt_tokens", "completion_tokens"):
        v = row.get(col)
        if v is not None and (not _is_number(v) or v < 0):
            return "invalid_tokens"
    fb = row.get("feedback")
    if fb is not None and fb not in (-1, 0, 1):
        return "invalid_feedback"
    for col in ("prompt", "response", "context"):
        v = row.get(col)
        if isinstance(v, str) and len(v) > config.max_text_chars:
            return "oversize_text"
    meta = row.get("metadata")
    if isinstance(meta, str | bytes):
        try:
            parsed = json.loads(meta)
        except ValueError:
            return "unparseable_metadata"
        if not isinstance(parsed, dict):
            return "unparseable_metadata"
    return None


@dataclass
class QuarantineResult:
    kept: list[dict[str, Any]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def quarantined(self) -> int:
        return sum(self.reasons.values())


def split_valid_rows(rows: Iterable[Mapping[str, Any]], config: LogsConfig) -> QuarantineResult:
    """Usable rows (metadata parsed to a dict) and the count of the others by reason."""
    result = QuarantineResult()
    for row in rows:
        reason = quarantine_reason(row, config)
        if reason:
            result.reasons[reason] += 1
            continue
        clean = dict(row)
        meta = clean.get("metadata")
        if isinstance(meta, str | bytes):
            clean["metadata"] = json.loads(meta)
        result.kept.append(clean)
    return result
