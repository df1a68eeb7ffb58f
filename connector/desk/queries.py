"""What the desk reads and writes, scoped by who asks. Scoping happens here, in the
queries, so a page can never show what its user may not see.

Access follows the complaint's current disposition: the ticket's agency (the lead) and
every Mahulu agency holding a disposition of it (``followup_complaints.agencies``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, or_, select, update

from connector.desk import views
from connector.desk.accounts import Role, User
from connector.domain import ChangeId, Facts, LocalStatus
from connector.store import followups
from connector.store.schema import (
    desk_submissions,
    followup_complaints,
    links,
    messages,
    outbox,
    status_history,
    tickets,
    tracker_issues,
)
from connector.timeutil import as_utc
from connector.tracker.rows import AttachmentMeta

OPEN = (LocalStatus.NEW, LocalStatus.IN_PROGRESS, LocalStatus.RESOLVED)
TRACKING_ID = re.compile(r"[0-9A-Za-z-]{1,32}")


# -- who may do what (pure) -------------------------------------------------------------------


def holds(user: User, agencies: set[str]) -> bool:
    return bool(set(user.agencies) & agencies)


def may_open(user: User, agencies: set[str], confidential: bool) -> bool:
    """``rahasia``: only officers of a holding agency, and admins."""
    if user.role == Role.ADMIN:
        return True
    if not holds(user, agencies):
        return False
    return not confidential or user.role == Role.PETUGAS


def may_act(user: User, agencies: set[str]) -> bool:
    return user.role == Role.PETUGAS and holds(user, agencies)


def sees_contact(user: User, agencies: set[str]) -> bool:
    """The reporter's e-mail and phone: the holding agency's officers only."""
    return may_act(user, agencies)


# -- the inbox --------------------------------------------------------------------------------

_INBOX_COLS = (
    tickets.c.id,
    tickets.c.tracking_id,
    tickets.c.agency,
    tickets.c.title,
    tickets.c.category,
    tickets.c.location,
    tickets.c.submitted_at,
    tickets.c.status,
    tickets.c.assignee,
    tickets.c.confidential,
)


def _open_rows(conn: Connection, user: User) -> list[Any]:
    """Open tickets the user's agencies hold: by lead agency (index), plus those another
    agency leads that the user's agencies also hold (open complaints only)."""
    q = select(*_INBOX_COLS).where(tickets.c.status.in_(OPEN))
    if user.role == Role.ADMIN:
        return list(conn.execute(q))
    rows: dict[int, Any] = {
        r.id: r for r in conn.execute(q.where(tickets.c.agency.in_(user.agencies)))
    }
    also = [
        r.tracking_id
        for r in conn.execute(
            select(followup_complaints.c.tracking_id).where(
                followup_complaints.c.closed.is_(False),
                or_(
                    *[
                        followup_complaints.c.agencies.contains(f",{a},", autoescape=True)
                        for a in user.agencies
                    ]
                ),
            )
        )
    ]
    for start in range(0, len(also), 500):
        for r in conn.execute(q.where(tickets.c.tracking_id.in_(also[start : start + 500]))):
            rows.setdefault(r.id, r)
    return list(rows.values())


def location(stored: str | None) -> dict[str, Any] | None:
    """A ticket's stored location (JSON), or None when absent or unreadable."""
    if not stored:
        return None
    try:
        loc = json.loads(stored)
    except ValueError:
        return None
    return loc if isinstance(loc, dict) else None


def _place(stored: str | None) -> tuple[str | None, str | None]:
    loc = location(stored) or {}
    return loc.get("village"), loc.get("district")


def inbox(
    conn: Connection, user: User, now: datetime, holidays: frozenset[date]
) -> list[views.InboxRow]:
    """Every open ticket the user may list, with its due state (unsorted, unfiltered)."""
    found = _open_rows(conn, user)
    facts = followups.get_facts(conn, [r.tracking_id for r in found])
    out = []
    for r in found:
        kampung, kecamatan = _place(r.location)
        f = facts.get(r.tracking_id)
        agencies = {r.agency, *(f.agencies if f else ())}
        # A rahasia complaint this user may not open: its place and category could point
        # to the reporter, so only that it exists and its clock are listed.
        hidden = r.confidential and not may_open(user, agencies, True)
        out.append(
            views.InboxRow(
                id=r.id,
                tracking_id=r.tracking_id,
                agency=r.agency,
                title="Laporan rahasia" if hidden else r.title,
                category=None if hidden else r.category,
                kampung=None if hidden else kampung,
                kecamatan=None if hidden else kecamatan,
                submitted_at=as_utc(r.submitted_at),
                status=r.status,
                assignee=None if hidden else r.assignee,
                confidential=bool(r.confidential),
                due=views.due_state(f, False, now, holidays),
                hidden=hidden,
            )
        )
    return out


def external_inbox(
    conn: Connection, user: User, now: datetime, holidays: frozenset[date], issue_url: Any
) -> list[views.InboxRow]:
    """With an external tracker (Redmine) the desk lists what the connector knows of each
    open complaint (no text: it lives in the tracker) and links its issue."""
    q = (
        select(
            links.c.tracking_id,
            links.c.agency,
            links.c.created_at,
            tracker_issues.c.issue_ref,
            tracker_issues.c.officer_status,
        )
        .outerjoin(tracker_issues, tracker_issues.c.tracking_id == links.c.tracking_id)
        .where(links.c.closed.is_(False))
    )
    found = list(conn.execute(q))
    facts = followups.get_facts(conn, [r.tracking_id for r in found])
    out = []
    for i, r in enumerate(found):
        f = facts.get(r.tracking_id)
        agencies = {r.agency, *(f.agencies if f else ())}
        if user.role != Role.ADMIN and not holds(user, agencies):
            continue
        out.append(
            views.InboxRow(
                id=i,
                tracking_id=r.tracking_id,
                agency=r.agency,
                title=f"Laporan {r.tracking_id}",
                category=None,
                kampung=None,
                kecamatan=None,
                submitted_at=as_utc(f.received_at if f else r.created_at),
                status=r.officer_status or LocalStatus.NEW,
                assignee=None,
                confidential=False,
                due=views.due_state(f, False, now, holidays),
                issue_url=issue_url(r.issue_ref) if r.issue_ref else None,
            )
        )
    return out


# -- one complaint ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One line of the timeline."""

    at: datetime
    kind: str  # reporter | agency | officer_reply | note | status | system
    author: str
    text: str
    delivery: views.Delivery | None = None


@dataclass(frozen=True)
class TicketPage:
    row: Row[Any]
    facts: Facts | None
    agencies: set[str]
    timeline: list[Entry]
    attachments: list[AttachmentMeta]
    version: str


def find_ticket(conn: Connection, user: User, tracking_id: str) -> TicketPage | None:
    """The complaint when this user may open it, else None (the caller answers 404,
    whether it exists or not)."""
    if not TRACKING_ID.fullmatch(tracking_id):
        return None
    row = conn.execute(select(tickets).where(tickets.c.tracking_id == tracking_id)).first()
    if row is None:
        return None
    facts = followups.get_facts(conn, [tracking_id]).get(tracking_id)
    agencies = {row.agency, *(facts.agencies if facts else ())}
    if not may_open(user, agencies, bool(row.confidential)):
        return None
    return TicketPage(
        row=row,
        facts=facts,
        agencies=agencies,
        timeline=_timeline(conn, row.id),
        attachments=json.loads(row.attachments),
        version=version(conn, row.id, row.status),
    )


def version(conn: Connection, ticket_id: int, status: str) -> str:
    """What a page's status was drawn from: a status change since makes the page stale."""
    last = conn.execute(
        select(status_history.c.id)
        .where(status_history.c.ticket_id == ticket_id)
        .order_by(status_history.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return f"{status}.{last or 0}"


def _deliveries(conn: Connection, change_ids: list[int]) -> dict[int, views.Delivery]:
    if not change_ids:
        return {}
    keys = {ChangeId.builtin(i): i for i in change_ids}
    found = {
        keys[r.change_id]: views.delivery(
            r.state, r.sent_at and as_utc(r.sent_at), r.last_error, r.dismiss_reason
        )
        for r in conn.execute(
            select(
                outbox.c.change_id,
                outbox.c.state,
                outbox.c.sent_at,
                outbox.c.last_error,
                outbox.c.dismiss_reason,
            ).where(outbox.c.change_id.in_(list(keys)))
        )
    }
    # Recorded but not (yet) in the outbox: the push turns it into an entry within a cycle.
    waiting = views.delivery("pending", None, None, None)
    return {i: found.get(i, waiting) for i in change_ids}


def _timeline(conn: Connection, ticket_id: int) -> list[Entry]:
    msgs = list(conn.execute(select(messages).where(messages.c.ticket_id == ticket_id)))
    hist = list(conn.execute(select(status_history).where(status_history.c.ticket_id == ticket_id)))
    deliveries = _deliveries(
        conn, sorted({r.change_id for r in [*msgs, *hist] if r.change_id is not None})
    )
    out: list[Entry] = []
    for m in msgs:
        if m.direction == "internal":
            kind = "note" if m.source == "officer" else "system"
        elif m.direction == "in":
            kind = "reporter"
        else:
            kind = "officer_reply" if m.source == "officer" else "agency"
        out.append(
            Entry(
                as_utc(m.at),
                kind,
                m.author,
                m.text,
                deliveries.get(m.change_id) if m.change_id else None,
            )
        )
    for h in hist:
        words = views.STATUS_WORDS.get(h.to_status, h.to_status)
        text = (
            f"Status: {views.STATUS_WORDS.get(h.from_status, h.from_status)} → {words}"
            if h.from_status
            else f"Tiket dibuat ({words})"
        )
        # A status change with a reply shows its delivery on the reply.
        with_reply = any(m.change_id == h.change_id for m in msgs if h.change_id)
        out.append(
            Entry(
                as_utc(h.at),
                "status",
                "petugas" if h.source == "officer" else "LAPOR!",
                text,
                deliveries.get(h.change_id) if h.change_id and not with_reply else None,
            )
        )
    out.sort(key=lambda e: e.at)
    return out


def ticket_state(conn: Connection, ticket_id: int) -> views.TicketState:
    r = conn.execute(
        select(tickets.c.status, tickets.c.lapor_status, tickets.c.assignee).where(
            tickets.c.id == ticket_id
        )
    ).one()
    return views.TicketState(
        r.status, r.lapor_status, r.assignee, version(conn, ticket_id, r.status)
    )


def assign(conn: Connection, ticket_id: int, login: str | None, now: datetime) -> None:
    conn.execute(
        update(tickets).where(tickets.c.id == ticket_id).values(assignee=login, updated_at=now)
    )


def claim_form(conn: Connection, form_id: str, user: User, ticket_id: int, now: datetime) -> bool:
    """Record that this form was submitted; False when it was already (a double click,
    back and resubmit). A concurrent twin fails on the primary key at commit."""
    if conn.execute(
        select(desk_submissions.c.form_id).where(desk_submissions.c.form_id == form_id)
    ).first():
        return False
    conn.execute(
        desk_submissions.insert().values(
            form_id=form_id, user_id=user.id, ticket_id=ticket_id, at=now
        )
    )
    return True


def form_claimed(conn: Connection, form_id: str) -> bool:
    return (
        conn.execute(
            select(desk_submissions.c.form_id).where(desk_submissions.c.form_id == form_id)
        ).first()
        is not None
    )
