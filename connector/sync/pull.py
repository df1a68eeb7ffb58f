"""The pull shell: read the feed, fetch what changed, commit decisions with the watermark."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection

from connector.errors import Rejected, RetryLater, SkipRecord
from connector.lapor import models as m
from connector.store import state
from connector.sync import core
from connector.sync.context import SyncContext

log = structlog.get_logger("connector.pull")


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

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def pull(ctx: SyncContext) -> PullStats:
    stats = PullStats()
    overlap = timedelta(seconds=ctx.config.settings.sync.overlap_s)
    watermark: list[datetime | None] = [await ctx.db(state.get_watermark)]
    processed: set[str] = set()

    def since() -> datetime | None:
        # Always from the committed watermark, never this machine's clock.
        wm = watermark[0]
        return None if wm is None else wm - overlap

    page_size = ctx.config.settings.lapor.page_size
    # Commit in chunks, in feed order: tickets appear while a large backlog is read, and a
    # crash loses at most one chunk of work, never a record.
    chunk = max(10, ctx.config.settings.lapor.detail_concurrency * 5)
    async for page in ctx.client.feed(since, page_size):
        stats.pages += 1
        stats.fetched += len(page.items)
        items = core.dedupe(page.items)
        for start in range(0, len(items), chunk):
            if ctx.stopping.is_set():
                return stats  # everything so far is committed with its watermark
            part = items[start:start + chunk]
            watermark[0] = await _process(ctx, part, stats)
            processed.update(i.tracking_id for i in part)
    await _retry_held(ctx, stats, processed)
    return stats


async def _process(ctx: SyncContext, items: list[m.Summary | m.BadSummary],
                   stats: PullStats) -> datetime | None:
    """Decide a run of feed items and commit them with the watermark after them."""
    ids = [i.tracking_id for i in items]
    mappings = ctx.mappings()

    def load(conn: Connection) -> tuple[Any, Any]:
        return state.get_links(conn, ids), state.get_held(conn, ids)

    links, held = await ctx.db(load)
    decisions: list[core.Decision] = []
    wanted: list[str] = []
    for item in items:
        if isinstance(item, m.BadSummary):
            if item.tracking_id == "unknown":
                log.warning("feed_item_invalid", fields=list(item.fields))
                continue
            prev = held.get(item.tracking_id)
            if prev is None or prev.retry_requested or prev.lapor_updated_at != item.updated_at:
                decisions.append(core.quarantine(
                    item.tracking_id, core.Reason.INVALID_RECORD,
                    "invalid fields: " + ", ".join(item.fields), item.updated_at))
            else:
                stats.unchanged += 1
        elif core.needs_detail(item, links.get(item.tracking_id), held.get(item.tracking_id),
                               mappings):
            wanted.append(item.tracking_id)
        else:
            stats.unchanged += 1
    decisions += await _details(ctx, wanted, links, mappings)
    stats.details += len(wanted)
    high = max((i.updated_at for i in items if i.updated_at is not None), default=None)
    result = await ctx.db(lambda conn: _apply(ctx, conn, decisions, high))
    _count(stats, decisions)
    return result


async def _details(ctx: SyncContext, ids: list[str], links: dict[str, core.LinkState],
                   mappings: Any) -> list[core.Decision]:
    """Fetch details concurrently (the client's budget paces them) and decide each."""
    if not ids:
        return []
    own = await ctx.db(lambda conn: state.own_posts(conn, ids))
    sem = asyncio.Semaphore(ctx.config.settings.lapor.detail_concurrency)
    instansi = ctx.config.settings.lapor.instansi_id

    async def one(tid: str) -> core.Decision:
        async with sem:
            try:
                complaint = await ctx.client.complaint(tid)
            except SkipRecord as exc:
                return core.quarantine(tid, exc.reason, exc.detail)
            except Rejected as exc:
                return core.quarantine(tid, exc.kode, f"LAPOR! answered {exc.status}")
        return core.decide(complaint, links.get(tid), mappings, instansi, own.get(tid, ()))

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(tid)) for tid in ids]
    return [t.result() for t in tasks]


def _apply(ctx: SyncContext, conn: Connection, decisions: list[core.Decision],
           page_max: datetime | None) -> datetime | None:
    """Commit every decision of a page and the watermark in one transaction."""
    now = ctx.now()
    for d in decisions:
        if d.kind in (core.Kind.HOLD, core.Kind.QUARANTINE):
            state.hold(conn, d.tracking_id, d.reason or "unknown", d.detail,
                       d.lapor_updated_at, d.unit_ids, now)
            log.info("record_held", tracking_id=d.tracking_id, action=d.kind.value,
                     reason=d.reason)
            continue
        assert d.link is not None
        link = d.link
        if d.kind is core.Kind.CREATE:
            assert d.ticket is not None
            link = replace(link, ticket_ref=ctx.tracker.create_ticket(conn, d.ticket, now))
        elif d.kind is core.Kind.UPDATE:
            assert d.update is not None
            ctx.tracker.apply_update(conn, link.ticket_ref, d.update, now)
        state.save_link(conn, link, now)
        state.release(conn, d.tracking_id)
        if d.fail_outbox:
            state.fail_pending(conn, d.tracking_id, d.fail_outbox)
        if d.kind is not core.Kind.UNCHANGED:
            log.info("record_synced", tracking_id=d.tracking_id, action=d.kind.value)
    if page_max is None:
        return state.get_watermark(conn)
    return state.advance_watermark(conn, page_max)


def _count(stats: PullStats, decisions: list[core.Decision]) -> None:
    for d in decisions:
        name = d.kind.value
        setattr(stats, name, getattr(stats, name) + 1)


async def _retry_held(ctx: SyncContext, stats: PullStats, processed: set[str]) -> None:
    """Quarantined records whose mapping now exists, or that an operator asked to retry."""
    mappings = ctx.mappings()
    candidates = await ctx.db(state.retry_candidates)
    ids = [tid for tid, h in candidates.items() if tid not in processed and tid != "unknown" and (
        h.retry_requested or (h.reason == core.Reason.UNMAPPED_UNIT
                              and core.unmapped_now_mapped(h, mappings)))]
    if not ids:
        return
    links = await ctx.db(lambda conn: state.get_links(conn, ids))
    try:
        decisions = await _details(ctx, ids, links, mappings)
    except* RetryLater as group:
        raise group.exceptions[0] from None
    stats.details += len(ids)
    await ctx.db(lambda conn: _apply(ctx, conn, decisions, None))
    _count(stats, decisions)
