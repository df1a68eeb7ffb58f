"""Domain models: what the connector knows of LAPOR!, with English names.

Timestamps are aware UTC datetimes. Tracking ids are text. Status values keep
LAPOR!'s own vocabulary because the status mapping file maps exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from connector.domain import CLOSED_STATUSES as CLOSED_STATUSES  # its home is the domain
from connector.domain import LaporStatus, PostStatus

LAPOR_STATUSES = tuple(LaporStatus)
PUSH_STATUSES = tuple(PostStatus)  # what LAPOR! accepts from an agency


@dataclass(frozen=True)
class Summary:
    tracking_id: str
    status: str  # a LaporStatus (the wire's Literal; compared as text)
    updated_at: datetime
    unit_ids: tuple[int, ...]


# The tracking id of a feed item that has no readable one (``wire.raw_tracking_id``): such
# an item is reported, never quarantined under it. Kept as text because older databases
# may hold quarantine rows under it (``core.to_retry`` skips them).
UNIDENTIFIED = "unknown"


@dataclass(frozen=True)
class BadSummary:
    """A feed item that failed validation: only its id (if any) and the bad field names."""

    tracking_id: str  # UNIDENTIFIED: it had none that could be read
    fields: tuple[str, ...]
    updated_at: datetime | None = None

    @property
    def identified(self) -> bool:
        return self.tracking_id != UNIDENTIFIED


@dataclass(frozen=True)
class Page:
    items: tuple[Summary | BadSummary, ...]
    next_cursor: str | None
    server_time: datetime | None  # meta.waktu_server; None when LAPOR! sent no usable one


@dataclass(frozen=True)
class Reporter:
    name: str
    email: str | None
    phone: str | None


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    parent_id: int | None


@dataclass(frozen=True)
class Location:
    province: str
    regency: str | None
    district: str | None
    village: str | None
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class Disposition:
    unit_id: int
    unit_name: str
    instansi_id: int
    at: datetime


@dataclass(frozen=True)
class Attachment:
    id: str
    name: str
    mime: str
    size: int
    url: str


@dataclass(frozen=True)
class FollowUp:
    id: str
    by: str  # "instansi" | "pelapor" | "admin"
    unit_id: int | None
    status: str | None  # an agency's follow-up: a PostStatus
    text: str
    at: datetime


@dataclass(frozen=True)
class Complaint:
    tracking_id: str
    title: str
    body: str
    classification: str
    category: Category
    status: str  # a LaporStatus
    anonymous: bool
    confidential: bool
    reporter: Reporter | None
    channel: str
    location: Location | None
    dispositions: tuple[Disposition, ...]
    attachments: tuple[Attachment, ...]
    follow_ups: tuple[FollowUp, ...]
    submitted_at: datetime
    updated_at: datetime
    deadline: datetime | None
    # Repairs made on the way in (NUL stripped, surrogates replaced, zero dates dropped):
    # field names and what was done, never values.
    repairs: tuple[str, ...] = ()

    @property
    def unit_ids(self) -> tuple[int, ...]:
        return tuple(d.unit_id for d in self.dispositions)


@dataclass(frozen=True)
class Unit:
    id: int
    name: str
    instansi_id: int
    parent_id: int | None
    active: bool


@dataclass(frozen=True)
class Receipt:
    """LAPOR!'s answer to a follow-up POST; ``replayed`` when the key was seen before."""

    id: str
    tracking_id: str
    at: datetime
    replayed: bool = False


@dataclass(frozen=True)
class FollowUpRequest:
    unit_id: int
    status: str  # a PostStatus
    text: str
    attachments: tuple[dict[str, str], ...] = field(default=())
