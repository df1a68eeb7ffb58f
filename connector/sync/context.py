"""What the sync shells need, built once by the CLI or the daemon and passed in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import Connection

from connector.lapor.client import LaporClient
from connector.mappings import Mappings
from connector.settings import Config
from connector.store import Store
from connector.sync.core import Cadence
from connector.timeutil import utcnow
from connector.tracker.port import TrackerPort
from connector.tracker.sink import Sink, sink_for

T = TypeVar("T")


class Observer(Protocol):
    """Told the running totals of a cycle as it goes (metrics); never record content.

    A cycle starts by reporting all-zero totals.
    """

    def progress(self, kind: str, counts: Mapping[str, int]) -> None: ...


class NullObserver:
    def progress(self, kind: str, counts: Mapping[str, int]) -> None:
        pass


@dataclass
class SyncContext:
    config: Config
    store: Store
    client: LaporClient
    tracker: TrackerPort
    mappings: Callable[[], Mappings]  # the mapping in force now (live reload swaps it)
    now: Callable[[], datetime] = utcnow
    # Set on SIGTERM: cycles stop at their next commit point instead of being cut off.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    observer: Observer = field(default_factory=NullObserver)
    # Records already reported as dated after the server's clock (warned once each).
    warned_future: set[str] = field(default_factory=set)
    # The clocks: ``now`` (wall, UTC) above; this one for intervals (commit cadence,
    # durations). Nothing under connector/sync reads a clock of its own.
    monotonic: Callable[[], float] = time.monotonic
    cadence: Cadence = field(default_factory=Cadence)  # how often a pull commits
    # Where the pull's decisions go (``tracker/sink.py``): picked once, from the tracker.
    sink: Sink = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tracker.bind(self.store)  # here, not where parts open: a test's context too
        self.sink = sink_for(self.tracker)

    async def db(self, fn: Callable[[Connection], T]) -> T:
        """Run one transaction, whole: no await inside, so no cancellation can split it.

        Run on the loop's own thread on purpose: in a worker thread, SQLite's per-row
        release of the GIL convoys behind the event loop and a commit takes many times
        longer. Transactions are short; the loop waits at most the busy timeout.
        """
        return self.store.run(fn)
