"""The in-transaction interface of a tracker kept in our own database (the built-in one,
``TrackerPort.inline``): what the pull and the push need of it.

Methods take the store's open transaction so the built-in tracker commits ticket and
connector state together. External trackers implement ``TrackerPort`` (``port.py``)
instead, through intents.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the core imports this module and does no I/O
    from sqlalchemy import Connection

    from connector.tracker.rows import AttachmentMeta, Location, Reporter


class Direction(enum.StrEnum):
    """Whose message it is, as stored (``messages.direction``) and shown in JSON."""

    IN = "in"  # from the reporter (or anyone on LAPOR! but Mahulu's units)
    OUT = "out"  # from a Mahulu unit: a follow-up
    INTERNAL = "internal"  # the connector's own note, never sent to LAPOR!


@dataclass(frozen=True)
class NewMessage:
    direction: Direction
    author: str
    text: str
    at: datetime
    followup_id: str | None = None


@dataclass(frozen=True)
class NewTicket:
    tracking_id: str
    agency: str
    status: str
    lapor_status: str
    title: str
    body: str
    classification: str
    category: str | None
    channel: str
    anonymous: bool
    confidential: bool
    reporter: Reporter | None
    location: Location | None
    attachments: tuple[AttachmentMeta, ...]
    submitted_at: datetime
    due_at: datetime | None
    messages: tuple[NewMessage, ...] = field(default=())


@dataclass(frozen=True)
class TicketUpdate:
    """Upstream changes for one ticket. ``None`` fields stay as they are."""

    lapor_status: str
    status: str | None = None
    agency: str | None = None
    due_at: datetime | None = None
    reason: str | None = None
    messages: tuple[NewMessage, ...] = field(default=())
    # LAPOR!'s current text and privacy flags, when they may have changed (else None).
    # A tracker replaces its copy of the text; ``anonymous`` True removes the reporter
    # everywhere, ``confidential`` True restricts the ticket. Privacy never loosens.
    title: str | None = None
    body: str | None = None
    anonymous: bool | None = None
    confidential: bool | None = None


@dataclass(frozen=True)
class OfficerChange:
    """One officer action that may go to LAPOR!: a status change and/or a public reply."""

    change_id: str
    ticket_ref: str
    tracking_id: str
    status: str | None  # the new status, when it changed
    ticket_status: str  # the status after the change
    reply: str | None
    at: datetime


@dataclass(frozen=True)
class OfficerAction:
    """What an officer does to a ticket at the desk or with ``tickets update``."""

    status: str | None = None
    reply: str | None = None
    note: str | None = None
    author: str = "petugas"


class Tracker(abc.ABC):
    @abc.abstractmethod
    def create_ticket(self, conn: Connection, ticket: NewTicket, now: datetime) -> str:
        """Create the ticket; returns its reference (local id, as text)."""

    def create_tickets(self, conn: Connection, new: list[NewTicket], now: datetime) -> list[str]:
        """Create several tickets at once (a backlog); the same as one by one, in order."""
        return [self.create_ticket(conn, t, now) for t in new]

    @abc.abstractmethod
    def statuses(self, conn: Connection, refs: list[str]) -> dict[str, str]:
        """The local status of each ticket (by reference)."""

    @abc.abstractmethod
    def apply_update(self, conn: Connection, ref: str, update: TicketUpdate, now: datetime) -> None:
        """Apply upstream changes. Never recorded as officer changes (no echo)."""

    def record_attachments(
        self, conn: Connection, ref: str, attachments: Sequence[AttachmentMeta]
    ) -> None:
        """Store attachment metadata after downloads (where the files went, or why not)."""
        return None

    def attachments_to_retry(
        self, conn: Connection, limit: int
    ) -> list[tuple[str, str, list[AttachmentMeta]]]:
        """Tickets whose attachment downloads failed for a transient reason:
        (ref, tracking id, metadata). Trackers that keep no files return none."""
        return []

    @abc.abstractmethod
    def officer_changes(
        self, conn: Connection, cursor: str | None, limit: int
    ) -> list[OfficerChange]:
        """Officer changes after ``cursor`` (oldest first); ``change_id`` is the next cursor."""
