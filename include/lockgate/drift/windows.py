"""Which time windows a drift run compares (pure: the clock and the registry are passed in).

* current: the policy's fixed dates, or the DAG run's data interval, widened back to
  `min_hours` when shorter (a manual run's interval is empty); without an interval
  (the CLI) it ends at `now`;
* reference: fixed dates; the `days` before the current champion was promoted
  (`champion_baseline`, the default: trailing without a promotion time); the `days`
  before the current window (trailing, with an optional gap); or the `days` after the
  current champion was promoted. A reference is cut at the start of the current window
  so the two never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lockgate.errors import ConfigError, InsufficientDataError
from lockgate.logs.sampling import Window
from lockgate.policy.schema import (
    AfterPromotionWindow,
    ChampionBaselineWindow,
    CurrentWindow,
    DataIntervalWindow,
    FixedWindow,
    ReferenceWindow,
    TrailingWindow,
)


@dataclass(frozen=True)
class ResolvedWindow:
    window: Window
    mode: str


def _utc(t: datetime) -> datetime:
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    # A plain datetime: pendulum's DateTime (Airflow's context) drops its zone in some arithmetic.
    return datetime(t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond, tzinfo=UTC)


def resolve_current(
    config: CurrentWindow, data_interval: tuple[datetime, datetime] | None, now: datetime
) -> ResolvedWindow:
    """The current window from the policy and the run's data interval (or `now` without one)."""
    if isinstance(config, FixedWindow):
        return ResolvedWindow(Window(_utc(config.start), _utc(config.end)), "fixed")
    if not isinstance(config, DataIntervalWindow):  # pragma: no cover - exhaustive over the policy's union
        raise ConfigError(f"unknown current window {config!r}", key="windows.current")
    if data_interval is not None:
        start, end = _utc(data_interval[0]), _utc(data_interval[1])
        mode = "data_interval"
    else:
        start = end = _utc(now)
        mode = "data_interval (none: ends now)"
    minimum = timedelta(hours=config.min_hours)
    if end - start < minimum:
        start = end - minimum
        mode += f", widened to {config.min_hours:g} h"
    return ResolvedWindow(Window(start, end), mode)


def resolve_reference(
    config: ReferenceWindow, current: Window, champion_promoted_at: datetime | None
) -> ResolvedWindow:
    """The reference window; `after_promotion` needs the champion's promotion time.

    Raises:
        InsufficientDataError: no champion to anchor `after_promotion`, or its window
            would start after the current one does.
    """
    if isinstance(config, FixedWindow):
        return ResolvedWindow(Window(_utc(config.start), _utc(config.end)), "fixed")
    if isinstance(config, ChampionBaselineWindow):
        promoted_ok = champion_promoted_at is not None and (
            _utc(champion_promoted_at) - timedelta(days=config.days) < current.start
        )
        if champion_promoted_at is None or not promoted_ok:
            end = current.start
            why = "no promotion time (lockgate.promoted_at)" if champion_promoted_at is None else "promoted too late"
            mode = f"champion_baseline {config.days:g} d: {why}, trailing instead"
            return ResolvedWindow(Window(end - timedelta(days=config.days), end), mode)
        promoted = _utc(champion_promoted_at)
        end = min(promoted, current.start)
        mode = f"champion_baseline {config.days:g} d before the promotion at {promoted.isoformat()}"
        if end < promoted:
            mode += " (cut at the current window)"
        return ResolvedWindow(Window(promoted - timedelta(days=config.days), end), mode)
    if isinstance(config, TrailingWindow):
        end = current.start - timedelta(days=config.gap_days)
        mode = f"trailing {config.days:g} d" + (f", gap {config.gap_days:g} d" if config.gap_days else "")
        return ResolvedWindow(Window(end - timedelta(days=config.days), end), mode)
    if isinstance(config, AfterPromotionWindow):
        if champion_promoted_at is None:
            raise InsufficientDataError(
                "the reference window is 'after_promotion' but the model has no champion (alias 'champion') "
                "whose promotion time anchors it"
            )
        start = _utc(champion_promoted_at)
        end = min(start + timedelta(days=config.days), current.start)
        if end <= start:
            raise InsufficientDataError(
                f"the champion was promoted at {start.isoformat()}, not before the current window starts "
                f"({current.start.isoformat()}): no reference traffic yet"
            )
        mode = f"after_promotion {config.days:g} d"
        if end < start + timedelta(days=config.days):
            mode += " (cut at the current window)"
        return ResolvedWindow(Window(start, end), mode)
    raise ConfigError(f"unknown reference window {config!r}", key="windows.reference")  # pragma: no cover
