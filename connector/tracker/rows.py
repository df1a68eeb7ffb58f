"""Typed rows: the ticket JSON of CONTRACT.md ("Built-in tracker vocabulary") as the
``tickets`` commands print it, its parts, and what the trackers store as JSON.

TypedDicts, not dataclasses: each row IS the JSON object (key order included), so
``--json`` prints it as it is.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class Reporter(TypedDict):
    name: str | None
    email: str | None
    phone: str | None


class Location(TypedDict):
    province: str
    regency: str | None
    district: str | None
    village: str | None
    lat: float | None
    lon: float | None


class AttachmentMeta(TypedDict):
    """One attachment of a ticket, and after a download where it went or why not."""

    id: str
    name: str
    mime: str
    size: int
    stored: NotRequired[str]  # the file's path
    error: NotRequired[str]  # LAPOR!'s code, or "unavailable"
    retry: NotRequired[bool]  # a transient failure: tried again on a later pull


class MessageJSON(TypedDict):
    direction: str  # in | out | internal
    author: str
    text: str
    at: str | None


# "from" is a keyword: the functional form.
StatusChangeJSON = TypedDict(
    "StatusChangeJSON",
    {"from": str | None, "to": str, "source": str, "reason": str | None, "at": str | None},
)


class DuePeriodJSON(TypedDict):
    seq: int
    agency: str
    start: str
    started_at: str | None
    due_at: str | None
    due_source: str
    first_follow_up_at: str | None
    on_time: bool | None
    ended_at: str | None


class ClockJSON(TypedDict):
    """What LAPOR!'s clock adds to a ticket object (``followups.ticket_json``)."""

    overdue: bool
    settle_by: str | None
    settle_by_wita: str | None
    agencies: list[str]
    first_follow_up_at: str | None
    due_periods: list[DuePeriodJSON]


class TicketFields(TypedDict):
    """What every JSON form of a ticket holds (the row below, the create intent)."""

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


class TicketJSON(TicketFields):
    """A ticket of the built-in tracker (``list_tickets``, ``show``)."""

    id: str
    restricted: bool
    attachments: list[AttachmentMeta]
    submitted_at: str | None
    due_at: str | None
    due_at_wita: str | None
    created_at: str | None
    updated_at: str | None
    messages: list[MessageJSON]
    status_history: NotRequired[list[StatusChangeJSON]]  # `show` only


class TicketView(TicketJSON, ClockJSON):
    """``tickets list/show --json`` with the built-in tracker: the ticket, then its clock."""


class ExternalTicketJSON(TypedDict):
    """A complaint kept in an external tracker, as the connector knows it."""

    id: str | None  # the issue, once created
    tracking_id: str
    agency: str
    status: str
    lapor_status: str
    issue: str | None
    issue_url: str | None
    tracker: str  # the tracker's kind


class ExternalTicketView(ExternalTicketJSON, ClockJSON):
    """``tickets list --json`` with an external tracker."""


class OverdueJSON(TypedDict):
    """A complaint with no follow-up on LAPOR! by its current due time."""

    tracking_id: str
    agency: str
    due_at: str | None
    due_at_wita: str | None
    period: int
    start: str


class OverdueTicketJSON(OverdueJSON):
    """An overdue complaint and its ticket (``status``: ``overdue``)."""

    id: str | None  # the ticket or issue, once created
