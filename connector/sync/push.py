"""The push shell: officer changes become outbox entries; entries become follow-ups."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import assert_never

import structlog
from sqlalchemy import Connection

from connector.domain import FailReason, OutboxState
from connector.errors import (
    AnswerUnreadable,
    LaporUnavailable,
    Rejected,
    RetryLater,
    SkipRecord,
    VerifyFirst,
)
from connector.lapor import models as m
from connector.lapor import reasons
from connector.mappings import Mappings
from connector.notify import queue as notify
from connector.store import followups, intents, keys, state
from connector.store.state import OutboxEntry
from connector.sync import core
from connector.sync.context import SyncContext
from connector.timeutil import as_utc
from connector.tracker.base import Tracker

log = structlog.get_logger("connector.push")
MAX_SENDS_PER_CYCLE = 500


@dataclass
class PushStats:
    queued: int = 0
    pushed: int = 0
    replayed: int = 0
    failed: int = 0
    deferred: int = 0
    verified: int = 0  # confirmed by reading the complaint, not by a POST answer
    unconfirmed: int = 0  # delivered, answer unreadable
    key_changes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def ingest(
    conn: Connection, tracker: Tracker, mappings: Mappings, now: datetime, batch: int = 500
) -> int:
    """Turn officer changes after the tracker cursor into outbox entries (same transaction)."""
    added = 0
    while True:
        cursor = state.get_value(conn, keys.StateKey.TRACKER_CURSOR)
        changes = tracker.officer_changes(conn, cursor, batch)
        if not changes:
            return added
        nonce = state.db_nonce(conn)
        for change in changes:
            plan = core.plan_outbox(
                change,
                state.get_link(conn, change.tracking_id),
                mappings,
                state.last_queued_status(conn, change.tracking_id),
            )
            if plan is not None and _enqueue(conn, plan, nonce, now):
                added += 1
        state.set_value(conn, keys.StateKey.TRACKER_CURSOR, changes[-1].change_id)


def _enqueue(conn: Connection, plan: core.FollowUpPlan, nonce: str, now: datetime) -> bool:
    """The core's plan into the outbox, with its key and its failure in LAPOR!'s words."""
    failed = core.failed_at_once(plan)
    return state.enqueue(
        conn,
        plan,
        reasons.idempotency_key(nonce, plan.tracking_id, plan.change_id),
        reasons.wire_code(failed) if failed is not None else None,
        now,
    )


async def ingest_port(ctx: SyncContext, mappings: Mappings) -> int:
    """Officer changes from a tracker outside the database: read them outside any
    transaction, then write their outbox entries and the new cursor in one. A tracker
    that cannot be reached is noted (``status``) and follow-ups already queued still go."""
    port, key = ctx.tracker, keys.tracker_cursor(ctx.tracker.kind)
    cursor = await ctx.db(lambda conn: state.get_value(conn, key))
    try:
        changes, new_cursor = await port.changes_since(cursor)
    except RetryLater as exc:
        now, error = ctx.now(), str(exc)
        await ctx.db(lambda conn: intents.unreachable(conn, error, now))
        log.warning("tracker_unreachable", kind=port.kind, error=error)
        return 0

    def tx(conn: Connection) -> int:
        now = ctx.now()
        added = 0
        nonce = state.db_nonce(conn)
        for change in changes:
            tid = change.tracking_id
            link = state.get_link(conn, tid)
            if link is None:
                # An issue carrying a tracking id this connector never linked (made by
                # hand, or by another installation): nothing of ours to answer.
                log.info("tracker_change_unlinked", kind=port.kind, tracking_id=tid)
                continue
            plan = core.plan_outbox(change, link, mappings, state.last_queued_status(conn, tid))
            if plan is not None and _enqueue(conn, plan, nonce, now):
                added += 1
            if change.status is not None:
                intents.set_officer_status(
                    conn, tid, port.kind, change.ticket_ref, change.status, now
                )
        if new_cursor is not None and new_cursor != cursor:
            state.set_value(conn, key, new_cursor)
        intents.contact(conn, now)
        return added

    return await ctx.db(tx)


async def push(ctx: SyncContext) -> PushStats:
    stats = PushStats()
    ctx.observer.progress("push", stats.as_dict())  # all zero: a new cycle's totals begin
    mappings = ctx.mappings()
    inline = ctx.sink.in_database
    if inline is not None:  # the built-in tracker: read in the same transaction
        stats.queued = await ctx.db(lambda conn: ingest(conn, inline, mappings, ctx.now()))
    else:
        stats.queued = await ingest_port(ctx, mappings)
    sends = 0
    while sends < MAX_SENDS_PER_CYCLE:
        entries = await ctx.db(
            lambda conn: state.due_entries(conn, ctx.now(), ctx.config.settings.sync.push_batch)
        )
        if not entries:
            break
        for entry in entries:
            if ctx.stopping.is_set():
                return stats
            sends += 1
            try:
                # Every log line of this entry names its complaint (and no other field).
                with structlog.contextvars.bound_contextvars(tracking_id=entry.tracking_id):
                    await _send(ctx, entry, mappings, stats)
            finally:
                ctx.observer.progress("push", stats.as_dict())
    return stats


async def _send(ctx: SyncContext, e: OutboxEntry, mappings: Mappings, stats: PushStats) -> None:
    eid, tid = e.id, e.tracking_id
    link = await ctx.db(lambda conn: state.get_link(conn, tid))
    step = core.send_step(e.state, e.unit_id, link, mappings)
    match step:
        case core.Verify():
            await _verify(ctx, e, step.unit, mappings, stats)
        case core.Fail():
            await _fail(ctx, eid, reasons.wire_code(step.reason), stats)
        case core.LookUp():
            looked = await _look(ctx, e, e.unit_id, mappings, stats)
            if looked is not None and not await _confirm(ctx, e, *looked, stats):
                await _fail(ctx, eid, reasons.wire_code(step.reason), stats)
        case core.Post():
            if step.fix_unit:  # fixed from now on, so every replay has the same body
                await ctx.db(lambda conn: state.set_unit(conn, eid, step.unit))
            await _post(ctx, e, step.unit, mappings, stats)
        case _:
            assert_never(step)


async def _post(
    ctx: SyncContext, e: OutboxEntry, unit: int, mappings: Mappings, stats: PushStats
) -> None:
    eid, tid = e.id, e.tracking_id
    ttl = ctx.config.settings.lapor.idempotency_ttl_s
    key = e.idempotency_key
    key_used_at = e.key_first_used_at
    never_tried = e.first_attempt_at is None
    if core.must_verify(e.state, key_used_at, ctx.now(), ttl, e.created_at):
        outcome = await _verify(ctx, e, unit, mappings, stats)
        if outcome is None:
            return  # settled (sent, failed or waiting for another check)
        key = outcome
        key_used_at = ctx.now()
    elif key_used_at is None:
        # Committed before the POST: a crash after it still leaves the first attempt known.
        now = ctx.now()
        await ctx.db(lambda conn: state.start_attempt(conn, eid, now))
        key_used_at = now
    window_end = core.post_window_end(key_used_at, ttl)

    async def guard() -> None:
        # Before every POST attempt, also the retries inside one call: the lease is ours
        # (the empty transaction is fenced), and LAPOR! still remembers the key.
        await ctx.db(_fence)
        if ctx.now() >= window_end:
            raise VerifyFirst(
                f"record {tid}: LAPOR! did not answer within the Idempotency-Key's "
                "lifetime; the follow-up is looked up on LAPOR! before any new "
                "POST"
            )

    request = m.FollowUpRequest(unit, e.lapor_status, e.text)
    try:
        receipt = await ctx.client.post_follow_up(tid, request, key, guard=guard)
    except (UnicodeError, ValueError, TypeError, OverflowError) as exc:
        # This entry's own data cannot be sent: it alone fails, the others go on. TypeError
        # too: raised while this body is encoded for the wire, it is the entry's, not ours.
        log.warning("followup_unsendable", outbox_id=eid, error=exc.__class__.__name__)
        await _fail(ctx, eid, reasons.wire_code(FailReason.LOCAL_DATA_INVALID), stats)
        return
    except Rejected as exc:
        if core.rekey_on_refusal(reasons.fail_reason(exc.kode), e.key_changes):
            # LAPOR! holds the key for another body: maybe our own post, made by a lost
            # database for the unit that held the complaint then (a change read again after
            # a restore, the complaint redisposed since). Looked for before a new key.
            looked = await _look(ctx, e, unit, mappings, stats)
            if looked is not None and not await _confirm(ctx, e, *looked, stats):
                await _rekey_after_collision(ctx, e, stats)
            return
        await _fail(ctx, eid, exc.kode, stats)
        return
    except AnswerUnreadable:
        now = ctx.now()
        await ctx.db(
            lambda conn: state.mark_unconfirmed(conn, eid, core.UNCONFIRMED_FIRST_CHECK_S, now)
        )
        stats.unconfirmed += 1
        log.warning("followup_answer_unreadable", outbox_id=eid)
        return
    except VerifyFirst:
        # Not this entry's fault: the next cycle verifies it (the job itself backs off).
        await _defer(ctx, e, "verify_first", stats, delay_s=0.0)
        raise
    except LaporUnavailable as exc:
        await _defer(ctx, e, exc.kode or "unavailable", stats)
        raise

    await _sent(
        ctx,
        e,
        unit,
        receipt,
        mappings,
        stats,
        restored=receipt.replayed
        and core.looks_restored(never_tried, as_utc(receipt.at), key_used_at),
    )


async def _sent(
    ctx: SyncContext,
    e: OutboxEntry,
    unit: int,
    receipt: m.Receipt,
    mappings: Mappings,
    stats: PushStats,
    restored: bool,
) -> None:
    """LAPOR! has the follow-up: the entry is sent, and the complaint's clock knows it."""
    eid, tid = e.id, e.tracking_id

    def done(conn: Connection) -> None:
        state.mark_sent(conn, eid, receipt.id, ctx.now())
        state.add_seen(conn, tid, receipt.id)
        if restored:
            state.note_restored(conn, ctx.now())
        # LAPOR!'s clock: the follow-up exists now, at the time LAPOR! gave it.
        facts = followups.get_facts(conn, [tid]).get(tid)
        if facts is not None:
            sent = m.FollowUp(receipt.id, "instansi", unit, e.lapor_status, "", receipt.at)
            followups.save(conn, core.clock.posted(facts, sent, mappings), facts, ctx.now())

    await ctx.db(done)
    stats.pushed += 1
    stats.replayed += int(receipt.replayed)
    log.info("followup_sent", outbox_id=eid, replayed=receipt.replayed)
    if restored:
        log.warning(
            "followup_already_on_lapor",
            outbox_id=eid,
            hint="this database never sent it: restored from a backup?",
        )


async def _rekey_after_collision(ctx: SyncContext, e: OutboxEntry, stats: PushStats) -> None:
    """LAPOR! holds this key for another body: this database reuses keys that another copy
    of it (a restored backup) already used. Our body was never posted under that key, so
    the database gets a new nonce and the entry a key made with it."""
    now = ctx.now()

    def tx(conn: Connection) -> None:
        nonce = state.rotate_nonce(conn)
        key = reasons.idempotency_key(nonce, e.tracking_id, e.change_id, e.key_changes + 1)
        state.change_key(conn, e.id, key, now)
        state.mark_retry(conn, e.id, reasons.wire_code(FailReason.KEY_TAKEN), 0.0, now)

    await ctx.db(tx)
    stats.key_changes += 1
    log.warning(
        "idempotency_key_collision",
        outbox_id=e.id,
        hint="the database has a new nonce (restored from a backup?)",
    )


def _fence(conn: Connection) -> None:
    """Nothing to write: committing it checks (and renews) the instance lease."""


async def _fail(ctx: SyncContext, eid: int, code: str, stats: PushStats) -> None:
    now = ctx.now()

    def tx(conn: Connection) -> None:
        state.mark_failed(conn, eid, code)
        notify.refused(conn, ctx.config.settings.notify, eid, code, now)  # to the admins

    await ctx.db(tx)
    stats.failed += 1
    log.warning("followup_failed", outbox_id=eid, code=code)


async def _defer(
    ctx: SyncContext, e: OutboxEntry, reason: str, stats: PushStats, delay_s: float | None = None
) -> None:
    attempts = e.attempts + 1
    delay = (
        delay_s
        if delay_s is not None
        else core.defer_delay_s(attempts, ctx.config.settings.sync.max_backoff_s)
    )
    now = ctx.now()
    await ctx.db(lambda conn: state.mark_retry(conn, e.id, reason, delay, now))
    stats.deferred += 1


async def _look(
    ctx: SyncContext, e: OutboxEntry, unit: int | None, mappings: Mappings, stats: PushStats
) -> tuple[m.FollowUp | None, timedelta] | None:
    """Read the complaint for our own post (by ``unit`` or another unit of an agency that
    held the complaint): (the post or None, how far LAPOR!'s clock is ahead of ours), or
    None when the entry is settled for now (failed: the complaint is gone or not ours;
    deferred: unreadable or unreachable)."""
    eid, tid = e.id, e.tracking_id
    try:
        complaint = await ctx.client.complaint(tid)
        # Follow-ups are dated by LAPOR!'s clock, our first attempt by ours.
        offset = await ctx.client.ping() - ctx.now()
    except SkipRecord as exc:
        failed = core.verify_refused(exc.reason)
        if failed is not None:
            await _fail(ctx, eid, reasons.wire_code(failed), stats)
        else:  # an answer we could not read this time: look again later, never post blindly
            await _defer(ctx, e, exc.reason, stats)
        return None
    except LaporUnavailable as exc:
        await _defer(ctx, e, exc.kode or "unavailable", stats)
        raise

    def known(conn: Connection) -> tuple[frozenset[str], frozenset[int]]:
        units = core.own_units(
            unit, state.get_link(conn, tid), followups.get_facts(conn, [tid]).get(tid), mappings
        )
        return state.taken_remote_ids(conn, tid, eid), units

    taken, units = await ctx.db(known)
    since = e.first_attempt_at or e.created_at
    return core.find_own_post(
        complaint.follow_ups, units, e.lapor_status, e.text, since, taken, offset
    ), offset


async def _confirm(
    ctx: SyncContext, e: OutboxEntry, found: m.FollowUp | None, offset: timedelta, stats: PushStats
) -> bool:
    """Mark the entry sent when its post was ``found`` on LAPOR!; whether it was."""
    if found is None:
        return False
    eid, tid = e.id, e.tracking_id
    restored = core.looks_restored(e.first_attempt_at is None, found.at - offset, ctx.now())

    def done(conn: Connection) -> None:
        state.mark_sent(conn, eid, found.id, ctx.now())
        state.add_seen(conn, tid, found.id)
        if restored:
            state.note_restored(conn, ctx.now())
            log.warning(
                "followup_already_on_lapor",
                outbox_id=eid,
                hint="this database never sent it: restored from a backup?",
            )

    await ctx.db(done)
    stats.pushed += 1
    stats.verified += 1
    log.info("followup_confirmed", outbox_id=eid)
    return True


async def _verify(
    ctx: SyncContext, e: OutboxEntry, unit: int, mappings: Mappings, stats: PushStats
) -> str | None:
    """Read the complaint for our own post before any POST that could double it.

    Returns the key to POST with (a fresh one: LAPOR! may have forgotten the old), or None
    when the entry is settled for now: found (sent), refused, or unconfirmed and not seen yet.
    """
    eid, tid = e.id, e.tracking_id
    looked = await _look(ctx, e, unit, mappings, stats)
    if looked is None or await _confirm(ctx, e, *looked, stats):
        return None
    now = ctx.now()
    if e.state == OutboxState.UNCONFIRMED:
        # LAPOR! said it was created: never post it again on our own; look a few more times.
        delay = core.check_delay_s(e.checks + 1, ctx.config.settings.sync.max_backoff_s)
        checks = await ctx.db(lambda conn: state.mark_check_missed(conn, eid, delay, now))
        if core.unconfirmed_gives_up(checks):
            await _fail(ctx, eid, reasons.wire_code(FailReason.UNCONFIRMED), stats)
        return None

    def rekey(conn: Connection) -> str:
        key = reasons.idempotency_key(state.db_nonce(conn), tid, e.change_id, e.key_changes + 1)
        state.change_key(conn, eid, key, now)
        return key

    key = await ctx.db(rekey)
    stats.key_changes += 1
    log.warning("followup_key_changed", outbox_id=eid, key_changes=e.key_changes + 1)
    return key
