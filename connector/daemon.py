"""The daemon's parts: a coordinator per job, sd_notify, the demo officer.

The coordinator (as in Home Assistant) logs a failure once, its recovery
once, and backs off on its own; APScheduler only ticks it.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from connector.errors import ConnectorError, Fatal
from connector.lapor.policy import backoff

log = structlog.get_logger("connector.daemon")


class Coordinator:
    """Runs one job's cycles; never overlapping, backing off after failures."""

    def __init__(self, name: str, fn: Callable[[], Awaitable[Any]], interval_s: float,
                 max_backoff_s: float, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random):
        self.name = name
        self._fn = fn
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self._rng = rng
        self.failures = 0
        self.not_before = 0.0
        self.running: asyncio.Task[Any] | None = None
        self.fatal: Fatal | None = None

    async def tick(self) -> None:
        if self.running is not None or self._clock() < self.not_before:
            return
        self.running = asyncio.current_task()
        try:
            await self._fn()
        except Fatal as exc:
            self._failed(exc)
            self.fatal = exc
        except (ConnectorError, OSError) as exc:
            self._failed(exc)
        except Exception as exc:  # a bug: report it (redacted), back off, keep the daemon up
            if self.failures == 0:
                log.error(f"{self.name}_crashed", exc_info=exc)
            self._failed(exc)
        else:
            if self.failures:
                log.info(f"{self.name}_recovered", after_failures=self.failures)
            self.failures = 0
            self.not_before = 0.0
        finally:
            self.running = None

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        delay = min(self.max_backoff_s,
                    backoff(self.failures, self.interval_s, self.max_backoff_s, self._rng() * 0.2))
        self.not_before = self._clock() + delay
        if self.failures == 1:
            log.error(f"{self.name}_failing", error=str(exc), retry_in_s=round(delay, 1))
        else:
            log.debug(f"{self.name}_still_failing", failures=self.failures,
                      retry_in_s=round(delay, 1))


def sd_notify(message: str) -> bool:
    """Send one sd_notify datagram when run under systemd (Type=notify)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return int(usec) / 2_000_000


class DemoOfficer:
    """Sandbox only: acts as an agency officer so follow-ups can be seen going back."""

    REPLIES = (
        "Petugas kami sudah dijadwalkan meninjau lokasi minggu ini.",
        "Terima kasih, laporan sudah kami teruskan ke bidang terkait.",
        "Perbaikan sedang dikerjakan; mohon kesabarannya.",
    )

    def __init__(self, rng: random.Random | None = None):
        self.rng = rng or random.Random(6411)

    def act(self, conn: Any, tracker: Any, mappings: Any, now: Any) -> str | None:
        from connector.sync.push import ingest
        from connector.tracker.builtin import OfficerAction

        open_ = tracker.list_tickets(conn, status="new") + \
            tracker.list_tickets(conn, status="in_progress")
        if not open_:
            return None
        ticket = self.rng.choice(open_)
        if ticket["status"] == "new":
            action = OfficerAction(status="in_progress", reply=self.rng.choice(self.REPLIES),
                                   author="demo-petugas")
        else:
            # statuses.toml requires the officer's own words for "resolved".
            action = OfficerAction(status="resolved", author="demo-petugas",
                                   reply="Perbaikan sudah selesai dikerjakan oleh petugas kami.")
        tracker.officer_update(conn, ticket["id"], action, now)
        ingest(conn, tracker, mappings, now)
        return str(ticket["tracking_id"])
