"""A client-side request budget shared by every call of one client.

LAPOR! allows 60 requests a minute per token; staying under it is cheaper than
provoking 429s. A sliding window of the last minute's start times.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

WINDOW_S = 60.0


class RequestBudget:
    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ):
        self.per_minute = per_minute
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()
        self.waited_s = 0.0

    def room(self) -> int:
        """How many requests may start now without waiting."""
        if self.per_minute <= 0:
            return 1 << 30
        now = self._clock()
        return self.per_minute - sum(1 for s in self._starts if now - s < WINDOW_S)

    async def acquire(self) -> None:
        if self.per_minute <= 0:
            return
        async with self._lock:
            while True:
                now = self._clock()
                while self._starts and now - self._starts[0] >= WINDOW_S:
                    self._starts.popleft()
                if len(self._starts) < self.per_minute:
                    self._starts.append(now)
                    return
                wait = WINDOW_S - (now - self._starts[0])
                self.waited_s += wait
                await self._sleep(wait)
