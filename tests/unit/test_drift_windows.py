"""Window resolution: every mode of the policy's reference and current windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pendulum
import pytest

from lockgate.drift.windows import resolve_current, resolve_reference
from lockgate.errors import InsufficientDataError
from lockgate.logs.sampling import Window
from lockgate.policy.schema import AfterPromotionWindow, DataIntervalWindow, FixedWindow, TrailingWindow

D = datetime(2026, 3, 10, tzinfo=UTC)
CUR = Window(D, D + timedelta(days=1))


def test_current_is_the_data_interval() -> None:
    r = resolve_current(DataIntervalWindow(), (D, D + timedelta(days=1)), now=D + timedelta(days=30))
    assert (r.window.start, r.window.end) == (D, D + timedelta(days=1)) and r.mode == "data_interval"


def test_short_data_interval_is_widened_back() -> None:
    r = resolve_current(DataIntervalWindow(min_hours=24), (D, D), now=D)
    assert (r.window.start, r.window.end) == (D - timedelta(hours=24), D)
    assert "widened" in r.mode


def test_no_data_interval_ends_now() -> None:
    r = resolve_current(DataIntervalWindow(min_hours=6), None, now=D)
    assert (r.window.start, r.window.end) == (D - timedelta(hours=6), D)


def test_pendulum_interval_gives_plain_utc_bounds() -> None:
    start = pendulum.datetime(2026, 3, 10, tz="Europe/Paris")
    r = resolve_current(DataIntervalWindow(), (start, start.add(days=1)), now=D)
    assert type(r.window.start) is datetime and r.window.start.tzinfo is UTC
    ref = resolve_reference(TrailingWindow(days=2), r.window, None)
    assert ref.window.end == r.window.start and ref.window.start.tzinfo is not None


def test_fixed_windows() -> None:
    fixed = FixedWindow(start=datetime(2026, 1, 1), end=datetime(2026, 1, 2))
    assert resolve_current(fixed, (D, D), now=D).window.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert resolve_reference(fixed, CUR, None).window.end == datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(("days", "gap"), [(7, 0), (3, 1.5)])
def test_trailing_reference(days: float, gap: float) -> None:
    r = resolve_reference(TrailingWindow(days=days, gap_days=gap), CUR, None)
    assert r.window.end == D - timedelta(days=gap)
    assert r.window.start == r.window.end - timedelta(days=days)


def test_after_promotion_reference() -> None:
    promoted = D - timedelta(days=20)
    r = resolve_reference(AfterPromotionWindow(days=7), CUR, promoted)
    assert (r.window.start, r.window.end) == (promoted, promoted + timedelta(days=7))
    assert r.mode == "after_promotion 7 d"


def test_after_promotion_is_cut_at_the_current_window() -> None:
    promoted = D - timedelta(days=2)
    r = resolve_reference(AfterPromotionWindow(days=7), CUR, promoted)
    assert (r.window.start, r.window.end) == (promoted, D) and "cut" in r.mode


@pytest.mark.parametrize("promoted", [None, D, D + timedelta(hours=3)])
def test_after_promotion_without_earlier_champion_is_insufficient(promoted: datetime | None) -> None:
    with pytest.raises(InsufficientDataError):
        resolve_reference(AfterPromotionWindow(days=7), CUR, promoted)
