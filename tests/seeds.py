"""What made a failed test's run what it was: the seeds of its sandbox worlds and random
generators, and where its fake clock started. ``conftest.py`` adds them to the report of
a failed test (a "seeds" section); hypothesis prints its own examples."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from connector.sandbox import World

CLOCK_ENV = "LAPOR_TEST_CLOCK_START"  # replays a run's fake clock (epoch seconds)


class SeededRandom(random.Random):
    """``random.Random`` that remembers its seed, so a failure can name it."""

    def __init__(self, seed: int):
        super().__init__(seed)
        self.initial_seed = seed


def _children(obj: Any) -> list[Any]:
    try:
        return list(vars(obj).values())
    except TypeError:  # no __dict__
        return []


def _describe(obj: Any) -> str | None:
    from tests.conftest import FakeTime  # conftest imports this module

    if isinstance(obj, World):
        fired = ", ".join(f"{k}={v}" for k, v in sorted(obj.fired.items())) or "none"
        return f"sandbox World(seed={obj.seed}); faults fired: {fired}"
    if isinstance(obj, SeededRandom):
        return f"random.Random({obj.initial_seed})"
    if isinstance(obj, FakeTime):
        at = datetime.fromtimestamp(obj.start, UTC).isoformat()
        return f"fake clock started at {at}: replay with {CLOCK_ENV}={obj.start:.0f}"
    return None


def seeds_in(roots: Iterable[Any], depth: int = 2) -> list[str]:
    """The seeds among ``roots`` and their attributes (``depth`` levels down), each once."""
    seen: set[int] = set()
    found: list[str] = []
    level = list(roots)
    for _ in range(depth + 1):
        below: list[Any] = []
        for obj in level:
            if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type)):
                continue
            seen.add(id(obj))
            text = _describe(obj)
            if text is not None and text not in found:
                found.append(text)
            below.extend(_children(obj))
        level = below
    return found


def frame_locals(tb: TracebackType | None) -> Iterator[Any]:
    """The local values of every frame of a traceback, the test's own among them."""
    while tb is not None:
        yield from tb.tb_frame.f_locals.values()
        tb = tb.tb_next
