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

    def __init__(
        self,
        name: str,
        fn: Callable[[], Awaitable[Any]],
        interval_s: float,
        max_backoff_s: float,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ):
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
        delay = min(
            self.max_backoff_s,
            backoff(self.failures, self.interval_s, self.max_backoff_s, self._rng() * 0.2),
        )
        self.not_before = self._clock() + delay
        if self.failures == 1:
            log.error(f"{self.name}_failing", error=str(exc), retry_in_s=round(delay, 1))
        else:
            log.debug(
                f"{self.name}_still_failing", failures=self.failures, retry_in_s=round(delay, 1)
            )


class Ticker:
    """Runs each job every ``interval_s`` (plus up to ``jitter_s``), one run at a time, on
    the event loop's clock: monotonic, so a step of the wall clock in either direction
    changes nothing. (APScheduler's interval trigger counted in wall-clock time: a step
    back by an hour stopped pull, push, the health refresh and the watchdog ping for an
    hour.)"""

    def __init__(
        self,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self._rng = rng
        self._sleep = sleep
        self._jobs: list[tuple[str, Callable[[], Any], float, float]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.paused = False

    def add(
        self, name: str, fn: Callable[[], Any], interval_s: float, jitter_s: float = 0.0
    ) -> None:
        self._jobs.append((name, fn, interval_s, jitter_s))

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(*job), name=f"job:{job[0]}") for job in self._jobs
        ]

    def pause(self) -> None:
        self.paused = True

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _run(
        self, name: str, fn: Callable[[], Any], interval_s: float, jitter_s: float
    ) -> None:
        while True:
            await self._sleep(interval_s + self._rng() * jitter_s)
            if self.paused:
                continue
            try:
                result = fn()
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in one job: logged, the job and the rest go on
                log.error("job_crashed", job=name, exc_info=exc)
