"""The pull shell: read the feed, fetch what changed, commit decisions with the watermark.

A pipeline (``_Pull``): the feed task (``_read_feed``) reads pages ahead and starts each
part's detail requests (one ``_Window`` of ``detail_concurrency`` requests over all parts,
no barrier between them), while the pull's own task (``_consume``) commits finished parts
in feed order, as often as ``ctx.cadence`` says (``core.commit_due``). Between the two, a
queue of ``Part | CommitNow | End``. Decisions are made and applied inside the commit's
transaction, on fresh state, with the watermark (``sync/apply.py``); attachment files
download beside the pull (``sync/attachments.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection

from connector.errors import RECORD_ERRORS, Rejected, SkipRecord
from connector.lapor import models as m
from connector.store import state
from connector.sync import attachments, core
from connector.sync.apply import Committed, Fetched, Work, commit
from connector.sync.attachments import Downloads
from connector.sync.context import SyncContext

log = structlog.get_logger("connector.pull")
T = TypeVar("T")
Known = tuple[dict[str, core.LinkState], dict[str, core.Held]]


@dataclass
class PullStats:
    fetched: int = 0
    details: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    held: int = 0
    quarantined: int = 0
    pages: int = 0
    late: int = 0  # a sweep's finds that the ordinary pulls had missed

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def pull(ctx: SyncContext, sweep: bool = False) -> PullStats:
    """One pull. A sweep reads the feed over ``sync.sweep_window_s`` behind the watermark
    instead of the overlap: records committed hours "in the past" are found there, and
    since only summaries that differ from what is stored cost a detail, an unchanged
    feed costs pages only."""
    return await _Pull(ctx, sweep).run()


# -- what the feed task hands the committing task, in feed order ------------------------------


@dataclass(frozen=True)
class Part:
    """Part of a feed page, its detail requests under way."""

    fetch: asyncio.Task[Work]


@dataclass(frozen=True)
class CommitNow:
    """Commit everything before this, then set ``done`` (the feed waits for it)."""

    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class End:
    """The feed's end; ``error``: what it failed with, raised once what came before it
    is committed."""

    error: Exception | None = None


Item = Part | CommitNow | End


class _Window:
    """The detail requests of one pull: at most ``size`` at a time, over all its parts."""

    def __init__(self, size: int):
        self._slots = asyncio.Semaphore(size)
        self._unfinished = 0

    @property
    def unfinished(self) -> int:
        """Requests picked and not yet answered."""
        return self._unfinished

    def picked(self, n: int) -> None:
        self._unfinished += n

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        """One picked request: waits for a slot; answered (or failed) when it ends."""
        try:
            async with self._slots:
                yield
        finally:
            self._unfinished -= 1


class _Pull:
    """One pull's own state between its commits, and its steps."""

    _stop: asyncio.Future[Any]  # set when the pull is asked to stop (SIGTERM)

    def __init__(self, ctx: SyncContext, sweep: bool):
        self.ctx, self.sweep = ctx, sweep
        self.stats = PullStats()
        self.started = ctx.now()
        lapor = ctx.config.settings.lapor
        self.overlap = timedelta(seconds=ctx.config.settings.sync.overlap_s)
        self.page_size = lapor.page_size
        self.part_size = lapor.detail_concurrency * 2
        self.window = _Window(lapor.detail_concurrency)
        self.downloads = Downloads(ctx)
        ahead = 2 * -(-self.page_size // self.part_size) + 1  # parts in flight: two pages
        self.queue: asyncio.Queue[Item] = asyncio.Queue(ahead)
        self.processed: dict[str, datetime | None] = {}  # as picked, by tracking id
        self.fetched_ids: set[str] = set()
        self.watermark: datetime | None = None  # as last committed: the feed restarts here
        self.sweep_from: datetime | None = None
        self.late_watermark: datetime | None = None  # a sweep: what the pulls could not see
        self.acc: list[Work] = []  # fetched, in feed order, not committed
        self.batch = core.Batch()
        self.dropped: list[asyncio.Future[Any]] = []  # abandoned on stop: awaited at the end

    async def run(self) -> PullStats:
        ctx = self.ctx
        await _progress(ctx, self.stats, self.started)
        self.watermark = await ctx.db(state.get_watermark)
        self.sweep_from = core.sweep_from(
            self.watermark, timedelta(seconds=ctx.config.settings.sync.sweep_window_s)
        )
        self.late_watermark = self.watermark if self.sweep else None
        try:
            await self._pipeline()
            if ctx.stopping.is_set():
                return self.stats  # everything fetched is committed with its watermark
            if not self.sweep:
                await self._retry_held()
            await _progress(ctx, self.stats, self.started)
            if not self.sweep:
                await attachments.retry(ctx, self.downloads)
            # Downloads ran beside the pull; at its end they get one call's deadline more,
            # and what is left stays noted for retry.
            await self.downloads.finish(ctx.config.settings.lapor.call_deadline_s)
            return self.stats
        finally:
            await self.downloads.finish(0)

    def _since(self) -> datetime | None:
        return core.feed_since(self.watermark, self.overlap, self.sweep_from, self.sweep)

    # -- the committing task --------------------------------------------------------------

    async def _pipeline(self) -> None:
        self._stop = asyncio.ensure_future(self.ctx.stopping.wait())
        feeder = asyncio.create_task(self._read_feed())
        try:
            await self._consume()
        finally:
            self._stop.cancel()
            feeder.cancel()
            pending: list[asyncio.Future[Any]] = [self._stop, feeder, *self.dropped]
            while not self.queue.empty():
                left = self.queue.get_nowait()
                if isinstance(left, Part):
                    left.fetch.cancel()
                    pending.append(left.fetch)
            await asyncio.gather(*pending, return_exceptions=True)

    async def _consume(self) -> None:
        """Commit the parts in feed order; on a stop, at this commit point."""
        while True:
            item = await self._ready(asyncio.ensure_future(self.queue.get()))
            if item is None:
                break  # asked to stop
            if isinstance(item, End):
                if item.error is None:
                    break
                await self._flush()
                raise item.error
            if isinstance(item, CommitNow):
                await self._flush()
                item.done.set()
                continue
            work = await self._ready(item.fetch)
            if work is None:
                break  # what is fetched commits, in order
            self.acc.append(work)
            self.batch = self.batch.add(len(work.items), self.ctx.monotonic())
            self.fetched_ids.update(work.fetched)
            if core.commit_due(self.batch, self.ctx.cadence, self.ctx.monotonic()):
                await self._flush()
        await self._flush()

    async def _ready(self, aw: asyncio.Future[T]) -> T | None:
        """``aw``'s result, or None if the pull is asked to stop first. What is fetched
        meanwhile commits when waiting would keep it from its commit (``core.commit_wait_s``:
        the cadence's time is up, or the request budget is spent)."""
        ctx, both = self.ctx, {aw, self._stop}
        try:
            wait = (
                None
                if aw.done()
                else core.commit_wait_s(
                    self.batch, ctx.cadence, ctx.monotonic(), ctx.client.budget.room()
                )
            )
            if wait is not None:
                if wait > 0:
                    await asyncio.wait(both, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if not aw.done():
                    await self._flush()
            if not aw.done():
                await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            aw.cancel()
            raise
        if aw.done():
            return await aw
        aw.cancel()
        self.dropped.append(aw)
        return None

    async def _flush(self) -> None:
        """Commit what is fetched, with its watermark (``apply.commit``)."""
        if not self.acc:
            return
        ctx, stats, work = self.ctx, self.stats, Work.merge(self.acc)

        def tx(conn: Connection) -> Committed:
            done = commit(ctx, conn, work)
            # The live progress `status` shows rides in the commit's own transaction.
            after = replace(stats)
            _count(after, done.decisions)
            state.set_pull_running(conn, self.started, ctx.now(), after.as_dict())
            return done

        done = await ctx.db(tx)
        self.acc.clear()
        self.batch = core.Batch()
        self.watermark = done.watermark
        _count(stats, done.decisions)
        ctx.observer.progress("pull", stats.as_dict())
        self.downloads.add(done.new_files)

    # -- the feed task ----------------------------------------------------------------------

    async def _read_feed(self) -> None:
        end = End()
        try:
            await self._read_pages()
        except Exception as exc:  # raised in feed order, after what came before commits
            end = End(exc)
        await self.queue.put(end)

    async def _read_pages(self) -> None:
        ctx = self.ctx
        async for page in ctx.client.feed(self._since, self.page_size):
            self.stats.pages += 1
            self.stats.fetched += len(page.items)
            items = core.dedupe(page.items)
            # State as of the last commit; decisions re-read it inside their transaction.
            known = await ctx.db(_loader([i.tracking_id for i in items]))
            for start in range(0, len(items), self.part_size):
                if ctx.stopping.is_set():
                    return
                await self._put(items[start : start + self.part_size], known, page.server_time)

    async def _put(
        self, part: list[m.Summary | m.BadSummary], known: Known, server_time: datetime | None
    ) -> None:
        fetch = self._fetch(part, known, server_time)
        self.processed.update((i.tracking_id, i.updated_at) for i in part)
        if core.commit_before_part(self.ctx.client.budget.room(), self.window.unfinished):
            # This part's requests would wait for the budget: what is fetched before them
            # commits first.
            now = CommitNow()
            try:
                await self.queue.put(now)
                await now.done.wait()
            except BaseException:
                fetch.close()  # never started: nothing to await
                raise
        task = asyncio.create_task(fetch)
        try:
            await self.queue.put(Part(task))
        except BaseException:
            task.cancel()
            raise

    def _fetch(
        self, items: list[m.Summary | m.BadSummary], known: Known, server_time: datetime | None
    ) -> Coroutine[Any, Any, Work]:
        """Pick what needs a detail request (on possibly stale state) now, against
        ``processed`` as it is now; the coroutine returned fetches it."""
        ctx, (links, held) = self.ctx, known
        picked = core.triage(items, links, held, self.processed, ctx.mappings())
        for fields in picked.unreadable:
            log.warning("feed_item_invalid", fields=list(fields))
        self.stats.unchanged += picked.unchanged
        self.stats.details += len(picked.wanted)
        self.window.picked(len(picked.wanted))
        high, ahead = core.part_high(items, server_time)
        for tid, skew in ahead:
            if tid not in ctx.warned_future:
                ctx.warned_future.add(tid)
                log.bind(tracking_id=tid).warning(
                    "record_from_the_future", skew_s=int(skew.total_seconds())
                )
        return self._fetched(items, list(picked.wanted), list(picked.bad), high)

    async def _fetched(
        self,
        items: list[m.Summary | m.BadSummary],
        wanted: list[str],
        bad: list[core.Hold | core.Quarantine],
        high: datetime | None,
    ) -> Work:
        fetched = await fetch_details(self.ctx, wanted, self.window)
        by_id = {i.tracking_id: i for i in items}
        for tid, got in fetched.items():
            summary = by_id[tid]
            if not isinstance(got, m.Complaint):
                fetched[tid] = core.remember_summary(got, summary)
            elif (
                lag := core.late_lag(summary.updated_at, self.late_watermark, self.overlap)
            ) is not None:
                self.stats.late += 1
                log.bind(tracking_id=tid).warning(
                    "late_record_recovered", lag_s=int(lag.total_seconds())
                )
        return Work([i.tracking_id for i in items], fetched, bad, high)

    # -- after the feed -----------------------------------------------------------------------

    async def _retry_held(self) -> None:
        """Quarantined records fetched again (``core.to_retry`` says which)."""
        ctx = self.ctx
        mappings = ctx.mappings()
        now = ctx.now()
        candidates = await ctx.db(state.retry_candidates)
        ids = core.to_retry(candidates, self.fetched_ids, mappings, now)
        if not ids:
            return
        fetched = await fetch_details(ctx, ids)
        self.stats.details += len(ids)
        done = await ctx.db(lambda conn: commit(ctx, conn, Work(ids, fetched, [], None)))
        _count(self.stats, done.decisions)
        self.downloads.add(done.new_files)


async def _progress(ctx: SyncContext, stats: PullStats, started: datetime) -> None:
    """A running pull's own counts, for `status` (another process) and the metrics."""
    counts = stats.as_dict()
    ctx.observer.progress("pull", counts)
    await ctx.db(lambda conn: state.set_pull_running(conn, started, ctx.now(), counts))


async def fetch_details(
    ctx: SyncContext, ids: list[str], window: _Window | None = None
) -> dict[str, Fetched]:
    """Details, concurrently within ``window`` (shared by all parts of a pull; the
    client's budget paces them); skips become quarantine."""
    if not ids:
        return {}
    if window is None:
        window = _Window(ctx.config.settings.lapor.detail_concurrency)
        window.picked(len(ids))

    async def one(tid: str) -> Fetched:
        async with window.request():
            return await _detail(ctx, tid)

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = {tid: tg.create_task(one(tid)) for tid in ids}
    except* Exception as group:
        # Callers handle one error by what it asks of them (retry, fatal), not a group.
        raise group.exceptions[0] from None
    return {tid: t.result() for tid, t in tasks.items()}


async def _detail(ctx: SyncContext, tid: str) -> Fetched:
    try:
        return await ctx.client.complaint(tid)
    except SkipRecord as exc:
        return core.detail_refused(tid, exc.reason, exc.detail)
    except Rejected as exc:
        return core.detail_refused(tid, exc.kode, f"LAPOR! answered {exc.status}")
    except RECORD_ERRORS as exc:  # this record alone: never the rest of the page
        return core.detail_refused(
            tid, core.Reason.INVALID_RECORD, f"cannot be read: {exc.__class__.__name__}"
        )


def _loader(ids: list[str]) -> Callable[[Connection], Known]:
    return lambda conn: (state.get_links(conn, ids), state.get_held(conn, ids))


def _count(stats: PullStats, decisions: list[core.Decision]) -> None:
    for d in decisions:
        name = d.kind.value
        setattr(stats, name, getattr(stats, name) + 1)
