"""The push shell: officer changes become outbox entries; entries become follow-ups."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection

from connector.errors import LaporUnavailable, Rejected
from connector.lapor import models as m
from connector.lapor.policy import backoff
from connector.mappings import Mappings
from connector.store import followups, state
from connector.sync import core
from connector.sync.context import SyncContext
from connector.timeutil import utcnow
from connector.tracker.base import Tracker

log = structlog.get_logger("connector.push")
MAX_SENDS_PER_CYCLE = 500
LOCAL_DATA_ERROR = "data_lokal_tidak_valid"  # the entry's own text could not be sent


@dataclass
class PushStats:
    queued: int = 0
    pushed: int = 0
    replayed: int = 0
    failed: int = 0
    deferred: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def ingest(conn: Connection, tracker: Tracker, mappings: Mappings, now: datetime | None = None,
           batch: int = 500) -> int:
    """Turn officer changes after the tracker cursor into outbox entries (same transaction)."""
    when = now or utcnow()
    added = 0
    while True:
        cursor = state.get_value(conn, state.TRACKER_CURSOR)
        changes = tracker.officer_changes(conn, cursor, batch)
        if not changes:
            return added
        for change in changes:
            plan = core.plan_outbox(change, state.get_link(conn, change.tracking_id), mappings,
                                    state.last_queued_status(conn, change.tracking_id))
            if plan is not None and state.enqueue(conn, plan, when):
                added += 1
        state.set_value(conn, state.TRACKER_CURSOR, changes[-1].change_id)


async def push(ctx: SyncContext) -> PushStats:
    stats = PushStats()
    ctx.observer.progress("push", stats.as_dict())  # all zero: a new cycle's totals begin
    mappings = ctx.mappings()
    stats.queued = await ctx.db(lambda conn: ingest(conn, ctx.tracker, mappings, ctx.now()))
    sends = 0
    while sends < MAX_SENDS_PER_CYCLE:
        entries = await ctx.db(lambda conn: state.due_entries(
            conn, ctx.now(), ctx.config.settings.sync.push_batch))
        if not entries:
            break
        for entry in entries:
            if ctx.stopping.is_set():
                return stats
            sends += 1
            try:
                await _send(ctx, entry, mappings, stats)
            finally:
                ctx.observer.progress("push", stats.as_dict())
    return stats


async def _send(ctx: SyncContext, e: Any, mappings: Mappings, stats: PushStats) -> None:
    eid, tid = e.id, e.tracking_id
    link = await ctx.db(lambda conn: state.get_link(conn, tid))
    unit = core.posting_unit(link, mappings) if link is not None else None
    if link is None or link.closed or unit is None:
        code = ("laporan_ditutup" if link is not None and link.lapor_status in m.CLOSED_STATUSES
                else "bukan_disposisi")
        await ctx.db(lambda conn: state.mark_failed(conn, eid, code))
        stats.failed += 1
        log.warning("followup_failed", tracking_id=tid, outbox_id=eid, code=code)
        return
    request = m.FollowUpRequest(unit, e.lapor_status, e.text)
    try:
        receipt = await ctx.client.post_follow_up(
            tid, request, e.idempotency_key)
    except (UnicodeError, ValueError, TypeError, OverflowError) as exc:
        # This entry's own data cannot be sent: it alone fails, the others go on.
        await ctx.db(lambda conn: state.mark_failed(conn, eid, LOCAL_DATA_ERROR))
        stats.failed += 1
        log.warning("followup_failed", tracking_id=tid, outbox_id=eid, code=LOCAL_DATA_ERROR,
                    error=exc.__class__.__name__)
        return
    except Rejected as exc:
        kode = exc.kode
        await ctx.db(lambda conn: state.mark_failed(conn, eid, kode))
        stats.failed += 1
        log.warning("followup_failed", tracking_id=tid, outbox_id=eid, code=kode)
        return
    except LaporUnavailable as exc:
        attempts = e.attempts + 1
        delay = backoff(attempts, 30.0, ctx.config.settings.sync.max_backoff_s, 0.0)
        reason = exc.kode or "unavailable"
        await ctx.db(lambda conn: state.mark_retry(conn, eid, reason, delay, ctx.now()))
        stats.deferred += 1
        raise

    def done(conn: Connection) -> None:
        state.mark_sent(conn, eid, receipt.id, ctx.now())
        state.add_seen(conn, tid, receipt.id)
        # LAPOR!'s clock: the follow-up exists now, at the time LAPOR! gave it.
        facts = followups.get_facts(conn, [tid]).get(tid)
        if facts is not None:
            sent = m.FollowUp(receipt.id, "instansi", unit, e.lapor_status, "", receipt.at)
            followups.save(conn, core.clock.posted(facts, sent, mappings), facts, ctx.now())

    await ctx.db(done)
    stats.pushed += 1
    stats.replayed += int(receipt.replayed)
    log.info("followup_sent", tracking_id=tid, outbox_id=eid, replayed=receipt.replayed)
