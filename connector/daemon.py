"""The coordinator: one per daemon job (pull, push, tracker).

The coordinator (as in Home Assistant) logs a failure once, its recovery
once, and backs off on its own; APScheduler only ticks it.
"""

from __future__ import annotations

import asyncio
import random
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
        self.error: BaseException | None = None  # the last cycle's failure, while it lasts

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
            self.error = None
            # Fatal only while it lasts: a disk that filled and was freed again (the cycle
            # ran since) must not turn the clean stop's exit code into 1.
            self.fatal = None
        finally:
            self.running = None

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.error = exc
        delay = min(self.max_backoff_s,
                    backoff(self.failures, self.interval_s, self.max_backoff_s, self._rng() * 0.2))
        self.not_before = self._clock() + delay
        if self.failures == 1:
            log.error(f"{self.name}_failing", error=str(exc), retry_in_s=round(delay, 1))
        else:
            log.debug(f"{self.name}_still_failing", failures=self.failures,
                      retry_in_s=round(delay, 1))
