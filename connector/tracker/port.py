"""The tracker port: what the sync engine needs of ANY local tracking system.

Async and without SQL: a tracker outside the connector's database (Redmine) is reached
over the network, never inside a store transaction. The pull writes *intents* (create,
update, message) in its own transaction; the tracker worker (``connector/sync/
tracker_worker.py``) applies them here, outside any transaction, in order per complaint.
Every ``apply`` is idempotent: a create looks the issue up by tracking id first, a
state change sets a state, a message carries a marker the tracker can be searched for.

Officer changes come back through ``changes_since`` with a cursor and stable change ids
namespaced by the tracker's kind (``redmine:<journal id>``).

The built-in tracker lives in the same database: it implements this port too, and also
offers ``inline`` (the synchronous ``Tracker`` interface) so the pull applies its
decisions in the pull's own transaction, an optimisation that writes no intents. Only
the seam (``tracker/sink.py``: ``sink_for``) reads ``inline``; the shells call the sink.

Optional capabilities (reporting, the officer's desk of the ``tickets`` commands and
the demo officer) are asked for with ``reporting()`` and ``desk()``; ``None`` means the
tracker does not offer them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypedDict, cast

from sqlalchemy import Connection

from connector.store.intents import CREATE as CREATE
from connector.store.intents import MESSAGE as MESSAGE
from connector.store.intents import UPDATE as UPDATE
from connector.tracker.base import (
    Direction,
    NewMessage,
    NewTicket,
    OfficerAction,
    OfficerChange,
    TicketUpdate,
    Tracker,
)
from connector.tracker.rows import (
    AttachmentMeta,
    Location,
    Reporter,
    TicketFields,
    TicketJSON,
)

if TYPE_CHECKING:
    from connector.store import Store
    from connector.store.intents import StoredIntent


# -- plain-data payloads (JSON in the intents table): datetimes as ISO 8601 text ------------


class TicketPayload(TicketFields):
    """A ``create`` intent: the new ticket without its messages (intents of their own)."""

    attachments: list[AttachmentMeta]
    submitted_at: str
    due_at: str | None


class UpdatePayload(TypedDict):
    """An ``update`` intent: ``TicketUpdate`` without its messages."""

    lapor_status: str
    status: str | None
    agency: str | None
    due_at: str | None
    reason: str | None
    title: str | None
    body: str | None
    anonymous: bool | None
    confidential: bool | None


class MessagePayload(TypedDict):
    """A ``message`` intent."""

    direction: str
    author: str
    text: str
    at: str
    followup_id: str | None


Payload = TicketPayload | UpdatePayload | MessagePayload


@dataclass(frozen=True)
class Intent:
    """One change for the tracker, as the worker hands it to ``apply``."""

    id: int
    tracking_id: str
    kind: str  # create | update | message
    payload: Payload  # of the kind's type (stored as JSON, so not checked on the way in)
    # Including this one: above 1, an earlier try may have reached the tracker.
    attempts: int = 1
    issue_ref: str | None = None  # the complaint's issue, when known

    @staticmethod
    def of(stored: StoredIntent) -> Intent:
        """The store's row, read as the payload its kind says (JSON, so not checked)."""
        return Intent(
            stored.id,
            stored.tracking_id,
            stored.kind,
            cast(Payload, stored.payload),
            stored.attempts,
            stored.issue_ref,
        )

    def ticket(self) -> NewTicket:
        """A ``create`` intent's ticket."""
        assert self.kind == CREATE, self.kind
        return ticket_from(cast(TicketPayload, self.payload))

    def update(self) -> TicketUpdate:
        """An ``update`` intent's update."""
        assert self.kind == UPDATE, self.kind
        return update_from(cast(UpdatePayload, self.payload))

    def message(self) -> NewMessage:
        """A ``message`` intent's message."""
        assert self.kind == MESSAGE, self.kind
        return message_from(cast(MessagePayload, self.payload))


class Reporting(Protocol):
    """Counts by agency and status, and the tracker's name of each complaint's ticket
    (``status``, ``report``). Which complaints are overdue is the store's
    (``followups.overdue``): LAPOR!'s notion, whatever the tracker."""

    def counts(self, conn: Connection) -> list[tuple[str, str, int]]: ...

    def refs(self, conn: Connection, tracking_ids: list[str]) -> dict[str, str]: ...


class Desk(Protocol):
    """The officer's desk of the ``tickets`` commands (and the demo officer)."""

    def list_tickets(
        self,
        conn: Connection,
        agency: str | None = None,
        status: str | None = None,
        also: list[str] | None = None,
    ) -> list[TicketJSON]: ...

    def show(self, conn: Connection, ticket_id: str) -> TicketJSON | None: ...

    def officer_update(
        self, conn: Connection, ticket_id: str, action: OfficerAction, now: datetime
    ) -> OfficerChange | None: ...


class TrackerPort(abc.ABC):
    kind: str = ""

    @property
    def inline(self) -> Tracker | None:
        """The in-transaction interface, for a tracker in the connector's own database."""
        return None

    def bind(self, store: Store) -> None:  # noqa: B027 - optional hook
        """Given the store once (the built-in tracker needs it; others ignore it)."""

    @abc.abstractmethod
    async def apply(self, intent: Intent) -> str:
        """Apply one intent, idempotently; returns the issue's reference."""

    @abc.abstractmethod
    async def find(self, tracking_id: str) -> str | None:
        """The issue of a complaint, by its tracking id."""

    @abc.abstractmethod
    async def changes_since(
        self, cursor: str | None, limit: int = 500
    ) -> tuple[list[OfficerChange], str | None]:
        """Officer changes after ``cursor`` (oldest first; the tracker's own changes are
        never among them) and the cursor to store with their outbox entries."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # -- optional capabilities ----------------------------------------------------------

    def reporting(self) -> Reporting | None:
        return None

    def desk(self) -> Desk | None:
        """The officer's desk: ``list_tickets``, ``show``, ``officer_update`` (built-in)."""
        return None

    def issue_url(self, ref: str) -> str | None:
        """Where a person opens the issue (external trackers)."""
        return None


# -- payloads to and from the intents table -------------------------------------------------


def _iso(value: datetime) -> str:
    return value.isoformat()


def _iso_or_none(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def message_payload(m: NewMessage) -> MessagePayload:
    return {
        "direction": m.direction.value,
        "author": m.author,
        "text": m.text,
        "at": _iso(m.at),
        "followup_id": m.followup_id,
    }


def message_from(p: MessagePayload) -> NewMessage:
    return NewMessage(
        Direction(p["direction"]),
        p["author"],
        p["text"],
        datetime.fromisoformat(p["at"]),
        p.get("followup_id"),
    )


def ticket_payload(t: NewTicket) -> TicketPayload:
    """The new ticket without its messages (they become message intents of their own)."""
    return {
        "tracking_id": t.tracking_id,
        "agency": t.agency,
        "status": t.status,
        "lapor_status": t.lapor_status,
        "title": t.title,
        "body": t.body,
        "classification": t.classification,
        "category": t.category,
        "channel": t.channel,
        "anonymous": t.anonymous,
        "confidential": t.confidential,
        "reporter": None if t.reporter is None else Reporter(**t.reporter),
        "location": None if t.location is None else Location(**t.location),
        "attachments": [AttachmentMeta(**a) for a in t.attachments],
        "submitted_at": _iso(t.submitted_at),
        "due_at": _iso_or_none(t.due_at),
    }


def ticket_from(p: TicketPayload) -> NewTicket:
    return NewTicket(
        tracking_id=p["tracking_id"],
        agency=p["agency"],
        status=p["status"],
        lapor_status=p["lapor_status"],
        title=p["title"],
        body=p["body"],
        classification=p["classification"],
        category=p["category"],
        channel=p["channel"],
        anonymous=p["anonymous"],
        confidential=p["confidential"],
        reporter=p["reporter"],
        location=p["location"],
        attachments=tuple(p.get("attachments") or ()),
        submitted_at=datetime.fromisoformat(p["submitted_at"]),
        due_at=_from_iso(p.get("due_at")),
        messages=(),
    )


def update_payload(u: TicketUpdate) -> UpdatePayload:
    """The update without its messages (they become message intents of their own)."""
    return {
        "lapor_status": u.lapor_status,
        "status": u.status,
        "agency": u.agency,
        "due_at": _iso_or_none(u.due_at),
        "reason": u.reason,
        "title": u.title,
        "body": u.body,
        "anonymous": u.anonymous,
        "confidential": u.confidential,
    }


def update_from(p: UpdatePayload) -> TicketUpdate:
    # ``get``: an update stored before a field existed leaves that field as it is.
    return TicketUpdate(
        lapor_status=p["lapor_status"],
        status=p.get("status"),
        agency=p.get("agency"),
        due_at=_from_iso(p.get("due_at")),
        reason=p.get("reason"),
        title=p.get("title"),
        body=p.get("body"),
        anonymous=p.get("anonymous"),
        confidential=p.get("confidential"),
    )
