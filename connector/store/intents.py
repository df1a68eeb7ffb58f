"""Tracker intents and the issues of an external tracker (tracker.kind other than builtin).

Written in the pull's transaction, read and settled by the tracker worker in small
transactions of their own, never around a call to the tracker.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from connector.privacy import without_reporter
from connector.store import state
from connector.store.keys import StateKey
from connector.store.schema import tracker_intents, tracker_issues

# The kinds of intent, as stored (``tracker_intents.kind``); the tracker port's names.
CREATE, UPDATE, MESSAGE = "create", "update", "message"


class IntentState(enum.StrEnum):
    """A tracker intent's state, as stored (``tracker_intents.state``) and counted by
    ``status``."""

    PENDING = "pending"  # to apply (again, after a RetryLater: with its backoff)
    FAILED = "failed"  # refused by the tracker: holds back the complaint's later intents
    DONE = "done"


OPEN = (IntentState.PENDING, IntentState.FAILED)


@dataclass(frozen=True)
class StoredIntent:
    """An intent as the store keeps it; the tracker port reads it as an ``Intent``."""

    id: int
    tracking_id: str
    kind: str  # CREATE | UPDATE | MESSAGE
    payload: Mapping[str, Any]  # the kind's payload (``tracker/port.py``), from JSON
    attempts: int  # including the one about to be made
    issue_ref: str | None  # the complaint's issue, when known


def add(
    conn: Connection, rows: Sequence[tuple[str, str, Mapping[str, Any]]], now: datetime
) -> None:
    """(tracking id, kind, payload) in order: their ids are the order of application."""
    if rows:
        conn.execute(
            insert(tracker_intents),
            [
                {
                    "tracking_id": tid,
                    "kind": kind,
                    "payload": json.dumps(payload),
                    "state": IntentState.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for tid, kind, payload in rows
            ],
        )


def forget_reporter(conn: Connection, tracking_id: str) -> None:
    """The complaint became anonim (``connector/privacy.py`` decided): a create not yet
    applied loses the reporter too."""
    for row in conn.execute(
        select(tracker_intents.c.id, tracker_intents.c.payload).where(
            tracker_intents.c.tracking_id == tracking_id,
            tracker_intents.c.kind == CREATE,
            tracker_intents.c.state.in_(OPEN),
        )
    ).all():
        payload = without_reporter(json.loads(row.payload))
        conn.execute(
            update(tracker_intents)
            .where(tracker_intents.c.id == row.id)
            .values(payload=json.dumps(payload))
        )


def due(conn: Connection, now: datetime, limit: int) -> list[StoredIntent]:
    """The oldest open intent of each complaint, if it is due: strictly in order. A failed
    intent holds back the later ones of its complaint (it is retried on its schedule)."""
    firsts = (
        select(func.min(tracker_intents.c.id).label("id"))
        .where(tracker_intents.c.state.in_(OPEN))
        .group_by(tracker_intents.c.tracking_id)
        .subquery()
    )
    q = (
        select(tracker_intents, tracker_issues.c.issue_ref.label("known_ref"))
        .join(firsts, firsts.c.id == tracker_intents.c.id)
        .outerjoin(tracker_issues, tracker_issues.c.tracking_id == tracker_intents.c.tracking_id)
        .where(tracker_intents.c.next_attempt_at <= now)
        .order_by(tracker_intents.c.id)
        .limit(limit)
    )
    return [
        StoredIntent(
            r.id, r.tracking_id, r.kind, json.loads(r.payload or "{}"), r.attempts + 1, r.known_ref
        )
        for r in conn.execute(q)
    ]


def start(conn: Connection, intent_id: int) -> None:
    """Committed before the call: a later try knows an earlier one may have got through."""
    conn.execute(
        update(tracker_intents)
        .where(tracker_intents.c.id == intent_id)
        .values(attempts=tracker_intents.c.attempts + 1)
    )


def done(
    conn: Connection, intent_id: int, tracking_id: str, ref: str, kind: str, now: datetime
) -> None:
    """Settle the intent and record the complaint's issue, in one transaction."""
    conn.execute(
        update(tracker_intents)
        .where(tracker_intents.c.id == intent_id)
        .values(state=IntentState.DONE, payload=None, issue_ref=ref, done_at=now, last_error=None)
    )
    set_ref(conn, tracking_id, kind, ref, now)
    contact(conn, now)


def set_ref(conn: Connection, tracking_id: str, kind: str, ref: str, now: datetime) -> None:
    known = conn.execute(
        select(tracker_issues.c.issue_ref).where(tracker_issues.c.tracking_id == tracking_id)
    ).first()
    if known is None:
        conn.execute(
            insert(tracker_issues).values(
                tracking_id=tracking_id, kind=kind, issue_ref=ref, updated_at=now
            )
        )
    elif known.issue_ref != ref:
        conn.execute(
            update(tracker_issues)
            .where(tracker_issues.c.tracking_id == tracking_id)
            .values(issue_ref=ref, updated_at=now)
        )


def set_officer_status(
    conn: Connection, tracking_id: str, kind: str, ref: str, status: str, now: datetime
) -> None:
    set_ref(conn, tracking_id, kind, ref, now)
    conn.execute(
        update(tracker_issues)
        .where(tracker_issues.c.tracking_id == tracking_id)
        .values(officer_status=status, updated_at=now)
    )


def officer_statuses(conn: Connection, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    q = select(tracker_issues.c.tracking_id, tracker_issues.c.officer_status).where(
        tracker_issues.c.tracking_id.in_(ids), tracker_issues.c.officer_status.is_not(None)
    )
    return {tid: s for tid, s in conn.execute(q)}


def refs(conn: Connection, ids: list[str] | None = None) -> dict[str, str]:
    q = select(tracker_issues.c.tracking_id, tracker_issues.c.issue_ref)
    if ids is not None:
        q = q.where(tracker_issues.c.tracking_id.in_(ids))
    return {tid: ref for tid, ref in conn.execute(q)}


def retry_later(
    conn: Connection, intent_id: int, reason: str, delay_s: float, now: datetime
) -> None:
    """The tracker was unreachable: the intent stays pending and waits."""
    conn.execute(
        update(tracker_intents)
        .where(tracker_intents.c.id == intent_id)
        .values(next_attempt_at=now + timedelta(seconds=delay_s), last_error=reason[:500])
    )
    unreachable(conn, reason, now)


def fail(conn: Connection, intent_id: int, reason: str, delay_s: float, now: datetime) -> None:
    """The tracker refused it: visible as failed, retried on a slow schedule or by hand."""
    conn.execute(
        update(tracker_intents)
        .where(tracker_intents.c.id == intent_id)
        .values(
            state=IntentState.FAILED,
            next_attempt_at=now + timedelta(seconds=delay_s),
            last_error=reason[:500],
        )
    )
    contact(conn, now)


def retry(conn: Connection, intent_id: int | None, now: datetime) -> int:
    """Failed intents (one, or all) due again now."""
    q = update(tracker_intents).where(tracker_intents.c.state == IntentState.FAILED)
    if intent_id is not None:
        q = q.where(tracker_intents.c.id == intent_id)
    return int(conn.execute(q.values(state=IntentState.PENDING, next_attempt_at=now)).rowcount)


def contact(conn: Connection, now: datetime) -> None:
    state.set_value(conn, StateKey.TRACKER_LAST_CONTACT, now.isoformat())
    if state.get_value(conn, StateKey.TRACKER_LAST_ERROR):
        state.set_value(conn, StateKey.TRACKER_LAST_ERROR, "")


def unreachable(conn: Connection, reason: str, now: datetime) -> None:
    raw = state.get_value(conn, StateKey.TRACKER_LAST_ERROR)
    since = json.loads(raw)["since"] if raw else now.isoformat()
    state.set_value(
        conn, StateKey.TRACKER_LAST_ERROR, json.dumps({"since": since, "reason": reason[:300]})
    )


def counts(conn: Connection) -> dict[str, int]:
    q = select(tracker_intents.c.state, func.count()).group_by(tracker_intents.c.state)
    return {s: int(n) for s, n in conn.execute(q)}


def failures(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    q = (
        select(
            tracker_intents.c.id,
            tracker_intents.c.tracking_id,
            tracker_intents.c.kind,
            tracker_intents.c.attempts,
            tracker_intents.c.last_error,
        )
        .where(tracker_intents.c.state == IntentState.FAILED)
        .order_by(tracker_intents.c.id)
        .limit(limit)
    )
    return [
        {
            "id": r.id,
            "tracking_id": r.tracking_id,
            "kind": r.kind,
            "attempts": r.attempts,
            "reason": r.last_error,
        }
        for r in conn.execute(q)
    ]


def health(conn: Connection) -> dict[str, Any]:
    """For ``status``: the queue, its failures, and when the tracker last answered."""
    n = counts(conn)
    raw = state.get_value(conn, StateKey.TRACKER_LAST_ERROR)
    return {
        **{str(s): n.get(s, 0) for s in IntentState},
        "failures": failures(conn),
        "last_contact": state.get_value(conn, StateKey.TRACKER_LAST_CONTACT) or None,
        "unreachable": json.loads(raw) if raw else None,
    }
