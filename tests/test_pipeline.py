"""The pipelined pull: pages read ahead, one steady window of detail requests over all
parts, commits in feed order while fetches are in flight."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.sandbox import Faults, World, create_app
from connector.store import state
from connector.sync import core
from tests.conftest import FakeTime
from tests.harness import Harness

pytestmark = pytest.mark.anyio

WINDOW = 3


class Slow(httpx.AsyncBaseTransport):
    """The sandbox with a few milliseconds per request, and a log of what was in flight."""

    def __init__(self, world: World):
        self.inner = httpx.ASGITransport(app=create_app(world))
        self.details_in_flight: set[str] = set()
        self.most_in_flight = 0
        self.events: list[tuple[str, str]] = []  # ("feed" | "detail" | "done", tracking id)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        detail = path.startswith("/api/v3/laporan/") and path.count("/") == 4
        if not detail:
            if path == "/api/v3/laporan":
                self.events.append(("feed", ""))
            return await self.inner.handle_async_request(request)
        tid = path.rsplit("/", 1)[1]
        self.events.append(("detail", tid))
        self.details_in_flight.add(tid)
        self.most_in_flight = max(self.most_in_flight, len(self.details_in_flight))
        try:
            await asyncio.sleep(0.003 if int(tid) % 4 else 0.02)  # some answers are slow
            resp = await self.inner.handle_async_request(request)
            await resp.aread()
            return resp
        finally:
            self.details_in_flight.discard(tid)
            self.events.append(("done", tid))


@pytest.fixture
def setup(tmp_path: Path, db_url: str, fake_time: FakeTime) -> tuple[Harness, Slow]:
    world = World(seed=8, complaints=40, faults=Faults(rate_limit_per_minute=0), clock=fake_time)
    slow = Slow(world)
    h = Harness(
        tmp_path / "site",
        db_url,
        world,
        fake_time,
        transport=slow,
        settings={"lapor": {"detail_concurrency": WINDOW, "page_size": 7}},
    )
    h.ctx.cadence = core.Cadence(records=5)  # several commits in one pull
    return h, slow


async def test_a_steady_window_over_parts_and_pages(setup: tuple[Harness, Slow]) -> None:
    h, slow = setup
    await h.pull()
    assert {t["tracking_id"] for t in h.tickets()} == h.visible()
    assert slow.most_in_flight == WINDOW  # never more than the window...
    # ...and no barrier: a detail starts while one of an earlier part is still in flight,
    # and the next page is read while the current page's details are.
    part = WINDOW * 2
    order = [tid for kind, tid in slow.events if kind == "detail"]
    index = {tid: n for n, tid in enumerate(order)}
    in_flight: set[str] = set()
    crossed = feed_ahead = False
    for kind, tid in slow.events:
        if kind == "detail":
            crossed |= any(index[t] // part < index[tid] // part for t in in_flight)
            in_flight.add(tid)
        elif kind == "done":
            in_flight.discard(tid)
        elif in_flight:
            feed_ahead = True
    assert crossed and feed_ahead


async def test_commits_overlap_fetches_and_never_pass_an_uncommitted_record(
    setup: tuple[Harness, Slow], monkeypatch: pytest.MonkeyPatch
) -> None:
    h, slow = setup
    updated = {str(t): r["diperbarui"] for t, r in h.world.records.items() if str(t) in h.visible()}
    violations: list[str] = []
    in_flight_at_commit: list[int] = []
    original = state.advance_watermark

    def spy(conn: Any, candidate: datetime, now: datetime | None = None) -> datetime:
        linked = state.get_links(conn, list(updated))
        violations.extend(t for t, u in updated.items() if u < candidate and t not in linked)
        in_flight_at_commit.append(len(slow.details_in_flight))
        return original(conn, candidate, now)

    monkeypatch.setattr(state, "advance_watermark", spy)
    pulled = await h.pull()
    assert violations == []
    assert len(in_flight_at_commit) >= 5  # a commit every 5 records or so
    assert any(in_flight_at_commit)  # a commit while details were being fetched
    assert pulled["created"] == len(updated)
    # The next pull: one feed page, no detail.
    details = h.client.requests["detail"]
    await h.pull()
    assert h.client.requests["detail"] == details


async def test_a_stop_commits_what_is_fetched_in_order(setup: tuple[Harness, Slow]) -> None:
    h, slow = setup
    original = slow.handle_async_request
    seen = [0]

    async def stopping(request: httpx.Request) -> httpx.Response:
        resp = await original(request)
        if request.url.path.count("/") == 4:
            seen[0] += 1
            if seen[0] == 12:
                h.ctx.stopping.set()
        return resp

    slow.handle_async_request = stopping  # type: ignore[method-assign]
    await h.pull()
    linked = {t["tracking_id"] for t in h.tickets()}
    assert 0 < len(linked) < len(h.visible())
    wm = h.store.run(state.get_watermark)
    assert wm is not None
    behind = {
        str(t)
        for t, r in h.world.records.items()
        if str(t) in h.visible() and r["diperbarui"] <= wm
    }
    assert behind <= linked  # the watermark covers only what was committed
    h.ctx.stopping.clear()
    await h.pull()
    assert {t["tracking_id"] for t in h.tickets()} == h.visible()
    h.check_consistent()


@pytest.mark.parametrize("step_s", [0.0, 10.0])
async def test_commit_cadence_follows_the_injected_monotonic_clock(
    setup: tuple[Harness, Slow], monkeypatch: pytest.MonkeyPatch, step_s: float
) -> None:
    """No record limit in reach: a clock that stands still commits once, at the end; one
    that races past ``Cadence.seconds`` between parts commits every part on its own."""
    h, _ = setup
    ticks = iter(range(10**6))
    h.ctx.monotonic = lambda: next(ticks) * step_s
    h.ctx.cadence = core.Cadence(records=10**6, seconds=5.0)
    commits: list[datetime] = []
    original = state.advance_watermark

    def spy(conn: Any, candidate: datetime, now: datetime | None = None) -> datetime:
        commits.append(candidate)
        return original(conn, candidate, now)

    monkeypatch.setattr(state, "advance_watermark", spy)
    pulled = await h.pull()
    assert pulled["created"] == len(h.visible())
    parts = -(-len(h.visible()) // (WINDOW * 2))  # at least: pages split parts further
    if step_s:
        assert len(commits) >= parts and commits == sorted(commits)
    else:
        assert len(commits) == 1
