"""The records the sync core decides over and the store persists: pure data, no I/O.

They live below both ``connector.sync`` and ``connector.store`` so the store never
imports the sync layer (``tests/test_layering.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


class LaporStatus(enum.StrEnum):
    """A complaint's status on LAPOR!, in LAPOR!'s own words: ``mappings/statuses.toml``
    maps exactly these, and links store them (``links.lapor_status``)."""

    TERDISPOSISI = "terdisposisi"
    DITINDAKLANJUTI = "ditindaklanjuti"
    SELESAI = "selesai"
    DITUTUP = "ditutup"
    DIARSIPKAN = "diarsipkan"


# Nothing more can be posted on a complaint in these (LAPOR!'s ``laporan_ditutup``).
CLOSED_STATUSES = frozenset({LaporStatus.DITUTUP, LaporStatus.DIARSIPKAN})


class PostStatus(enum.StrEnum):
    """The status a follow-up of ours carries (``tindak-lanjut.status``), as stored in
    ``outbox.lapor_status``."""

    DIPROSES = "diproses"
    SELESAI = "selesai"


# What a posted follow-up status makes of the complaint on LAPOR!. Keyed by plain text:
# the mappings and the store hand the core their values as ``str``.
POSTED_RESULT: Mapping[str, LaporStatus] = {
    PostStatus.DIPROSES: LaporStatus.DITINDAKLANJUTI,
    PostStatus.SELESAI: LaporStatus.SELESAI,
}


class LocalStatus(enum.StrEnum):
    """A ticket's status in the local tracker (``tickets.status``, the mappings' left side);
    an external tracker's own statuses are mapped onto these."""

    NEW = "new"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class ChangeId(str):
    """An officer change's id, namespaced by its tracker's kind: ``builtin:<change id>``,
    ``redmine:<journal id>``. It is a ``str`` (``outbox.change_id`` stores it as it is);
    constructing one through ``of``, ``make`` or ``builtin`` keeps the namespace rule here.

    The built-in tracker reads its changes in the push's transaction without a kind: a bare
    id is a built-in one. Its Idempotency-Keys carry the bare id (``key_part``): they were
    made before trackers had kinds, and a stored key is replayed as it is.
    """

    __slots__ = ()
    BUILTIN = "builtin"

    @classmethod
    def of(cls, raw: str) -> ChangeId:
        """A tracker's change id as given: namespaced already, or bare (built-in)."""
        return cls(raw if ":" in raw else f"{cls.BUILTIN}:{raw}")

    @classmethod
    def make(cls, kind: str, local: int | str) -> ChangeId:
        """A change of the tracker ``kind`` (``tracker.kind``) by its id there."""
        return cls(f"{kind}:{local}")

    @classmethod
    def builtin(cls, local: int | str) -> ChangeId:
        return cls.make(cls.BUILTIN, local)

    @property
    def kind(self) -> str:
        kind, namespaced, _ = self.partition(":")
        return kind if namespaced else self.BUILTIN

    @property
    def key_part(self) -> str:
        """What the Idempotency-Key carries: a built-in change's bare id, else all of it."""
        return self.removeprefix(f"{self.BUILTIN}:")


class OutboxState(enum.StrEnum):
    """An outbox entry's state, as stored (``outbox.state``) and shown in JSON."""

    PENDING = "pending"
    UNCONFIRMED = "unconfirmed"  # delivered, but LAPOR!'s answer was unreadable
    SENT = "sent"
    FAILED = "failed"  # refused or given up: holds back the complaint's later entries
    DISMISSED = "dismissed"  # a failed entry an admin dismissed


class Reason(enum.StrEnum):
    """Why a record is held or quarantined (``quarantine.reason``). A refusal LAPOR! names
    with a code of its own is stored under that code instead (``lapor/reasons.py``)."""

    UNMAPPED_UNIT = "unmapped_unit"
    INVALID_RECORD = "invalid_record"
    NOT_FOUND = "not_found"
    NOT_DISPOSED = "not_disposed"
    OUTSIDE_INSTANSI = "outside_instansi"
    RESPONSE_TOO_LARGE = "response_too_large"
    TRUNCATED_RESPONSE = "truncated_response"


class FailReason(enum.StrEnum):
    """Why an outbox entry fails, in the core's words; ``connector/lapor/reasons.py``
    gives each the code that is stored and shown (LAPOR!'s own where it has one)."""

    COMPLAINT_CLOSED = "complaint_closed"
    NOT_DISPOSED_TO_US = "not_disposed_to_us"
    COMPLAINT_NOT_FOUND = "complaint_not_found"
    LOCAL_DATA_INVALID = "local_data_invalid"  # the entry's own text could not be sent
    UNCONFIRMED = "unconfirmed"  # delivered per LAPOR!, never found by reading
    KEY_TAKEN = "key_taken"  # LAPOR! knows the key for a different body


class Start(enum.StrEnum):
    RECEIVED = "received"
    OBJECTION = "objection"
    REDISPOSITION = "redisposition"
    REOPENED = "reopened"


# Periods that set the clock for an agency's *first* response to a disposition; the
# report counts the last of them (objections and reopenings come after a response).
FIRST_RESPONSE = (Start.RECEIVED, Start.REDISPOSITION)


@dataclass(frozen=True)
class Period:
    seq: int
    agency: str
    start: str  # a Start value
    started_at: datetime
    due_at: datetime
    due_source: str  # "lapor" (batas_tindak_lanjut) | "computed" (5 working days, WITA)
    lapor_deadline: datetime | None  # LAPOR!'s deadline when the period began: a stale one
    first_follow_up_at: datetime | None = None  # LAPOR!'s `dibuat` of that follow-up
    first_follow_up_id: str | None = None
    on_time: bool | None = None
    ended_at: datetime | None = None

    def overdue(self, now: datetime) -> bool:
        return self.first_follow_up_at is None and self.due_at < now


@dataclass(frozen=True)
class Facts:
    tracking_id: str
    agency: str  # the lead agency: the ticket's
    agencies: tuple[str, ...]  # every Mahulu agency holding a disposition, lead first
    received_at: datetime  # LAPOR!'s `dibuat`
    settle_by: datetime
    lapor_status: str  # a LaporStatus
    closed: bool
    periods: tuple[Period, ...]

    @property
    def current(self) -> Period:
        return self.periods[-1]

    def overdue(self, now: datetime) -> bool:
        return not self.closed and self.current.overdue(now)

    def first_response(self) -> Period:
        return [p for p in self.periods if p.start in FIRST_RESPONSE][-1]


@dataclass(frozen=True)
class LinkState:
    tracking_id: str
    ticket_ref: str
    agency: str
    lapor_status: str  # a LaporStatus
    lapor_updated_at: datetime
    unit_ids: tuple[int, ...]
    seen_followups: frozenset[str]
    closed: bool
    # Fingerprint of title, body and privacy flags as last applied (None: not known yet).
    content_hash: str | None = None


@dataclass(frozen=True)
class Held:
    """A quarantine entry as the core needs it."""

    reason: str
    lapor_updated_at: datetime | None
    unit_ids: tuple[int, ...]
    retry_requested: bool
    attempts: int = 0  # fetches that ended here, for the backoff of transient reasons
    last_seen: datetime | None = None


@dataclass(frozen=True)
class OwnPost:
    """A follow-up this connector sent or is sending, to recognise it in the feed."""

    lapor_status: str  # a PostStatus
    text: str


@dataclass(frozen=True)
class FollowUpPlan:
    """The outbox entry one officer change makes (``core.plan_outbox``); the push shell
    adds its Idempotency-Key and stores ``failed`` in LAPOR!'s words
    (``connector/lapor/reasons.py``)."""

    change_id: ChangeId
    tracking_id: str
    ticket_ref: str
    lapor_status: str  # a PostStatus
    text: str
    failed: FailReason | None = None  # recorded as failed at once (e.g. complaint closed)
    unit_id: int | None = None  # the posting unit, fixed now: a replay's body never changes
    # When the officer acted: no post of it can be older. A change read again after a
    # restore (an external tracker's cursor went back) is that old, not new.
    at: datetime | None = None
