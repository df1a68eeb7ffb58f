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
decisions in the pull's own transaction, an optimisation that writes no intents.

Optional capabilities (reporting, the officer's desk of the ``tickets`` commands and
the demo officer) are asked for with ``reporting()`` and ``desk()``; ``None`` means the
tracker does not offer them.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection

from connector.tracker.base import (
    Direction,
    NewMessage,
    NewTicket,
    OfficerChange,
    TicketUpdate,
    Tracker,
)

if TYPE_CHECKING:
    from connector.store import Store

CREATE, UPDATE, MESSAGE = "create", "update", "message"


@dataclass(frozen=True)
class Intent:
    """One change for the tracker, as the worker hands it to ``apply``."""

    id: int
    tracking_id: str
    kind: str  # create | update | message
    payload: dict[str, Any]
    # Including this one: above 1, an earlier try may have reached the tracker.
    attempts: int = 1
    issue_ref: str | None = None  # the complaint's issue, when known


class Reporting(Protocol):
    """Counts by agency and status, and overdue tickets (``status``, ``report``)."""

    def counts(self, conn: Connection) -> list[tuple[str, str, int]]: ...

    def overdue(self, conn: Connection, now: datetime) -> list[dict[str, Any]]: ...


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
    async def changes_since(self, cursor: str | None,
                            limit: int = 500) -> tuple[list[OfficerChange], str | None]:
        """Officer changes after ``cursor`` (oldest first; the tracker's own changes are
        never among them) and the cursor to store with their outbox entries."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # -- optional capabilities ----------------------------------------------------------

    def reporting(self) -> Reporting | None:
        return None

    def desk(self) -> Any | None:
        """The officer's desk: ``list_tickets``, ``show``, ``officer_update`` (built-in)."""
        return None

    def issue_url(self, ref: str) -> str | None:
        """Where a person opens the issue (external trackers)."""
        return None


# -- plain-data payloads (JSON in the intents table) --------------------------------------


def _dt(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _from_dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def message_payload(m: NewMessage) -> dict[str, Any]:
    return {k: _dt(v) for k, v in asdict(m).items()}


def message_from(p: dict[str, Any]) -> NewMessage:
    at = _from_dt(p["at"])
    assert at is not None
    return NewMessage(Direction(p["direction"]), p["author"], p["text"], at, p.get("followup_id"))


def ticket_payload(t: NewTicket) -> dict[str, Any]:
    """The new ticket without its messages (they become message intents of their own)."""
    out = {k: _dt(v) for k, v in asdict(t).items() if k != "messages"}
    out["attachments"] = list(t.attachments)
    return out


def ticket_from(p: dict[str, Any]) -> NewTicket:
    submitted = _from_dt(p["submitted_at"])
    assert submitted is not None
    return NewTicket(**{**p, "submitted_at": submitted, "due_at": _from_dt(p.get("due_at")),
                        "attachments": tuple(p.get("attachments") or ()), "messages": ()})


def update_payload(u: TicketUpdate) -> dict[str, Any]:
    """The update without its messages (they become message intents of their own)."""
    return {k: _dt(v) for k, v in asdict(u).items() if k != "messages"}


def update_from(p: dict[str, Any]) -> TicketUpdate:
    return TicketUpdate(**{**p, "due_at": _from_dt(p.get("due_at")), "messages": ()})


def without_reporter(p: dict[str, Any]) -> dict[str, Any]:
    """A create payload whose complaint became anonim before it was applied."""
    return {**p, "anonymous": True, "reporter": None}
