"""The pull shell: read the feed, fetch what changed, commit decisions with the watermark."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, assert_never

import structlog
from sqlalchemy import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from connector.errors import RECORD_ERRORS, Rejected, RetryLater, SkipRecord
from connector.lapor import models as m
from connector.lapor import reasons
from connector.notify import queue as notify
from connector.store import followups, intents, state
from connector.sync import core
from connector.sync.context import SyncContext
from connector.tracker import port
from connector.tracker.base import Direction, NewTicket, TicketUpdate
from connector.tracker.rows import AttachmentMeta

log = structlog.get_logger("connector.pull")
# A detail request's outcome: the complaint, or the record set aside.
Fetched = m.Complaint | core.Hold | core.Quarantine


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
    stats = PullStats()
    started = ctx.now()
    await _progress(ctx, stats, started)
    s = ctx.config.settings.sync
    overlap = timedelta(seconds=s.overlap_s)
    wm_start = await ctx.db(state.get_watermark)
    run = _Run(wm_start)
    sweep_from = core.sweep_from(wm_start, timedelta(seconds=s.sweep_window_s))
    processed: dict[str, datetime | None] = {}
    fetched_ids: set[str] = set()

    def since() -> datetime | None:
        return core.feed_since(run.watermark, overlap, sweep_from, sweep)

    page_size = ctx.config.settings.lapor.page_size
    concurrency = ctx.config.settings.lapor.detail_concurrency
    part_size = concurrency * 2
    late_watermark = wm_start if sweep else None  # a sweep: what the pulls could not see
    # A pipeline: the feed task reads pages ahead and starts each part's detail requests
    # (one window of ``detail_concurrency`` requests over all parts, no barrier between
    # them), while this task commits finished parts in feed order, as often as
    # ``ctx.cadence`` says (``core.commit_due``). Decisions are made inside the commit's
    # transaction, on fresh state.
    window = _Window(concurrency)
    downloads = _Downloads(ctx)
    ahead = 2 * -(-page_size // part_size) + 1  # parts in flight: about two pages
    # Parts in feed order; an Event asks for a commit of all before it; the end is None
    # or the feed's exception.
    parts: asyncio.Queue[asyncio.Task[_Work] | asyncio.Event | BaseException | None] = \
        asyncio.Queue(ahead)

    async def flush() -> None:
        if run.acc:
            work = _Work.merge(run.acc)

            def tx(conn: Connection) -> _Committed:
                # The live progress `status` shows rides in the commit's own transaction.
                done = _commit(ctx, conn, work)
                after = replace(stats)
                _count(after, done.decisions)
                state.set_pull_running(conn, started, ctx.now(), after.as_dict())
                return done

            done = await ctx.db(tx)
            run.acc.clear()
            run.batch = core.Batch()
            run.watermark = done.watermark
            _count(stats, done.decisions)
            ctx.observer.progress("pull", stats.as_dict())
            downloads.add(done.new_files)

    async def read_pages() -> None:
        async for page in ctx.client.feed(since, page_size):
            stats.pages += 1
            stats.fetched += len(page.items)
            items = core.dedupe(page.items)
            # State as of the last commit; decisions re-read it inside their transaction.
            known = await ctx.db(_loader([i.tracking_id for i in items]))
            for start in range(0, len(items), part_size):
                if ctx.stopping.is_set():
                    return
                part = items[start:start + part_size]
                fetch = _fetch(ctx, part, known, stats, processed, page.server_time,
                               late_watermark, window)
                processed.update((i.tracking_id, i.updated_at) for i in part)
                if core.commit_before_part(ctx.client.budget.room(), window.unfinished):
                    # This part's requests would wait for the budget: what is fetched
                    # before them commits first.
                    committed = asyncio.Event()
                    try:
                        await parts.put(committed)
                        await committed.wait()
                    except BaseException:
                        fetch.close()  # never started: nothing to await
                        raise
                task = asyncio.create_task(fetch)
                try:
                    await parts.put(task)
                except BaseException:
                    task.cancel()
                    raise

    async def read_feed() -> None:
        end: BaseException | None = None
        try:
            await read_pages()
        except Exception as exc:  # raised in feed order, after what came before commits
            end = exc
        await parts.put(end)

    stop: asyncio.Future[Any] = asyncio.ensure_future(ctx.stopping.wait())
    dropped: list[asyncio.Future[Any]] = []

    async def ready(aw: asyncio.Future[Any]) -> Any:
        """``aw``'s result, or None if the pull is asked to stop first. What is fetched
        meanwhile commits when waiting would keep it from its commit (``core.commit_wait_s``:
        the cadence's time is up, or the request budget is spent)."""
        try:
            wait = None if aw.done() else core.commit_wait_s(
                run.batch, ctx.cadence, ctx.monotonic(), ctx.client.budget.room())
            if wait is not None:
                if wait > 0:
                    await asyncio.wait({aw, stop}, timeout=wait,
                                       return_when=asyncio.FIRST_COMPLETED)
                if not aw.done():
                    await flush()
            if not aw.done():
                await asyncio.wait({aw, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            aw.cancel()
            raise
        if aw.done():
            return await aw
        aw.cancel()
        dropped.append(aw)
        return None

    try:
        feeder = asyncio.create_task(read_feed())
        try:
            while True:
                got = await ready(asyncio.ensure_future(parts.get()))
                if got is None:
                    break  # the feed's end, or asked to stop
                if isinstance(got, BaseException):
                    await flush()
                    raise got
                if isinstance(got, asyncio.Event):
                    await flush()
                    got.set()
                    continue
                work = await ready(got)
                if work is None:
                    break  # stop at this commit point: what is fetched commits, in order
                run.acc.append(work)
                run.batch = run.batch.add(len(work.items), ctx.monotonic())
                fetched_ids.update(work.fetched)
                if core.commit_due(run.batch, ctx.cadence, ctx.monotonic()):
                    await flush()
            await flush()
        finally:
            stop.cancel()
            feeder.cancel()
            pending: list[asyncio.Future[Any]] = [stop, feeder, *dropped]
            while not parts.empty():
                left = parts.get_nowait()
                if isinstance(left, asyncio.Task):
                    left.cancel()
                    pending.append(left)
            await asyncio.gather(*pending, return_exceptions=True)
        if ctx.stopping.is_set():
            return stats  # everything fetched is committed with its watermark
        if not sweep:
            await _retry_held(ctx, stats, fetched_ids, downloads)
        await _progress(ctx, stats, started)
        if not sweep:
            await _retry_downloads(ctx, downloads)
        # Downloads ran beside the pull; at its end they get one call's deadline more, and
        # what is left stays noted for retry.
        await downloads.finish(ctx.config.settings.lapor.call_deadline_s)
        return stats
    finally:
        await downloads.finish(0)


async def _progress(ctx: SyncContext, stats: PullStats, started: datetime) -> None:
    """A running pull's own counts, for `status` (another process) and the metrics."""
    counts = stats.as_dict()
    ctx.observer.progress("pull", counts)
    await ctx.db(lambda conn: state.set_pull_running(conn, started, ctx.now(), counts))


@dataclass
class _Run:
    """A pull's own state between its commits."""

    watermark: datetime | None  # as last committed: the feed restarts from it
    acc: list[_Work] = field(default_factory=list)  # fetched, in feed order, not committed
    batch: core.Batch = field(default_factory=core.Batch)


class _Window:
    """The detail requests of one pull: at most ``size`` at a time, over all its parts."""

    def __init__(self, size: int):
        self.slots = asyncio.Semaphore(size)
        self.unfinished = 0  # requests picked and not yet answered

    def picked(self, n: int) -> None:
        self.unfinished += n


@dataclass
class _Work:
    """Feed items between fetch and commit."""

    items: list[str]
    fetched: dict[str, Fetched]
    bad: list[core.Hold | core.Quarantine]
    high: datetime | None

    @staticmethod
    def merge(works: list[_Work]) -> _Work:
        highs = [w.high for w in works if w.high is not None]
        return _Work([i for w in works for i in w.items],
                     {k: v for w in works for k, v in w.fetched.items()},
                     [b for w in works for b in w.bad], max(highs) if highs else None)


def _fetch(ctx: SyncContext, items: list[m.Summary | m.BadSummary],
           known: tuple[dict[str, core.LinkState], dict[str, core.Held]],
           stats: PullStats, processed: dict[str, datetime | None],
           server_time: datetime | None, late_watermark: datetime | None = None,
           window: _Window | None = None) -> Coroutine[Any, Any, _Work]:
    """Pick what needs a detail request (on possibly stale state) now, against
    ``processed`` as it is now; the coroutine returned fetches it.

    ``late_watermark`` (a sweep): the watermark when it began, to tell what the pulls missed.
    """
    ids = [i.tracking_id for i in items]
    links, held = known
    picked = core.triage(items, links, held, processed, ctx.mappings())
    for fields in picked.unreadable:
        log.warning("feed_item_invalid", fields=list(fields))
    stats.unchanged += picked.unchanged
    stats.details += len(picked.wanted)
    if window is not None:
        window.picked(len(picked.wanted))
    by_id = {i.tracking_id: i for i in items}
    high, ahead = core.part_high(items, server_time)
    for tid, skew in ahead:
        if tid not in ctx.warned_future:
            ctx.warned_future.add(tid)
            log.warning("record_from_the_future", tracking_id=tid,
                        skew_s=int(skew.total_seconds()))
    return _fetched(ctx, ids, list(picked.wanted), by_id, list(picked.bad), high, stats,
                    late_watermark, window)


async def _fetched(ctx: SyncContext, ids: list[str], wanted: list[str],
                   by_id: dict[str, m.Summary | m.BadSummary],
                   bad: list[core.Hold | core.Quarantine], high: datetime | None,
                   stats: PullStats, late_watermark: datetime | None,
                   window: _Window | None) -> _Work:
    fetched = await _fetch_details(ctx, wanted, window)
    overlap = timedelta(seconds=ctx.config.settings.sync.overlap_s)
    for tid, got in fetched.items():
        summary = by_id[tid]
        if not isinstance(got, m.Complaint):
            fetched[tid] = core.remember_summary(got, summary)
        elif (lag := core.late_lag(summary.updated_at, late_watermark, overlap)) is not None:
            stats.late += 1
            log.warning("late_record_recovered", tracking_id=tid, lag_s=int(lag.total_seconds()))
    return _Work(ids, fetched, bad, high)


async def _fetch_details(ctx: SyncContext, ids: list[str],
                         window: _Window | None = None) -> dict[str, Fetched]:
    """Details, concurrently within ``window`` (shared by all parts of a pull; the
    client's budget paces them); skips become quarantine."""
    if not ids:
        return {}
    if window is None:
        window = _Window(ctx.config.settings.lapor.detail_concurrency)
        window.picked(len(ids))
    sem = window.slots

    async def one(tid: str) -> Fetched:
        try:
            async with sem:
                return await _one(tid)
        finally:
            window.unfinished -= 1

    async def _one(tid: str) -> Fetched:
        try:
            return await ctx.client.complaint(tid)
        except SkipRecord as exc:
            return core.detail_refused(tid, exc.reason, exc.detail)
        except Rejected as exc:
            return core.detail_refused(tid, exc.kode, f"LAPOR! answered {exc.status}")
        except RECORD_ERRORS as exc:  # this record alone: never the rest of the page
            return core.detail_refused(tid, core.Reason.INVALID_RECORD,
                                       f"cannot be read: {exc.__class__.__name__}")

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = {tid: tg.create_task(one(tid)) for tid in ids}
    except* Exception as group:
        # Callers handle one error by what it asks of them (retry, fatal), not a group.
        raise group.exceptions[0] from None
    return {tid: t.result() for tid, t in tasks.items()}


@dataclass
class _Committed:
    watermark: datetime | None
    decisions: list[core.Decision]
    new_files: list[tuple[str, str, tuple[m.Attachment, ...]]]  # (ticket ref, tid, files)


def _loader(ids: list[str]) -> Callable[[Connection], tuple[dict[str, core.LinkState],
                                                             dict[str, core.Held]]]:
    return lambda conn: (state.get_links(conn, ids), state.get_held(conn, ids))


def _committer(ctx: SyncContext, work: _Work) -> Callable[[Connection], _Committed]:
    return lambda conn: _commit(ctx, conn, work)


def _commit(ctx: SyncContext, conn: Connection, work: _Work) -> _Committed:
    """Decide on fresh state and commit the chunk with its watermark, in one transaction."""
    mappings = ctx.mappings()
    instansi = ctx.config.settings.lapor.instansi_id
    ids = list(work.fetched)
    links = state.get_links(conn, ids)
    held = state.get_held(conn, ids)
    own = state.own_posts(conn, ids)
    local = _local_statuses(ctx, conn, links)
    facts = followups.get_facts(conn, ids)
    decisions: list[core.Decision] = list(work.bad)
    for tid, got in work.fetched.items():
        if not isinstance(got, m.Complaint):
            decisions.append(got)
            continue
        link = links.get(tid)
        try:
            decisions.append(core.decide(got, link, mappings, instansi, own.get(tid, ()),
                                         local.get(tid) if link else None,
                                         facts.get(tid)))
        except RECORD_ERRORS as exc:  # e.g. OverflowError on a date at the calendar's end
            decisions.append(core.undecidable(got, exc.__class__.__name__))
        if got.repairs:
            log.info("record_repaired", tracking_id=tid, repairs=list(got.repairs))
    try:
        with conn.begin_nested():
            watermark = _apply(ctx, conn, decisions, work.high, held, facts)
    except Exception as exc:
        if not _record_caused(exc):
            raise
        watermark = _apply_each(ctx, conn, decisions, work.high, held, facts)
    new_files = []
    if ctx.config.settings.attachments.download:
        created = [d.tracking_id for d in decisions if isinstance(d, core.Create)]
        refs = state.get_links(conn, created)
        for tid in created:
            complaint = work.fetched.get(tid)
            if isinstance(complaint, m.Complaint) and complaint.attachments and tid in refs:
                new_files.append((refs[tid].ticket_ref, tid, complaint.attachments))
        # Noted as due in the same transaction: a download the pull does not wait for
        # (cut at its deadline, or still running when the pull ends) is tried again later.
        for ref, _tid, files in new_files:
            _recorder(ctx, ref, [{**core.attachment_meta(a), "retry": True}
                                 for a in files])(conn)
    return _Committed(watermark, decisions, new_files)


def _record_caused(exc: BaseException) -> bool:
    """Whether a database error comes from one record's values (too long, NUL on
    PostgreSQL, unencodable text, a constraint) rather than from the database itself."""
    if isinstance(exc, DataError | IntegrityError | UnicodeError | ValueError | OverflowError |
                  TypeError):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def _apply_each(ctx: SyncContext, conn: Connection, decisions: list[core.Decision],
                page_max: datetime | None, held: dict[str, core.Held],
                facts: dict[str, core.clock.Facts] | None = None) -> datetime | None:
    """The chunk again, one record per savepoint: the one whose values the database
    refuses is quarantined, and the rest commits with the watermark."""
    for n, d in enumerate(decisions):
        try:
            with conn.begin_nested():
                _apply(ctx, conn, [d], None, held, facts)
        except Exception as exc:
            if not _record_caused(exc):
                raise
            log.warning("record_refused_by_storage", tracking_id=d.tracking_id,
                        error=exc.__class__.__name__)
            decisions[n] = core.refused_by_storage(d, exc.__class__.__name__)
            _apply(ctx, conn, [decisions[n]], None, held, facts)
    if page_max is None:
        return state.get_watermark(conn)
    return state.advance_watermark(conn, page_max, ctx.now())


def _apply(ctx: SyncContext, conn: Connection, decisions: list[core.Decision],
           page_max: datetime | None, held: dict[str, core.Held],
           facts: dict[str, core.clock.Facts] | None = None) -> datetime | None:
    """Execute decisions and move the watermark, inside the caller's transaction."""
    now = ctx.now()
    inline = ctx.tracker.inline
    creates = [d for d in decisions if isinstance(d, core.Create)]
    if inline is not None:  # the built-in tracker: in this transaction
        refs = inline.create_tickets(conn, [d.ticket for d in creates], now)
    else:  # an external tracker: intents, applied by the tracker worker
        refs = [""] * len(creates)
        intents.add(conn, [row for d in creates for row in _create_intents(d.ticket)], now)
    state.insert_links(conn, [replace(d.link, ticket_ref=ref)
                              for d, ref in zip(creates, refs, strict=True)], now)
    for d in decisions:
        match d:
            case core.Hold() | core.Quarantine():
                state.hold(conn, d.tracking_id, d.reason, d.detail, d.lapor_updated_at,
                           d.unit_ids, now)
                log.info("record_held", tracking_id=d.tracking_id, action=d.kind.value,
                         reason=d.reason)
                continue
            case core.Create():
                pass  # inserted above, all at once
            case core.Update():
                if inline is not None:
                    inline.apply_update(conn, d.link.ticket_ref, d.update, now)
                else:
                    if d.update.anonymous:
                        intents.forget_reporter(conn, d.tracking_id)
                    intents.add(conn, _update_intents(d.tracking_id, d.update), now)
                _save_link(conn, d, now)
            case core.Unchanged():
                _save_link(conn, d, now)
            case _:
                assert_never(d)
        if d.tracking_id in held:
            state.release(conn, d.tracking_id)
        if not isinstance(d, core.Unchanged):
            log.debug("record_synced", tracking_id=d.tracking_id, action=d.kind.value)
    followups.save_many(conn, [(d.facts, (facts or {}).get(d.tracking_id)) for d in decisions
                               if isinstance(d, core.Linked)],
                        now)
    _notify(ctx, conn, creates, decisions, now)
    if page_max is None:
        return state.get_watermark(conn)
    return state.advance_watermark(conn, page_max, now)


def _notify(ctx: SyncContext, conn: Connection, creates: list[core.Create],
            decisions: list[core.Decision], now: datetime) -> None:
    """E-mail about new complaints and reporters' replies, in this same transaction."""
    cfg = ctx.config.settings.notify
    if not cfg.enabled:
        return
    notify.new_complaints(conn, cfg, ctx.mappings(), [notify.Complaint(
        d.tracking_id, d.ticket.agency, d.ticket.title, d.ticket.confidential,
        d.facts.current.due_at) for d in creates], now)
    for d in decisions:
        if isinstance(d, core.Update) and any(
                msg.direction == Direction.IN and msg.author == core.AUTHORS["pelapor"]
                for msg in d.update.messages):
            notify.reporter_replied(conn, cfg, ctx.mappings(), d.tracking_id, d.link.agency,
                                    now)


def _save_link(conn: Connection, d: core.Update | core.Unchanged, now: datetime) -> None:
    state.save_link(conn, d.link, now)
    if d.fail_outbox is not None:  # a new ticket has no outbox entries yet
        state.fail_pending(conn, d.tracking_id, reasons.wire_code(d.fail_outbox))


def _local_statuses(ctx: SyncContext, conn: Connection,
                    links: dict[str, core.LinkState]) -> dict[str, str]:
    """Each linked complaint's local status, by tracking id (for echo detection)."""
    inline = ctx.tracker.inline
    if inline is None:  # an external tracker: the last status an officer set there
        return intents.officer_statuses(conn, list(links))
    by_ref = inline.statuses(conn, [link.ticket_ref for link in links.values()])
    return {tid: by_ref[link.ticket_ref] for tid, link in links.items()
            if link.ticket_ref in by_ref}


def _create_intents(ticket: NewTicket) -> list[tuple[str, str, port.Payload]]:
    return [(ticket.tracking_id, port.CREATE, port.ticket_payload(ticket)),
            *((ticket.tracking_id, port.MESSAGE, port.message_payload(msg))
              for msg in ticket.messages)]


def _update_intents(tid: str, upd: TicketUpdate) -> list[tuple[str, str, port.Payload]]:
    rows: list[tuple[str, str, port.Payload]] = [(tid, port.UPDATE, port.update_payload(upd))]
    return rows + [(tid, port.MESSAGE, port.message_payload(msg)) for msg in upd.messages]


async def _download(ctx: SyncContext,
                    new_files: list[tuple[str, str, tuple[m.Attachment, ...]]],
                    stored: dict[str, str] | None = None) -> None:
    """Fetch attachment files of new tickets; a failure is noted, never fatal.

    A transient failure is marked ``retry`` and tried again on a later pull.
    """
    cfg = ctx.config.settings.attachments
    for ref, tid, files in new_files:
        meta: list[AttachmentMeta] = []
        for att in files:
            entry = core.attachment_meta(att)
            if stored and att.id in stored:
                meta.append({**entry, "stored": stored[att.id]})
                continue
            try:
                path = await ctx.client.download(
                    att, ctx.config.attachments_dir / _safe_dir(tid), max_bytes=cfg.max_bytes,
                    allowed_types=cfg.allowed_types)
                entry["stored"] = str(path)
            except (Rejected, RetryLater, OSError) as exc:
                # A file that cannot be written (disk full, a name the file system refuses)
                # is this attachment's matter: noted for retry, never the pull's failure.
                entry["error"] = ("penulisan_gagal" if isinstance(exc, OSError)
                                  else getattr(exc, "kode", None) or "unavailable")
                entry["retry"] = not isinstance(exc, Rejected)
                log.warning("attachment_skipped", tracking_id=tid, attachment=att.id,
                            reason=entry["error"])
            meta.append(entry)
        await ctx.db(_recorder(ctx, ref, meta))


class _Downloads:
    """A pull's attachment downloads, beside it: its commits never wait for a file."""

    def __init__(self, ctx: SyncContext):
        self._ctx = ctx
        self._jobs: asyncio.Queue[Callable[[], Coroutine[Any, Any, None]] | None] = \
            asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.queued: set[str] = set()  # ticket refs whose files this pull already fetches

    def add(self, new_files: list[tuple[str, str, tuple[m.Attachment, ...]]]) -> None:
        if new_files:
            self.queued.update(ref for ref, _, _ in new_files)
            self.submit(lambda: _download(self._ctx, new_files))

    def submit(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._jobs.put_nowait(job)

    async def _run(self) -> None:
        while (job := await self._jobs.get()) is not None:
            try:
                await job()
            except (RetryLater, OSError) as exc:  # noted for retry at the pull's commit
                log.warning("attachments_deferred", error=str(exc))
            except Exception as exc:  # a bug: the pull goes on, the files stay due
                log.error("attachments_crashed", exc_info=exc)

    async def finish(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for what is queued, then cancel the rest (it stays due)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._jobs.put_nowait(None)
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            log.warning("attachments_deferred", error="the pull ended before the downloads")
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _retry_downloads(ctx: SyncContext, downloads: _Downloads, limit: int = 10) -> None:
    """Attachments that failed for a transient reason, tried again (a few per pull)."""
    inline = ctx.tracker.inline
    if not ctx.config.settings.attachments.download or inline is None:
        return
    todo = await ctx.db(lambda conn: inline.attachments_to_retry(conn, limit))

    async def again(ref: str, tid: str, meta: list[AttachmentMeta]) -> None:
        try:
            complaint = await ctx.client.complaint(tid)
        except (SkipRecord, Rejected):
            return
        stored = {a["id"]: a["stored"] for a in meta if "stored" in a}
        await _download(ctx, [(ref, tid, complaint.attachments)], stored)

    for ref, tid, meta in todo:
        if ref not in downloads.queued:  # not this pull's own new tickets a second time
            downloads.submit(functools.partial(again, ref, tid, meta))


def _recorder(ctx: SyncContext, ref: str,
              meta: list[AttachmentMeta]) -> Callable[[Connection], None]:
    inline = ctx.tracker.inline
    # An external tracker keeps no attachment metadata: the files stay in attachments.dir.
    return lambda conn: inline.record_attachments(conn, ref, meta) if inline else None


def _safe_dir(tracking_id: str) -> str:
    return "".join(c for c in tracking_id if c.isdigit()) or "unknown"


def _count(stats: PullStats, decisions: list[core.Decision]) -> None:
    for d in decisions:
        name = d.kind.value
        setattr(stats, name, getattr(stats, name) + 1)


async def _retry_held(ctx: SyncContext, stats: PullStats, processed: set[str],
                      downloads: _Downloads) -> None:
    """Quarantined records fetched again (``core.to_retry`` says which)."""
    mappings = ctx.mappings()
    now = ctx.now()
    candidates = await ctx.db(state.retry_candidates)
    ids = core.to_retry(candidates, processed, mappings, now)
    if not ids:
        return
    fetched = await _fetch_details(ctx, ids)
    stats.details += len(ids)
    done = await ctx.db(_committer(ctx, _Work(ids, fetched, [], None)))
    _count(stats, done.decisions)
    downloads.add(done.new_files)
