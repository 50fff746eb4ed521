from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from lockgate.logs.quarantine import QUARANTINE_REASONS, quarantine_reason, split_valid_rows
from lockgate.policy.schema import LogsConfig

CFG = LogsConfig(max_text_chars=100)


def good_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "request_id": "r1",
        "ts": datetime(2026, 1, 1, tzinfo=UTC),
        "model_name": "m",
        "model_version": "1",
        "prompt": "hello?",
        "response": "hi",
        "context": None,
        "latency_ms": 120.0,
        "ttft_ms": 30.0,
        "prompt_tokens": 3,
        "completion_tokens": 1,
        "status": "ok",
        "feedback": None,
        "metadata": '{"a": 1}',
    }
    row.update(overrides)
    return row


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"request_id": None}, "missing_request_id"),
        ({"ts": None}, "missing_ts"),
        ({"model_version": ""}, "missing_model_version"),
        ({"prompt": None}, "missing_prompt"),
        ({"prompt": "   "}, "missing_prompt"),
        ({"status": "exploded"}, "unknown_status"),
        ({"response": None}, "missing_response"),
        ({"latency_ms": -1.0}, "invalid_latency"),
        ({"latency_ms": float("nan")}, "invalid_latency"),
        ({"latency_ms": None}, "invalid_latency"),
        ({"latency_ms": 10_000_000.0}, "invalid_latency"),
        ({"ttft_ms": -5.0}, "invalid_ttft"),
        ({"ttft_ms": 500.0}, "invalid_ttft"),
        ({"prompt_tokens": -3}, "invalid_tokens"),
        ({"feedback": 7}, "invalid_feedback"),
        ({"prompt": "x" * 101}, "oversize_text"),
        ({"metadata": "{not json"}, "unparseable_metadata"),
        ({"metadata": "[1, 2]"}, "unparseable_metadata"),
    ],
)
def test_each_contract_breach_has_its_reason(overrides: dict[str, Any], reason: str) -> None:
    assert reason in QUARANTINE_REASONS
    assert quarantine_reason(good_row(**overrides), CFG) == reason


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"status": "error", "response": None, "ttft_ms": None},
        {"metadata": None},
        {"metadata": {"already": "parsed"}},
        {"feedback": -1},
        {"context": "retrieved text"},
    ],
)
def test_usable_rows_pass(overrides: dict[str, Any]) -> None:
    assert quarantine_reason(good_row(**overrides), CFG) is None


def test_split_counts_every_row_and_parses_metadata() -> None:
    rows = [good_row(), good_row(request_id="r2", prompt=None), good_row(request_id="r3", metadata="{oops")]
    result = split_valid_rows(rows, CFG)
    assert [r["request_id"] for r in result.kept] == ["r1"]
    assert result.kept[0]["metadata"] == {"a": 1}
    assert dict(result.reasons) == {"missing_prompt": 1, "unparseable_metadata": 1}
    assert result.quarantined + len(result.kept) == len(rows)  # nothing silently lost
