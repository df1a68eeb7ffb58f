"""The tracker seam: where the pull's decisions about tickets go, inside its transaction.

Picked once per sync context from the tracker (``sink_for``), so that no shell asks which
kind of tracker it holds:

- ``InTransaction``: a tracker in the connector's own database (the built-in one) writes
  its tickets in the pull's transaction, and its officer changes are read in the push's;
- ``Intents``: any other tracker is reached over the network, never inside a transaction:
  the pull writes *intents*, which the tracker worker (``sync/tracker_worker.py``, a job
  of its own) applies afterwards, and officer changes come through the port.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from connector.privacy import PrivacyChange
from connector.store import intents
from connector.tracker import port
from connector.tracker.base import NewTicket, TicketUpdate, Tracker
from connector.tracker.port import TrackerPort
from connector.tracker.rows import AttachmentMeta


class Files(Protocol):
    """Attachment metadata kept with each ticket (where a file went, or why not)."""

    def record_attachments(
        self, conn: Connection, ref: str, attachments: Sequence[AttachmentMeta]
    ) -> None: ...

    def attachments_to_retry(
        self, conn: Connection, limit: int
    ) -> list[tuple[str, str, list[AttachmentMeta]]]: ...


class Sink(abc.ABC):
    """Every method runs inside the caller's transaction."""

    # Its writes wait as intents for the tracker worker: a job of its own, a queue that
    # ``status`` reports.
    queued: bool = False

    @abc.abstractmethod
    def create(self, conn: Connection, new: list[NewTicket], now: datetime) -> list[str]:
        """New tickets, in order; their references ("" until the tracker has them)."""

    @abc.abstractmethod
    def update(
        self, conn: Connection, ref: str, tracking_id: str, upd: TicketUpdate, now: datetime
    ) -> None:
        """Upstream changes to one ticket (``ref``: its reference, "" when unknown)."""

    @abc.abstractmethod
    def statuses(self, conn: Connection, refs: Mapping[str, str]) -> dict[str, str]:
        """The local status of linked complaints (tracking id → ticket ref), by tracking
        id, as far as it is known (echo detection)."""

    def files(self) -> Files | None:
        """Where attachment metadata is kept; None: the files stay in attachments.dir."""
        return None

    @property
    def in_database(self) -> Tracker | None:
        """The tracker whose officer changes are read in the caller's transaction; None:
        they come through the port, outside any transaction."""
        return None


class InTransaction(Sink):
    def __init__(self, tracker: Tracker):
        self._tracker = tracker

    def create(self, conn: Connection, new: list[NewTicket], now: datetime) -> list[str]:
        return self._tracker.create_tickets(conn, new, now)

    def update(
        self, conn: Connection, ref: str, tracking_id: str, upd: TicketUpdate, now: datetime
    ) -> None:
        self._tracker.apply_update(conn, ref, upd, now)

    def statuses(self, conn: Connection, refs: Mapping[str, str]) -> dict[str, str]:
        by_ref = self._tracker.statuses(conn, list(refs.values()))
        return {tid: by_ref[ref] for tid, ref in refs.items() if ref in by_ref}

    def files(self) -> Files:
        return self._tracker

    @property
    def in_database(self) -> Tracker:
        return self._tracker


class Intents(Sink):
    queued = True

    def create(self, conn: Connection, new: list[NewTicket], now: datetime) -> list[str]:
        intents.add(conn, [row for t in new for row in _create_intents(t)], now)
        return [""] * len(new)

    def update(
        self, conn: Connection, ref: str, tracking_id: str, upd: TicketUpdate, now: datetime
    ) -> None:
        # A create still waiting has no anonim flag of its own to compare with.
        if PrivacyChange.of(
            upd.anonymous, None, was_anonymous=False, was_confidential=False
        ).forget_reporter:
            intents.forget_reporter(conn, tracking_id)
        intents.add(conn, _update_intents(tracking_id, upd), now)

    def statuses(self, conn: Connection, refs: Mapping[str, str]) -> dict[str, str]:
        # The last status an officer set in the tracker, as its changes came back.
        return intents.officer_statuses(conn, list(refs))


def sink_for(tracker: TrackerPort) -> Sink:
    """The sink of ``tracker``: in the pull's transaction when it lives in the database."""
    inline = tracker.inline
    return Intents() if inline is None else InTransaction(inline)


def _create_intents(ticket: NewTicket) -> list[tuple[str, str, port.Payload]]:
    return [
        (ticket.tracking_id, port.CREATE, port.ticket_payload(ticket)),
        *((ticket.tracking_id, port.MESSAGE, port.message_payload(msg)) for msg in ticket.messages),
    ]


def _update_intents(tid: str, upd: TicketUpdate) -> list[tuple[str, str, port.Payload]]:
    rows: list[tuple[str, str, port.Payload]] = [(tid, port.UPDATE, port.update_payload(upd))]
    return rows + [(tid, port.MESSAGE, port.message_payload(msg)) for msg in upd.messages]
