"""Decisions into the database: one part of the feed decided on fresh state and committed
with the watermark, in one transaction (the pull's commit).

The watermark invariant lives in ``commit``: the watermark moves only in the transaction
that commits every decision of the items at or before it, and only forward (never past
LAPOR!'s clock: ``core.part_high``). A part whose values the database refuses is applied
again record by record, so one bad record is quarantined and never holds the watermark.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import assert_never

import structlog
from sqlalchemy import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from connector.errors import RECORD_ERRORS
from connector.lapor import models as m
from connector.notify import queue as notify
from connector.store import followups, state
from connector.sync import attachments, core
from connector.sync.attachments import NewFiles
from connector.sync.context import SyncContext
from connector.tracker.base import Direction

log = structlog.get_logger("connector.pull")
# A detail request's outcome: the complaint, or the record set aside.
Fetched = m.Complaint | core.Hold | core.Quarantine


@dataclass
class Work:
    """Feed items between fetch and commit."""

    items: list[str]
    fetched: dict[str, Fetched]
    bad: list[core.Hold | core.Quarantine]
    high: datetime | None  # where the watermark may move once these are committed

    @staticmethod
    def merge(works: list[Work]) -> Work:
        highs = [w.high for w in works if w.high is not None]
        return Work(
            [i for w in works for i in w.items],
            {k: v for w in works for k, v in w.fetched.items()},
            [b for w in works for b in w.bad],
            max(highs) if highs else None,
        )


@dataclass
class Committed:
    watermark: datetime | None
    decisions: list[core.Decision]
    new_files: NewFiles


@dataclass
class _State:
    """What the decisions are made and applied against, read in their transaction."""

    held: dict[str, core.Held]
    facts: dict[str, core.clock.Facts]


def commit(ctx: SyncContext, conn: Connection, work: Work) -> Committed:
    """Decide on fresh state and commit the part with its watermark, in one transaction."""
    decisions, known = _decide(ctx, conn, work)
    now = ctx.now()
    try:
        with conn.begin_nested():
            apply(ctx, conn, decisions, known, now)
    except Exception as exc:
        if not _record_caused(exc):
            raise
        _apply_each(ctx, conn, decisions, known)
    # The one place the watermark moves: after everything before it, in its transaction.
    if work.high is None:
        watermark = state.get_watermark(conn)
    else:
        watermark = state.advance_watermark(conn, work.high, now)
    new_files = _new_files(ctx, conn, work, decisions)
    return Committed(watermark, decisions, new_files)


def _decide(ctx: SyncContext, conn: Connection, work: Work) -> tuple[list[core.Decision], _State]:
    mappings = ctx.mappings()
    instansi = ctx.config.settings.lapor.instansi_id
    ids = list(work.fetched)
    links = state.get_links(conn, ids)
    known = _State(state.get_held(conn, ids), {})
    own = state.own_posts(conn, ids)
    local = ctx.sink.statuses(conn, {tid: link.ticket_ref for tid, link in links.items()})
    known.facts = followups.get_facts(conn, ids)
    decisions: list[core.Decision] = list(work.bad)
    for tid, got in work.fetched.items():
        if not isinstance(got, m.Complaint):
            decisions.append(got)
            continue
        link = links.get(tid)
        try:
            decisions.append(
                core.decide(
                    got,
                    link,
                    mappings,
                    instansi,
                    own.get(tid, ()),
                    local.get(tid) if link else None,
                    known.facts.get(tid),
                )
            )
        except RECORD_ERRORS as exc:  # e.g. OverflowError on a date at the calendar's end
            decisions.append(core.undecidable(got, exc.__class__.__name__))
        if got.repairs:
            log.bind(tracking_id=tid).info("record_repaired", repairs=list(got.repairs))
    return decisions, known


def _new_files(
    ctx: SyncContext, conn: Connection, work: Work, decisions: list[core.Decision]
) -> NewFiles:
    """The attachments of the tickets just created, noted as due before any download."""
    if not ctx.config.settings.attachments.download:
        return []
    created = [d.tracking_id for d in decisions if isinstance(d, core.Create)]
    refs = state.get_links(conn, created)
    new_files: NewFiles = []
    for tid in created:
        complaint = work.fetched.get(tid)
        if isinstance(complaint, m.Complaint) and complaint.attachments and tid in refs:
            new_files.append((refs[tid].ticket_ref, tid, complaint.attachments))
    attachments.note_due(ctx, conn, new_files)
    return new_files


def _record_caused(exc: BaseException) -> bool:
    """Whether a database error comes from one record's values (too long, NUL on
    PostgreSQL, unencodable text, a constraint) rather than from the database itself.
    ``TypeError`` counts here, unlike in ``RECORD_ERRORS``: raised while one record's
    values are bound, in its own savepoint, it is that record's (a driver refusing a
    value), and quarantining it keeps the rest of the part committing."""
    if isinstance(
        exc, DataError | IntegrityError | UnicodeError | ValueError | OverflowError | TypeError
    ):
        return True
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def _apply_each(
    ctx: SyncContext, conn: Connection, decisions: list[core.Decision], known: _State
) -> None:
    """The part again, one record per savepoint: the one whose values the database
    refuses is quarantined (in ``decisions`` too), and the rest commits."""
    for n, d in enumerate(decisions):
        try:
            with conn.begin_nested():
                apply(ctx, conn, [d], known, ctx.now())
        except Exception as exc:
            if not _record_caused(exc):
                raise
            log.bind(tracking_id=d.tracking_id).warning(
                "record_refused_by_storage", error=exc.__class__.__name__
            )
            decisions[n] = core.refused_by_storage(d, exc.__class__.__name__)
            apply(ctx, conn, [decisions[n]], known, ctx.now())


def apply(
    ctx: SyncContext, conn: Connection, decisions: list[core.Decision], known: _State, now: datetime
) -> None:
    """Execute decisions inside the caller's transaction (the watermark is ``commit``'s)."""
    sink = ctx.sink
    creates = [d for d in decisions if isinstance(d, core.Create)]
    refs = sink.create(conn, [d.ticket for d in creates], now)
    state.insert_links(
        conn, [replace(d.link, ticket_ref=ref) for d, ref in zip(creates, refs, strict=True)], now
    )
    for d in decisions:
        _apply_one(ctx, conn, d, known, now)
    followups.save_many(
        conn,
        [
            (d.facts, known.facts.get(d.tracking_id))
            for d in decisions
            if isinstance(d, core.Linked)
        ],
        now,
    )
    _notify(ctx, conn, creates, decisions, now)


def _apply_one(
    ctx: SyncContext, conn: Connection, d: core.Decision, known: _State, now: datetime
) -> None:
    rlog = log.bind(tracking_id=d.tracking_id)  # once per record
    match d:
        case core.Hold() | core.Quarantine():
            state.hold(conn, d.tracking_id, d.reason, d.detail, d.lapor_updated_at, d.unit_ids, now)
            rlog.info("record_held", action=d.kind.value, reason=d.reason)
            return
        case core.Create():
            pass  # inserted by ``apply``, all at once
        case core.Update():
            ctx.sink.update(conn, d.link.ticket_ref, d.tracking_id, d.update, now)
            _save_link(conn, d, now)
        case core.Unchanged():
            _save_link(conn, d, now)
        case _:
            assert_never(d)
    if d.tracking_id in known.held:
        state.release(conn, d.tracking_id)
    if not isinstance(d, core.Unchanged):
        rlog.debug("record_synced", action=d.kind.value)


def _notify(
    ctx: SyncContext,
    conn: Connection,
    creates: list[core.Create],
    decisions: list[core.Decision],
    now: datetime,
) -> None:
    """E-mail about new complaints and reporters' replies, in this same transaction."""
    cfg = ctx.config.settings.notify
    if not cfg.enabled:
        return
    notify.new_complaints(
        conn,
        cfg,
        ctx.mappings(),
        [
            notify.Complaint(
                d.tracking_id,
                d.ticket.agency,
                d.ticket.title,
                d.ticket.confidential,
                d.facts.current.due_at,
            )
            for d in creates
        ],
        now,
    )
    for d in decisions:
        if isinstance(d, core.Update) and any(
            msg.direction == Direction.IN and msg.author == core.AUTHORS["pelapor"]
            for msg in d.update.messages
        ):
            notify.reporter_replied(conn, cfg, ctx.mappings(), d.tracking_id, d.link.agency, now)


def _save_link(conn: Connection, d: core.Update | core.Unchanged, now: datetime) -> None:
    # Pending follow-ups of a complaint closed or moved away are not failed here: the
    # link is saved closed, and the push looks each up on LAPOR! first (``LookUp``), since
    # after a restore the lost database may have sent it before the close.
    state.save_link(conn, d.link, now)
