"""The built-in tracker: tickets, messages and status history in the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, CursorResult, Row, bindparam, func, insert, or_, select, update

from connector import privacy
from connector.domain import ChangeId
from connector.errors import TrackerRefusal
from connector.privacy import PrivacyChange
from connector.store.schema import messages, status_history, tickets, tracker_changes
from connector.timeutil import as_utc, iso, iso_wita
from connector.tracker.base import (
    Direction,
    NewMessage,
    NewTicket,
    OfficerAction,
    OfficerChange,
    TicketUpdate,
    Tracker,
)
from connector.tracker.port import (
    CREATE,
    MESSAGE,
    UPDATE,
    Intent,
    Reporting,
    TrackerPort,
)
from connector.tracker.rows import (
    AttachmentMeta,
    MessageJSON,
    Reporter,
    TicketJSON,
)

if TYPE_CHECKING:
    from connector.store import Store

MAX_REPLY = 5000
T = TypeVar("T")


class BuiltinTracker(Tracker, TrackerPort):
    """Both interfaces: ``Tracker`` (in the pull's transaction, the fast path) and the
    async ``TrackerPort`` (each call one transaction of its own, given the store)."""

    kind = "builtin"

    def __init__(self, local_statuses: tuple[str, ...], store: Store | None = None):
        self.local_statuses = local_statuses
        self._store = store

    # -- the port ------------------------------------------------------------------------

    @property
    def inline(self) -> Tracker:
        return self

    def bind(self, store: Store) -> None:
        self._store = store

    def _run(self, fn: Callable[[Connection], T]) -> T:
        if self._store is None:
            raise RuntimeError("the built-in tracker is not bound to a store")
        return self._store.run(fn)

    async def apply(self, intent: Intent) -> str:
        # One transaction: applied whole or not at all, so a repeat finds it done.
        return self._run(lambda conn: self.apply_now(conn, intent, datetime.now(UTC)))

    def apply_now(self, conn: Connection, intent: Intent, now: datetime) -> str:
        ref = self._find(conn, intent.tracking_id)
        if intent.kind == CREATE:
            if ref is None:
                ref = self.create_ticket(conn, intent.ticket(), now)
            return ref
        if ref is None:
            raise TrackerRefusal(f"no ticket for tracking id {intent.tracking_id}", 1)
        if intent.kind == UPDATE:
            self.apply_update(conn, ref, intent.update(), now)
        elif intent.kind == MESSAGE:
            msg = intent.message()
            q = select(messages.c.id).where(
                messages.c.ticket_id == int(ref),
                messages.c.text == msg.text,
                messages.c.at == msg.at,
            )
            if msg.followup_id is not None:
                q = select(messages.c.id).where(
                    messages.c.ticket_id == int(ref),
                    messages.c.lapor_followup_id == msg.followup_id,
                )
            if conn.execute(q).first() is None:
                self._add_messages(conn, int(ref), (msg,), "lapor")
        return ref

    def _find(self, conn: Connection, tracking_id: str) -> str | None:
        found = conn.execute(
            select(tickets.c.id).where(tickets.c.tracking_id == tracking_id)
        ).scalar_one_or_none()
        return None if found is None else str(found)

    async def find(self, tracking_id: str) -> str | None:
        return self._run(lambda conn: self._find(conn, tracking_id))

    async def changes_since(
        self, cursor: str | None, limit: int = 500
    ) -> tuple[list[OfficerChange], str | None]:
        found = self._run(lambda conn: self.officer_changes(conn, cursor, limit))
        if not found:
            return [], cursor
        return (
            [replace(c, change_id=ChangeId.builtin(c.change_id)) for c in found],
            found[-1].change_id,
        )

    def reporting(self) -> Reporting:
        return self

    def desk(self) -> BuiltinTracker:
        return self

    def create_ticket(self, conn: Connection, ticket: NewTicket, now: datetime) -> str:
        return self.create_tickets(conn, [ticket], now)[0]

    def create_tickets(self, conn: Connection, new: list[NewTicket], now: datetime) -> list[str]:
        if not new:
            return []
        # One executemany for the batch, then the new ids by tracking id (unique): portable
        # and far cheaper than RETURNING row by row on SQLite.
        conn.execute(insert(tickets), [_ticket_values(t, now) for t in new])
        by_tid = dict(
            conn.execute(
                select(tickets.c.tracking_id, tickets.c.id).where(
                    tickets.c.tracking_id.in_([t.tracking_id for t in new])
                )
            ).all()
        )
        ids = [by_tid[t.tracking_id] for t in new]
        conn.execute(
            insert(status_history),
            [
                {
                    "ticket_id": i,
                    "from_status": None,
                    "to_status": t.status,
                    "source": "lapor",
                    "reason": "dibuat dari LAPOR!",
                    "at": now,
                }
                for i, t in zip(ids, new, strict=True)
            ],
        )
        msgs = [(i, m) for i, t in zip(ids, new, strict=True) for m in t.messages]
        if msgs:
            conn.execute(insert(messages), [_message_values(i, m, "lapor") for i, m in msgs])
        return [str(i) for i in ids]

    def statuses(self, conn: Connection, refs: list[str]) -> dict[str, str]:
        ids = [i for i in map(_ticket_id, refs) if i is not None]
        q = select(tickets.c.id, tickets.c.status).where(tickets.c.id.in_(ids))
        return {str(i): s for i, s in conn.execute(q)}

    def apply_update(self, conn: Connection, ref: str, upd: TicketUpdate, now: datetime) -> None:
        ticket_id = int(ref)
        row = conn.execute(select(tickets).where(tickets.c.id == ticket_id)).one()
        values: dict[str, object] = {"lapor_status": upd.lapor_status, "updated_at": now}
        notes = self._privacy(conn, row, upd, values, now)
        if upd.agency is not None:
            values["agency"] = upd.agency
        if upd.due_at is not None:
            values["due_at"] = upd.due_at
        if upd.status is not None and upd.status != row.status:
            values["status"] = upd.status
            conn.execute(
                insert(status_history),
                {
                    "ticket_id": ticket_id,
                    "from_status": row.status,
                    "to_status": upd.status,
                    "source": "lapor",
                    "reason": (upd.reason or "")[:200] or None,
                    "at": now,
                },
            )
        conn.execute(
            update(tickets).where(tickets.c.id == bindparam("tid")), {"tid": ticket_id, **values}
        )
        self._add_messages(conn, ticket_id, upd.messages + notes, "lapor")

    def _privacy(
        self,
        conn: Connection,
        row: Row[Any],
        upd: TicketUpdate,
        values: dict[str, object],
        now: datetime,
    ) -> tuple[NewMessage, ...]:
        """Edited text replaces the local copy; anonim later removes the reporter from the
        ticket, its messages and attachment metadata; rahasia later restricts it."""
        notes: list[str] = []
        if upd.title is not None and upd.title != row.title:
            values["title"] = upd.title
        if upd.body is not None and upd.body != row.body:
            values["body"] = upd.body
        if "title" in values or "body" in values:
            notes.append("Judul/isi laporan diubah di LAPOR!; salinan di tiket diganti.")
        change = PrivacyChange.of(
            upd.anonymous,
            upd.confidential,
            was_anonymous=row.anonymous,
            was_confidential=row.confidential,
        )
        if change.forget_reporter:
            self._forget_reporter(conn, row, upd, values)
            notes.append("Laporan kini anonim di LAPOR!; identitas pelapor dihapus dari tiket.")
        if change.restrict:
            values["confidential"] = True
            notes.append("Laporan kini rahasia di LAPOR!; tiket dibatasi (restricted).")
        return tuple(NewMessage(Direction.INTERNAL, "Konektor LAPOR!", n, now) for n in notes)

    def _forget_reporter(
        self, conn: Connection, row: Row[Any], upd: TicketUpdate, values: dict[str, object]
    ) -> None:
        """Apply a later anonim: the reporter off the ticket, its messages and attachment
        metadata (``connector/privacy.py`` decides what counts as their identity)."""
        ident = privacy.identity((row.reporter_name, row.reporter_email, row.reporter_phone))
        values.update(anonymous=True, reporter_name=None, reporter_email=None, reporter_phone=None)
        for key, new in (("title", upd.title), ("body", upd.body)):  # as set above
            values[key] = privacy.scrub(getattr(row, key) if new is None else new, ident)
        if row.attachments:
            values["attachments"] = json.dumps(
                privacy.scrub_json(json.loads(row.attachments), ident)
            )
        for m in conn.execute(
            select(messages.c.id, messages.c.text, messages.c.author).where(
                messages.c.ticket_id == row.id
            )
        ).all():
            text, author = privacy.scrub(m.text, ident), privacy.scrub(m.author, ident)
            if (text, author) != (m.text, m.author):
                conn.execute(
                    update(messages).where(messages.c.id == m.id).values(text=text, author=author)
                )

    def record_attachments(
        self, conn: Connection, ref: str, attachments: Sequence[AttachmentMeta]
    ) -> None:
        conn.execute(
            update(tickets)
            .where(tickets.c.id == int(ref))
            .values(attachments=json.dumps(list(attachments)))
        )

    def attachments_to_retry(
        self, conn: Connection, limit: int
    ) -> list[tuple[str, str, list[AttachmentMeta]]]:
        q = (
            select(tickets.c.id, tickets.c.tracking_id, tickets.c.attachments)
            .where(tickets.c.attachments.contains('"retry": true'))
            .limit(limit)
        )
        return [(str(i), tid, json.loads(meta)) for i, tid, meta in conn.execute(q)]

    def _add_messages(
        self, conn: Connection, ticket_id: int, msgs: tuple[NewMessage, ...], source: str
    ) -> None:
        if msgs:
            conn.execute(insert(messages), [_message_values(ticket_id, m, source) for m in msgs])

    def officer_changes(
        self, conn: Connection, cursor: str | None, limit: int
    ) -> list[OfficerChange]:
        q = (
            select(tracker_changes, tickets.c.tracking_id)
            .join(tickets, tickets.c.id == tracker_changes.c.ticket_id)
            .where(tracker_changes.c.id > int(cursor or 0))
            .order_by(tracker_changes.c.id)
            .limit(limit)
        )
        return [
            OfficerChange(
                str(r.id),
                str(r.ticket_id),
                r.tracking_id,
                r.status,
                r.ticket_status,
                r.reply,
                as_utc(r.at),
            )
            for r in conn.execute(q)
        ]

    # -- the officer's side (the `tickets` commands) ---------------------------------------

    def officer_update(
        self, conn: Connection, ticket_id: str, action: OfficerAction, now: datetime
    ) -> OfficerChange | None:
        """Record an officer action and, when it is public, its change record."""
        action = _checked_action(action, self.local_statuses)
        row = _open_ticket(conn, ticket_id, action)
        new_status = action.status if action.status not in (None, row.status) else None
        change_id: int | None = None
        if new_status is not None or action.reply:
            # The change record first: the status and reply rows carry its id, so the
            # desk shows each reply's delivery (outbox ``builtin:<id>``).
            change_id = _new_id(
                conn.execute(
                    insert(tracker_changes).values(
                        ticket_id=row.id,
                        status=new_status,
                        ticket_status=new_status or row.status,
                        reply=action.reply or None,
                        at=now,
                    )
                )
            )
        if new_status is not None:
            _officer_status(conn, row.id, row.status, new_status, change_id, now)
        if action.note:
            self._add_messages(
                conn,
                row.id,
                (NewMessage(Direction.INTERNAL, action.author, action.note, now),),
                "officer",
            )
        if action.reply:
            _officer_reply(conn, row.id, action.author, action.reply, change_id, now)
        if change_id is None:
            return None
        return OfficerChange(
            str(change_id),
            str(row.id),
            row.tracking_id,
            new_status,
            new_status or row.status,
            action.reply or None,
            now,
        )

    # -- reading ------------------------------------------------------------------------

    def list_tickets(
        self,
        conn: Connection,
        agency: str | None = None,
        status: str | None = None,
        also: list[str] | None = None,
    ) -> list[TicketJSON]:
        """Tickets, filtered; ``also``: tracking ids listed under ``agency`` besides its
        own (a complaint disposed to several agencies is visible to each)."""
        q = select(tickets).order_by(tickets.c.id)
        if agency:
            q = q.where(or_(tickets.c.agency == agency, tickets.c.tracking_id.in_(also or [])))
        if status:
            q = q.where(tickets.c.status == status)
        rows = conn.execute(q).all()
        ids = [r.id for r in rows]
        msgs: dict[int, list[MessageJSON]] = {i: [] for i in ids}
        if ids:
            for m in conn.execute(
                select(messages)
                .where(messages.c.ticket_id.in_(ids))
                .order_by(messages.c.at, messages.c.id)
            ):
                msgs[m.ticket_id].append(_message(m))
        return [_ticket(r, msgs[r.id]) for r in rows]

    def show(self, conn: Connection, ticket_id: str) -> TicketJSON | None:
        tid = _ticket_id(ticket_id)
        row = (
            None
            if tid is None
            else conn.execute(select(tickets).where(tickets.c.id == tid)).one_or_none()
        )
        if row is None:
            return None
        msgs = [
            _message(m)
            for m in conn.execute(
                select(messages)
                .where(messages.c.ticket_id == row.id)
                .order_by(messages.c.at, messages.c.id)
            )
        ]
        out = _ticket(row, msgs)
        out["status_history"] = [
            {
                "from": h.from_status,
                "to": h.to_status,
                "source": h.source,
                "reason": h.reason,
                "at": iso(h.at),
            }
            for h in conn.execute(
                select(status_history)
                .where(status_history.c.ticket_id == row.id)
                .order_by(status_history.c.id)
            )
        ]
        return out

    def counts(self, conn: Connection) -> list[tuple[str, str, int]]:
        q = (
            select(tickets.c.agency, tickets.c.status, func.count())
            .group_by(tickets.c.agency, tickets.c.status)
            .order_by(tickets.c.agency, tickets.c.status)
        )
        return [(a, s, n) for a, s, n in conn.execute(q)]

    def refs(self, conn: Connection, tracking_ids: list[str]) -> dict[str, str]:
        return {
            tid: str(ref)
            for tid, ref in conn.execute(
                select(tickets.c.tracking_id, tickets.c.id).where(
                    tickets.c.tracking_id.in_(tracking_ids)
                )
            )
        }


def _ticket_values(ticket: NewTicket, now: datetime) -> dict[str, object]:
    reporter: Reporter = (
        ticket.reporter
        if ticket.reporter is not None and not ticket.anonymous
        else {"name": None, "email": None, "phone": None}
    )
    return {
        "tracking_id": ticket.tracking_id,
        "agency": ticket.agency,
        "status": ticket.status,
        "lapor_status": ticket.lapor_status,
        "title": ticket.title,
        "body": ticket.body,
        "classification": ticket.classification,
        "category": ticket.category,
        "channel": ticket.channel,
        "anonymous": ticket.anonymous,
        "confidential": ticket.confidential,
        "location": json.dumps(ticket.location) if ticket.location else None,
        "attachments": json.dumps(list(ticket.attachments)),
        "submitted_at": ticket.submitted_at,
        "due_at": ticket.due_at,
        "created_at": now,
        "updated_at": now,
        # Never identity for an anonymous complaint, whatever the caller passed.
        "reporter_name": reporter.get("name"),
        "reporter_email": reporter.get("email"),
        "reporter_phone": reporter.get("phone"),
    }


def _message_values(ticket_id: int, m: NewMessage, source: str) -> dict[str, object]:
    return {
        "ticket_id": ticket_id,
        "direction": m.direction,
        "author": m.author[:200],
        "text": m.text,
        "at": m.at,
        "source": source,
        "lapor_followup_id": m.followup_id,
    }


def _new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _checked_action(action: OfficerAction, local_statuses: Sequence[str]) -> OfficerAction:
    """The action repaired and checked, before anything is read or written."""
    # Here, not at the top: `status` and `tickets list` load no wire models.
    from connector.lapor.wire import clean_text

    # Text from a terminal can carry NUL or undecodable bytes (as lone surrogates):
    # the same repair as for LAPOR!'s text, so every backend can store it.
    action = OfficerAction(
        action.status,
        None if action.reply is None else clean_text(action.reply),
        None if action.note is None else clean_text(action.note),
        clean_text(action.author),
    )
    check_status(action.status, local_statuses)
    if action.reply is not None and not action.reply.strip():
        raise TrackerRefusal("the public reply is empty", 2)
    if action.reply is not None and len(action.reply) > MAX_REPLY:
        raise TrackerRefusal(
            f"the public reply has {len(action.reply)} characters; "
            f"LAPOR! accepts at most {MAX_REPLY}",
            2,
        )
    return action


def _open_ticket(conn: Connection, ticket_id: str, action: OfficerAction) -> Row[int, str, str]:
    """The ticket's id, status and tracking id; a closed one takes an internal note only."""
    tid = _ticket_id(ticket_id)
    row = (
        None
        if tid is None
        else conn.execute(
            select(tickets.c.id, tickets.c.status, tickets.c.tracking_id).where(tickets.c.id == tid)
        ).one_or_none()
    )
    if row is None:
        raise TrackerRefusal(f"no ticket with id {ticket_id}", 1)
    if row.status == "closed" and (action.status is not None or action.reply is not None):
        raise TrackerRefusal(
            f"ticket {ticket_id} is closed: no status change or public "
            "reply is possible (an internal note is)",
            1,
        )
    return row


def _officer_status(
    conn: Connection,
    ticket_id: int,
    from_status: str,
    new_status: str,
    change_id: int | None,
    now: datetime,
) -> None:
    conn.execute(
        update(tickets).where(tickets.c.id == ticket_id).values(status=new_status, updated_at=now)
    )
    conn.execute(
        insert(status_history).values(
            ticket_id=ticket_id,
            from_status=from_status,
            to_status=new_status,
            source="officer",
            reason=None,
            at=now,
            change_id=change_id,
        )
    )


def _officer_reply(
    conn: Connection,
    ticket_id: int,
    author: str,
    reply: str,
    change_id: int | None,
    now: datetime,
) -> None:
    """The public reply as a message that carries its change record's id."""
    conn.execute(
        insert(messages),
        {
            **_message_values(ticket_id, NewMessage(Direction.OUT, author, reply, now), "officer"),
            "change_id": change_id,
        },
    )


def check_status(status: str | None, local_statuses: Sequence[str]) -> None:
    """The one check of an officer's new status (the CLI asks it before anything else)."""
    if status is not None and status not in local_statuses:
        raise TrackerRefusal(f"unknown status {status!r} (one of {', '.join(local_statuses)})", 2)


def _ticket_id(value: str) -> int | None:
    """A ticket reference as its id; None for one that names no ticket (``abc``)."""
    try:
        return int(value)
    except ValueError:
        return None


def _message(m: Row[Any]) -> MessageJSON:
    return {"direction": m.direction, "author": m.author, "text": m.text, "at": iso(m.at)}


def _ticket(r: Row[Any], msgs: list[MessageJSON]) -> TicketJSON:
    reporter: Reporter | None = None
    if not r.anonymous and r.reporter_name is not None:
        reporter = {"name": r.reporter_name, "email": r.reporter_email, "phone": r.reporter_phone}
    return {
        "id": str(r.id),
        "tracking_id": r.tracking_id,
        "agency": r.agency,
        "status": r.status,
        "lapor_status": r.lapor_status,
        "title": r.title,
        "body": r.body,
        "classification": r.classification,
        "category": r.category,
        "channel": r.channel,
        "anonymous": r.anonymous,
        "confidential": r.confidential,
        "restricted": r.confidential,
        "reporter": reporter,
        "location": json.loads(r.location) if r.location else None,
        "attachments": json.loads(r.attachments),
        "submitted_at": iso(r.submitted_at),
        "due_at": iso(r.due_at),
        "due_at_wita": iso_wita(r.due_at),
        "created_at": iso(r.created_at),
        "updated_at": iso(r.updated_at),
        "messages": msgs,
    }
