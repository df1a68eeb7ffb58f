"""When the daemon runs its reconciliation sweep (pure; the clock is passed in)."""

from __future__ import annotations

from datetime import datetime

from connector.timeutil import WITA, as_utc

QUIET_HOURS_WITA = range(1, 5)  # 01:00-04:59 WITA: offices closed, LAPOR! quiet
DAY_S = 86400


def sweep_due(now: datetime, last: datetime | None, interval_s: float) -> bool:
    """Whether the next pull should be a sweep.

    With a daily (or longer) interval the sweep waits for a quiet hour WITA, unless a
    whole extra day has passed without one (the machine was off at night). Shorter
    intervals do not wait.
    """
    now = as_utc(now)
    elapsed = None if last is None else (now - as_utc(last)).total_seconds()
    if elapsed is not None and elapsed < interval_s:
        return False
    if interval_s < DAY_S:
        return True
    if elapsed is not None and elapsed >= interval_s + DAY_S:
        return True
    return now.astimezone(WITA).hour in QUIET_HOURS_WITA

