"""The notifications table: who gets what, written inside the caller's transaction (the
pull's commit, the desk's answer, the push's refusal, the digest job), and the sender's
bookkeeping around each attempt.

A row is one event for one recipient. The sender bundles a recipient's rows into one
message and stores its Message-ID before the first attempt; ``sending`` marks an attempt
whose answer is not yet recorded. A crash leaves it set: the next attempt counts it as
``unsure`` (the server may have accepted it), and after two such attempts the bundle is
never sent again. So a message goes out at most twice, with the same Message-ID.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.utils import make_msgid
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from connector.mappings import Mappings
from connector.notify.core import (
    MAX_ATTEMPTS,
    Event,
    Line,
    Notice,
    end_of,
    line,
    mask,
    next_working_day,
    parse_choice,
    retry_delay_s,
)
from connector.settings import NotifySettings
from connector.store import state
from connector.store.schema import (
    desk_users,
    followup_complaints,
    followup_periods,
    outbox,
    runs,
    tickets,
)
from connector.store.schema import notifications as nt
from connector.timeutil import as_utc

PENDING, SENT, FAILED = "pending", "sent", "failed"
KEEP = timedelta(days=7)
DIGEST_KEY = "notify_digest_date"  # the WITA date of the last digest (connector_state)


# -- who gets what ------------------------------------------------------------------------------


def _users(conn: Connection) -> list[Any]:
    return list(
        conn.execute(
            select(
                desk_users.c.login,
                desk_users.c.role,
                desk_users.c.agencies,
                desk_users.c.email,
                desk_users.c.notify,
            ).where(desk_users.c.disabled.is_(False), desk_users.c.email.is_not(None))
        )
    )


def _chose(u: Any, event: Event) -> bool:
    return event in parse_choice(u.notify)


def agency_recipients(conn: Connection, mappings: Mappings, agency: str, event: Event) -> list[str]:
    """The agency's mailboxes, and its desk users who chose this event."""
    a = mappings.agency(agency)
    found = list(a.email) if a else []
    found += [
        u.email
        for u in _users(conn)
        if u.role != "admin" and f",{agency}," in u.agencies and _chose(u, event)
    ]
    return list(dict.fromkeys(x.lower() for x in found))


def user_recipient(conn: Connection, login: str | None, event: Event) -> str | None:
    if not login:
        return None
    u = next((u for u in _users(conn) if u.login == login), None)
    return u.email.lower() if u is not None and _chose(u, event) else None


def add(
    conn: Connection,
    event: Event,
    recipients: Iterable[str],
    agency: str | None,
    tracking_id: str | None,
    payload: dict[str, Any],
    now: datetime,
    hold_pull: bool = False,
) -> int:
    rows = [
        {
            "event": str(event),
            "recipient": r,
            "agency": agency,
            "tracking_id": tracking_id,
            "payload": json.dumps(payload),
            "hold_pull": hold_pull,
            "state": PENDING,
            "created_at": now,
            "attempts": 0,
            "sending": False,
            "unsure": 0,
        }
        for r in dict.fromkeys(recipients)
    ]
    if rows:
        conn.execute(insert(nt), rows)
    return len(rows)


# -- the events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Complaint:
    """A complaint as a notification may name it."""

    tracking_id: str
    agency: str
    title: str | None
    confidential: bool
    due_at: datetime | None


def new_complaints(
    conn: Connection, cfg: NotifySettings, mappings: Mappings, found: list[Complaint], now: datetime
) -> int:
    """One row per agency recipient for a pull's commit; the sender holds them until the
    pull ends, so a backlog of any size is one message per recipient."""
    if not cfg.enabled or not found:
        return 0
    by_agency: dict[str, list[Line]] = {}
    for c in found:
        by_agency.setdefault(c.agency, []).append(
            line(c.tracking_id, c.agency, c.title, c.confidential, c.due_at)
        )
    n = 0
    for agency, lines in by_agency.items():
        n += add(
            conn,
            Event.NEW,
            agency_recipients(conn, mappings, agency, Event.NEW),
            agency,
            None,
            {"lines": lines},
            now,
            hold_pull=True,
        )
    return n


def _ticket(conn: Connection, tracking_id: str) -> Any:
    return conn.execute(
        select(tickets.c.title, tickets.c.confidential, tickets.c.assignee, tickets.c.agency).where(
            tickets.c.tracking_id == tracking_id
        )
    ).first()


def _due(conn: Connection, tracking_id: str) -> datetime | None:
    due = conn.execute(
        select(followup_periods.c.due_at)
        .where(followup_periods.c.tracking_id == tracking_id)
        .order_by(followup_periods.c.seq.desc())
        .limit(1)
    ).scalar_one_or_none()
    return None if due is None else as_utc(due)


def _line_of(conn: Connection, tracking_id: str, agency: str) -> tuple[Line, Any]:
    t = _ticket(conn, tracking_id)
    # An external tracker (Redmine) keeps the title there: the message names the id only.
    title = t.title if t is not None else f"Laporan {tracking_id}"
    return line(tracking_id, agency, title, bool(t and t.confidential), _due(conn, tracking_id)), t


def reporter_replied(
    conn: Connection,
    cfg: NotifySettings,
    mappings: Mappings,
    tracking_id: str,
    agency: str,
    now: datetime,
) -> int:
    """To the assignee; to the agency when nobody is assigned."""
    if not cfg.enabled:
        return 0
    ln, t = _line_of(conn, tracking_id, agency)
    assignee = t.assignee if t is not None else None
    if assignee:
        to = user_recipient(conn, assignee, Event.REPLIED)
        return add(conn, Event.REPLIED, [to] if to else [], agency, tracking_id, {"line": ln}, now)
    return add(
        conn,
        Event.REPLIED,
        agency_recipients(conn, mappings, agency, Event.REPLIED),
        agency,
        tracking_id,
        {"line": ln},
        now,
    )


def assigned(
    conn: Connection, cfg: NotifySettings, ticket_id: int, login: str | None, by: Any, now: datetime
) -> int:
    """The desk assigned a ticket (``by``: the desk user who did it)."""
    if not cfg.enabled or not login or login == getattr(by, "login", None):
        return 0
    r = conn.execute(
        select(tickets.c.tracking_id, tickets.c.agency).where(tickets.c.id == ticket_id)
    ).one()
    to = user_recipient(conn, login, Event.ASSIGNED)
    ln, _ = _line_of(conn, r.tracking_id, r.agency)
    return add(
        conn,
        Event.ASSIGNED,
        [to] if to else [],
        r.agency,
        r.tracking_id,
        {"line": ln, "by": getattr(by, "name", str(by))},
        now,
    )


def refused(conn: Connection, cfg: NotifySettings, outbox_id: int, code: str, now: datetime) -> int:
    """A follow-up LAPOR! refused for good: to the admins who chose it."""
    if not cfg.enabled:
        return 0
    r = conn.execute(select(outbox.c.tracking_id).where(outbox.c.id == outbox_id)).one()
    agency = (
        conn.execute(
            select(followup_complaints.c.agency).where(
                followup_complaints.c.tracking_id == r.tracking_id
            )
        ).scalar_one_or_none()
        or "-"
    )
    ln, _ = _line_of(conn, r.tracking_id, agency)
    to = [u.email.lower() for u in _users(conn) if u.role == "admin" and _chose(u, Event.REFUSED)]
    return add(
        conn,
        Event.REFUSED,
        to,
        agency,
        r.tracking_id,
        {"line": ln, "code": code[:60], "outbox_id": outbox_id},
        now,
    )


def digest(
    conn: Connection, cfg: NotifySettings, mappings: Mappings, day: date, now: datetime
) -> int:
    """The day's digest per agency (overdue, due today, due the next working day, in
    LAPOR!'s clock: the current period without a follow-up), marked done in the same
    transaction. An agency with nothing to say gets nothing."""
    state.set_value(conn, DIGEST_KEY, day.isoformat())
    if not cfg.enabled:
        return 0
    nxt = next_working_day(day, mappings.holidays)
    today_end, next_end = end_of(day), end_of(nxt)
    last = (
        select(followup_periods.c.tracking_id, func.max(followup_periods.c.seq).label("seq"))
        .group_by(followup_periods.c.tracking_id)
        .subquery()
    )
    q = (
        select(
            followup_periods.c.tracking_id,
            followup_periods.c.agency,
            followup_periods.c.due_at,
            tickets.c.title,
            tickets.c.confidential,
        )
        .join(
            last,
            and_(
                last.c.tracking_id == followup_periods.c.tracking_id,
                last.c.seq == followup_periods.c.seq,
            ),
        )
        .join(
            followup_complaints, followup_complaints.c.tracking_id == followup_periods.c.tracking_id
        )
        .outerjoin(tickets, tickets.c.tracking_id == followup_periods.c.tracking_id)
        .where(
            followup_complaints.c.closed.is_(False),
            followup_periods.c.first_follow_up_at.is_(None),
            followup_periods.c.due_at <= next_end,
        )
        .order_by(followup_periods.c.due_at, followup_periods.c.tracking_id)
    )
    groups: dict[str, dict[str, list[Line]]] = {}
    for r in conn.execute(q):
        due = as_utc(r.due_at)
        key = "overdue" if due < now else "today" if due <= today_end else "tomorrow"
        title = r.title if r.title is not None else f"Laporan {r.tracking_id}"
        groups.setdefault(r.agency, {"overdue": [], "today": [], "tomorrow": []})[key].append(
            line(r.tracking_id, r.agency, title, bool(r.confidential), due)
        )
    n = 0
    for agency, parts in sorted(groups.items()):
        n += add(
            conn,
            Event.DIGEST,
            agency_recipients(conn, mappings, agency, Event.DIGEST),
            agency,
            None,
            {"date": day.isoformat(), "next_date": nxt.isoformat(), **parts},
            now,
        )
    return n


def last_digest(conn: Connection) -> date | None:
    raw = state.get_value(conn, DIGEST_KEY)
    return date.fromisoformat(raw) if raw else None


# -- the sender's bookkeeping ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    message_id: str
    recipient: str
    at: datetime  # the message's Date
    notices: list[Notice]
    attempts: int


def _pull_ended(conn: Connection) -> datetime | None:
    raw = conn.execute(
        select(func.max(runs.c.finished_at)).where(runs.c.kind == "pull")
    ).scalar_one_or_none()
    return None if raw is None else as_utc(raw)


def claim(
    conn: Connection, cfg: NotifySettings, now: datetime, domain: str, limit: int = 50
) -> list[Bundle]:
    """The bundles to attempt now (``start`` marks each just before its message goes).

    New bundles: a recipient's ready rows once the oldest is ``bundle_s`` old; rows of a
    pull (new complaints) are ready once that pull has ended. Bundles formed before (a
    retry, or a crash's leftover) keep their rows and Message-ID."""
    # Sent rows (their titles) are forgotten after a week; refused ones too, and with
    # them the `status` finding.
    conn.execute(
        delete(nt).where(
            or_(
                and_(nt.c.state == SENT, nt.c.sent_at < now - KEEP),
                and_(nt.c.state == FAILED, nt.c.created_at < now - KEEP),
            )
        )
    )
    ended = _pull_ended(conn)
    free = list(
        conn.execute(
            select(nt.c.id, nt.c.recipient, nt.c.created_at, nt.c.hold_pull)
            .where(nt.c.state == PENDING, nt.c.message_id.is_(None))
            .order_by(nt.c.id)
            .limit(5000)
        )
    )
    by_to: dict[str, list[Any]] = {}
    for r in free:
        if r.hold_pull and (ended is None or ended < as_utc(r.created_at)):
            continue
        by_to.setdefault(r.recipient, []).append(r)
    cutoff = now - timedelta(seconds=cfg.bundle_s)
    for rows in by_to.values():
        if min(as_utc(r.created_at) for r in rows) > cutoff:
            continue  # more may come within the minute: one message for all of them
        conn.execute(
            update(nt)
            .where(nt.c.id.in_([r.id for r in rows]))
            .values(message_id=make_msgid("lapor", domain=domain), bundled_at=now)
        )
    due = list(
        conn.execute(
            select(nt)
            .where(
                nt.c.state == PENDING,
                nt.c.message_id.is_not(None),
                or_(nt.c.next_attempt_at.is_(None), nt.c.next_attempt_at <= now),
            )
            .order_by(nt.c.id)
        )
    )
    bundles: dict[str, list[Any]] = {}
    for r in due:
        bundles.setdefault(r.message_id, []).append(r)
    return [
        Bundle(
            mid,
            rows[0].recipient,
            as_utc(rows[0].bundled_at),
            [Notice(Event(r.event), r.agency, json.loads(r.payload)) for r in rows],
            rows[0].attempts,
        )
        for mid, rows in list(bundles.items())[:limit]
    ]


def start(conn: Connection, message_id: str, now: datetime) -> bool:
    """Just before the message itself goes to the server (after the recipient was
    accepted): mark the attempt. A mark left by a crash counts as a copy the server may
    have accepted; after two of those the bundle is never sent again (False)."""
    r = conn.execute(
        select(nt.c.sending, nt.c.unsure).where(nt.c.message_id == message_id).limit(1)
    ).one()
    unsure = r.unsure + (1 if r.sending else 0)
    if unsure >= 2:
        conn.execute(
            update(nt)
            .where(nt.c.message_id == message_id)
            .values(state=SENT, sending=False, unsure=unsure, sent_at=now, last_error="unconfirmed")
        )
        return False
    conn.execute(
        update(nt).where(nt.c.message_id == message_id).values(sending=True, unsure=unsure)
    )
    return True


def sent(conn: Connection, message_id: str, now: datetime) -> None:
    conn.execute(
        update(nt)
        .where(nt.c.message_id == message_id)
        .values(state=SENT, sending=False, sent_at=now, last_error=None)
    )


def retry(conn: Connection, message_id: str, error: str, attempts: int, now: datetime) -> bool:
    """A 4xx or a broken connection: again later; False when it gave up (failed)."""
    n = attempts + 1
    if n >= MAX_ATTEMPTS:
        failed(conn, message_id, f"gave up: {error}")
        return False
    conn.execute(
        update(nt)
        .where(nt.c.message_id == message_id)
        .values(
            sending=False,
            attempts=n,
            last_error=error[:200],
            next_attempt_at=now + timedelta(seconds=retry_delay_s(n)),
        )
    )
    return True


def failed(conn: Connection, message_id: str, error: str) -> None:
    conn.execute(
        update(nt)
        .where(nt.c.message_id == message_id)
        .values(state=FAILED, sending=False, attempts=nt.c.attempts + 1, last_error=error[:200])
    )


def failed_recipients(conn: Connection) -> list[dict[str, Any]]:
    """For ``status``: each address that refused for good, masked, with its count."""
    rows = conn.execute(
        select(nt.c.recipient, func.count(), func.max(nt.c.last_error))
        .where(nt.c.state == FAILED)
        .group_by(nt.c.recipient)
        .order_by(nt.c.recipient)
    )
    return [{"recipient": mask(r[0]), "count": int(r[1]), "error": r[2]} for r in rows]


def counts(conn: Connection) -> dict[str, int]:
    return {
        str(k): int(v)
        for k, v in conn.execute(select(nt.c.state, func.count()).group_by(nt.c.state))
    }
