"""When the daemon runs its reconciliation sweep: decided in the core (``sweep_due``)."""

from __future__ import annotations

from connector.sync.core import DAY_S, QUIET_HOURS_WITA, sweep_due

__all__ = ["DAY_S", "QUIET_HOURS_WITA", "sweep_due"]
