"""Waiting on a condition instead of sleeping a fixed time: a fixed sleep races whatever it
waits for (a lease, a cycle, a server starting) and is either flaky or slow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_for(
    cond: Callable[[], object], timeout: float = 60, what: str = "", every: float = 0.3
) -> None:
    """Return as soon as ``cond()`` is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def until(
    cond: Callable[[], object], timeout: float = 30, what: str = "", every: float = 0.02
) -> None:
    """``wait_for`` inside an event loop: the loop keeps running while it waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def next_second() -> None:
    """Until the wall clock's second changes: for names that carry it."""
    now = int(time.time())
    wait_for(lambda: int(time.time()) > now, 5, "the next second", every=0.01)
