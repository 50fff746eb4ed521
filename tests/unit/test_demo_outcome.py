"""When the demo says a scenario went as expected: the decision it expects, for the reason it expects."""

from __future__ import annotations

from lockgate.devtools.demo import DemoResult


def _result(action: str, before: str, after: str, stopped_by: list[str], expected: str, gate: str | None) -> DemoResult:
    return DemoResult(
        "s", before, after, decisions=[{"action": action}], expected=expected, stopped_by=stopped_by, expected_gate=gate
    )


def test_a_hold_counts_only_when_the_scenarios_gate_is_among_those_that_stopped_it() -> None:
    assert _result("hold", "1", "1", ["ttft_regression", "live_ttft_regression"], "hold", "ttft_regression").as_expected
    # held, but by other gates: what the latency scenario showed while the benchmark measured the wrong files
    held_elsewhere = _result("hold", "1", "1", ["live_ttft_regression"], "hold", "ttft_regression")
    assert not held_elsewhere.as_expected
    assert not _result("hold", "1", "1", [], "hold", None).as_expected  # a hold needs a gate that stopped it


def test_promote_and_rollback_need_the_champion_to_move() -> None:
    assert _result("promote", "1", "2", [], "promote", None).as_expected
    assert not _result("promote", "1", "1", [], "promote", None).as_expected
    assert _result("rollback", "2", "1", ["champion_relevance_drop"], "rollback", "champion_relevance_drop").as_expected
    assert not _result("rollback", "2", "1", ["champion_error_rate"], "rollback", "champion_relevance_drop").as_expected
    assert not _result("hold", "2", "2", ["champion_relevance_drop"], "rollback", "champion_relevance_drop").as_expected
