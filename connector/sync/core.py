"""The sync core: pure functions from (upstream record, link state, mappings) to decisions.

No I/O here, and no clock: the shells pass ``now`` (wall) and monotonic readings in. The
shells in ``pull.py`` and ``push.py`` fetch, then execute what these functions return
inside one database transaction. The core speaks domain reasons (``connector.domain``);
``connector/lapor/reasons.py`` gives them LAPOR!'s codes and builds Idempotency-Keys.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import ClassVar

from connector.domain import (
    CLOSED_STATUSES,
    POSTED_RESULT,
    ChangeId,
    Facts,
    FailReason,
    FollowUpPlan,
    Held,
    LaporStatus,
    LinkState,
    LocalStatus,
    OutboxState,
    OwnPost,
    PostStatus,
    Reason,
)
from connector.lapor import models as m
from connector.lapor.policy import backoff
from connector.mappings import Mappings, Outbound
from connector.sync import clock
from connector.timeutil import WITA, as_utc
from connector.tracker.base import Direction, NewMessage, NewTicket, OfficerChange, TicketUpdate
from connector.tracker.rows import AttachmentMeta

AUTHORS = {"pelapor": "Pelapor (LAPOR!)", "admin": "Admin LAPOR!", "instansi": "Instansi (LAPOR!)"}

# Reasons that look transient (a lagging replica, a cut-off answer): retried by themselves.
TRANSIENT_REASONS = frozenset(
    {Reason.NOT_FOUND, Reason.TRUNCATED_RESPONSE, Reason.RESPONSE_TOO_LARGE}
)
# Reasons that need nobody: they do not make `status` degraded however old.
SETTLED_REASONS = frozenset({Reason.OUTSIDE_INSTANSI})


def retry_delay_s(attempts: int) -> float:
    """Backoff for a transient quarantine: the next few cycles at once, then doubling
    from a minute up to six hours."""
    if attempts <= 3:
        return 0.0
    return float(min(6 * 3600, 60 * 2 ** (attempts - 4)))


class Kind(enum.StrEnum):
    """A decision's kind, by the name the pull counts it under (``PullStats``)."""

    CREATE = "created"
    UPDATE = "updated"
    UNCHANGED = "unchanged"
    HOLD = "held"  # waiting for an admin's mapping
    QUARANTINE = "quarantined"


# -- decisions: one type per kind --------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    """A new ticket and its link."""

    kind: ClassVar[Kind] = Kind.CREATE
    tracking_id: str
    ticket: NewTicket
    link: LinkState
    facts: clock.Facts  # due periods and first follow-ups, to store


@dataclass(frozen=True)
class Update:
    """An existing ticket changes (status, agency, messages, text); the link is saved."""

    kind: ClassVar[Kind] = Kind.UPDATE
    tracking_id: str
    update: TicketUpdate
    link: LinkState
    facts: clock.Facts


@dataclass(frozen=True)
class Unchanged:
    """Nothing for the ticket; the link (its watermark time) and facts are saved."""

    kind: ClassVar[Kind] = Kind.UNCHANGED
    tracking_id: str
    link: LinkState
    facts: clock.Facts


@dataclass(frozen=True)
class SetAside:
    """A record kept out of the tracker, by id; ``reason`` is a ``Reason`` or, for a refusal
    LAPOR! named, LAPOR!'s own code (passed through, never built here)."""

    tracking_id: str
    reason: str
    detail: str
    lapor_updated_at: datetime | None = None
    unit_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Hold(SetAside):
    """Waiting for an admin's mapping (``unmapped_unit``)."""

    kind: ClassVar[Kind] = Kind.HOLD


@dataclass(frozen=True)
class Quarantine(SetAside):
    kind: ClassVar[Kind] = Kind.QUARANTINE


Decision = Create | Update | Unchanged | Hold | Quarantine
Linked = Create | Update | Unchanged  # the decisions that keep a link


# -- what to fetch -------------------------------------------------------------------------


def needs_detail(
    summary: m.Summary, link: LinkState | None, held: Held | None, mappings: Mappings
) -> bool:
    """Whether a feed summary warrants a detail request. An idle feed needs none."""
    if held is not None:
        if held.retry_requested:
            return True
        if held.lapor_updated_at is None or summary.updated_at > held.lapor_updated_at:
            return True
        if tuple(summary.unit_ids) != held.unit_ids:
            return True
        return held.reason == Reason.UNMAPPED_UNIT and unmapped_now_mapped(held, mappings)
    if link is None:
        return True
    return (
        summary.updated_at > link.lapor_updated_at
        or tuple(sorted(summary.unit_ids)) != tuple(sorted(link.unit_ids))
        or summary.status != link.lapor_status
    )


def unmapped_now_mapped(held: Held, mappings: Mappings) -> bool:
    return any(u in mappings.unit_to_agency for u in held.unit_ids)


def requarantine(item: m.BadSummary, held: Held | None) -> Hold | Quarantine | None:
    """A feed item that failed validation: quarantined (again) when it is new, changed
    since it was quarantined, or an operator asked for a retry; None: nothing new."""
    if held is None or held.retry_requested or held.lapor_updated_at != item.updated_at:
        return quarantine(
            item.tracking_id,
            Reason.INVALID_RECORD,
            "invalid fields: " + ", ".join(item.fields),
            item.updated_at,
        )
    return None


@dataclass(frozen=True)
class Triage:
    """What one part of a feed page asks for."""

    wanted: tuple[str, ...]  # a detail request each
    bad: tuple[Hold | Quarantine, ...]  # invalid items, quarantined without a request
    unchanged: int  # nothing to do
    unreadable: tuple[tuple[str, ...], ...]  # fields of invalid items without a tracking id


def triage(
    items: Iterable[m.Summary | m.BadSummary],
    links: Mapping[str, LinkState],
    held: Mapping[str, Held],
    processed: Mapping[str, datetime | None],
    mappings: Mappings,
) -> Triage:
    """Sort feed items by what they need. ``processed``: what this pull already took up
    (an item seen again at the same time, on a later page, costs nothing)."""
    wanted: list[str] = []
    bad: list[Hold | Quarantine] = []
    unreadable: list[tuple[str, ...]] = []
    unchanged = 0
    for item in items:
        if isinstance(item, m.BadSummary):
            if not item.identified:
                unreadable.append(tuple(item.fields))
                continue
            d = requarantine(item, held.get(item.tracking_id))
            if d is None:
                unchanged += 1
            else:
                bad.append(d)
        elif processed.get(item.tracking_id) != item.updated_at and needs_detail(
            item, links.get(item.tracking_id), held.get(item.tracking_id), mappings
        ):
            wanted.append(item.tracking_id)
        else:
            unchanged += 1
    return Triage(tuple(wanted), tuple(bad), unchanged, tuple(unreadable))


FUTURE_TOLERANCE = timedelta(seconds=60)  # clocks of LAPOR!'s nodes differ a little


def part_high(
    items: Iterable[m.Summary | m.BadSummary],
    server_time: datetime | None,
) -> tuple[datetime | None, tuple[tuple[str, timedelta], ...]]:
    """How far a committed part moves the watermark, and the records dated ahead of
    LAPOR!'s own clock (with how far) beyond the tolerance.

    A node whose clock ran ahead: the record is processed, but the watermark never passes
    the server's own clock, or every record after it would be missed."""
    dated = [(i.tracking_id, i.updated_at) for i in items if i.updated_at is not None]
    high = max((at for _, at in dated), default=None)
    if high is None or server_time is None or high <= server_time:
        return high, ()
    ahead = tuple(
        (tid, at - server_time) for tid, at in dated if at > server_time + FUTURE_TOLERANCE
    )
    return server_time, ahead


def feed_since(
    watermark: datetime | None,
    overlap: timedelta,
    sweep_from: datetime | None = None,
    sweep: bool = False,
) -> datetime | None:
    """Where the feed starts: always from the committed watermark (less the overlap),
    never this machine's clock; a sweep from its fixed point further back."""
    if sweep:
        return sweep_from
    return None if watermark is None else watermark - overlap


def sweep_from(watermark: datetime | None, window: timedelta) -> datetime | None:
    return None if watermark is None else watermark - window


def late_lag(
    updated: datetime | None, watermark: datetime | None, overlap: timedelta
) -> timedelta | None:
    """For a sweep: how far behind the watermark (at the sweep's start) LAPOR! committed a
    record the ordinary pulls could not see (None: they could)."""
    if updated is None or watermark is None or updated >= watermark - overlap:
        return None
    return watermark - updated


def remember_summary(
    d: Hold | Quarantine,
    summary: m.Summary | m.BadSummary,
) -> Hold | Quarantine:
    """A detail that could not be had keeps what the feed said: an unchanged summary then
    costs no detail request, and transient reasons are retried on their backoff instead."""
    if d.lapor_updated_at is None and isinstance(summary, m.Summary):
        return replace(d, lapor_updated_at=summary.updated_at, unit_ids=summary.unit_ids)
    return d


def detail_refused(tracking_id: str, reason: str, detail: str) -> Hold | Quarantine:
    """A complaint's detail LAPOR! refused or that could not be read (one record's matter)."""
    return quarantine(tracking_id, reason, detail)


def to_retry(
    held: Mapping[str, Held], processed: Iterable[str], mappings: Mappings, now: datetime
) -> list[str]:
    """Quarantined records to fetch again after a pull: an operator asked, the mapping now
    exists, or a transient reason's backoff has run out (``retry_due``); not those this
    pull just took up."""
    done = set(processed)
    return [
        tid
        for tid, h in held.items()
        if tid not in done
        and tid != m.UNIDENTIFIED
        and (
            h.retry_requested
            or retry_due(h, now)
            or (h.reason == Reason.UNMAPPED_UNIT and unmapped_now_mapped(h, mappings))
        )
    ]


def retry_due(held: Held, now: datetime) -> bool:
    """A transient reason whose backoff (``retry_delay_s`` after its last sighting) ran out."""
    if held.reason not in TRANSIENT_REASONS or held.last_seen is None:
        return False
    return (now - held.last_seen).total_seconds() >= retry_delay_s(held.attempts)


# -- when the pull commits ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cadence:
    """A pull commits what it fetched every ``records`` records or ``seconds`` seconds,
    whichever comes first: tickets appear while a backlog is read under the request budget,
    and a crash loses at most that much work, never a record."""

    records: int = 100
    seconds: float = 5.0


@dataclass(frozen=True)
class Batch:
    """Fetched, decided on at the commit, not yet committed."""

    records: int = 0
    since: float | None = None  # the monotonic clock when its first part came in

    def add(self, records: int, now: float) -> Batch:
        return Batch(self.records + records, self.since if self.since is not None else now)


def commit_due(batch: Batch, cadence: Cadence, now: float) -> bool:
    """After a part joined the batch: commit now?"""
    if batch.since is None:
        return False
    return batch.records >= cadence.records or now - batch.since >= cadence.seconds


def commit_wait_s(
    batch: Batch,
    cadence: Cadence,
    now: float,
    budget_room: float,
) -> float | None:
    """How long to wait for the next part before committing what is fetched; None: nothing
    waits to be committed. No wait once the request budget is spent: what is fetched must
    not wait for the budget to be committed."""
    if batch.since is None:
        return None
    remaining = cadence.seconds - (now - batch.since)
    return remaining if remaining > 0 and budget_room > 0 else 0.0


def commit_before_part(budget_room: float, unfinished: int) -> bool:
    """Whether the next part's requests would wait for the request budget: then what is
    fetched before them commits first."""
    return budget_room < unfinished


def dedupe(items: tuple[m.Summary | m.BadSummary, ...]) -> list[m.Summary | m.BadSummary]:
    """One item per tracking id, the newest, in feed order.

    A strictly newer copy moves to its later position (the feed is ascending by
    (updated, id), so that keeps the result ascending). A copy that is not newer leaves
    the first one where it was: moving it behind newer records would let a commit in
    mid-page carry the watermark past a record not yet committed.
    """
    best: dict[str, m.Summary | m.BadSummary] = {}
    for item in items:
        prev = best.get(item.tracking_id)
        if prev is None:
            best[item.tracking_id] = item
        elif _newer(item, prev):
            del best[item.tracking_id]
            best[item.tracking_id] = item
    return list(best.values())


def _newer(a: m.Summary | m.BadSummary, b: m.Summary | m.BadSummary) -> bool:
    if isinstance(a, m.BadSummary) or a.updated_at is None:
        return False
    return isinstance(b, m.BadSummary) or a.updated_at > b.updated_at


def content_hash(c: m.Complaint) -> str:
    """What LAPOR!'s admins may edit later (text, privacy flags), as one fingerprint."""
    raw = json.dumps([c.title, c.body, c.anonymous, c.confidential], ensure_ascii=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


# -- what to do with one complaint -----------------------------------------------------------


def quarantine(
    tracking_id: str,
    reason: str,
    detail: str,
    updated_at: datetime | None = None,
    unit_ids: tuple[int, ...] = (),
) -> Hold | Quarantine:
    kind = Hold if reason == Reason.UNMAPPED_UNIT else Quarantine
    return kind(tracking_id, reason, detail[:500], updated_at, unit_ids)


def undecidable(c: m.Complaint, error: str) -> Hold | Quarantine:
    """A complaint whose data the core cannot decide on (e.g. a date at the calendar's end)."""
    return quarantine(
        c.tracking_id,
        Reason.INVALID_RECORD,
        f"cannot be processed: {error}",
        c.updated_at,
        c.unit_ids,
    )


def refused_by_storage(d: Decision, error: str) -> Hold | Quarantine:
    """A decision whose values the database refused: the record is quarantined instead,
    remembering what the feed said of it (an unchanged summary then costs no detail)."""
    if isinstance(d, SetAside):
        updated, units = d.lapor_updated_at, d.unit_ids
    else:
        updated, units = d.link.lapor_updated_at, d.link.unit_ids
    return quarantine(
        d.tracking_id,
        Reason.INVALID_RECORD,
        f"values refused by the database ({error})",
        updated,
        units,
    )


def attachment_meta(a: m.Attachment) -> AttachmentMeta:
    """An attachment as a ticket records it (downloads add ``stored`` or ``error``)."""
    return {"id": a.id, "name": a.name, "mime": a.mime, "size": a.size}


def decide(
    c: m.Complaint,
    link: LinkState | None,
    mappings: Mappings,
    instansi_id: int,
    own_posts: tuple[OwnPost, ...] = (),
    current_status: str | None = None,
    facts: clock.Facts | None = None,
) -> Decision:
    """The one decision for a complaint's current detail.

    ``current_status`` is the ticket's local status: an upstream status that this status
    already explains (an officer closed the ticket, so LAPOR! shows ``selesai``) is the
    echo of our own follow-up and does not overwrite it. ``facts`` are the complaint's
    stored due periods; the decision carries them advanced (``connector/sync/clock.py``).

    Set aside first (held, not ours); else the detail is read against the ``Prior`` state
    (``_read``), and a complaint never linked takes the new path (``_create``), a linked
    one the existing path (``_existing``).
    """
    prior = Prior(link, own_posts, current_status, facts)
    ours = tuple(d for d in c.dispositions if d.instansi_id == instansi_id)
    routed = [
        (d, mappings.unit_to_agency[d.unit_id])
        for d in ours
        if d.unit_id in mappings.unit_to_agency
    ]
    aside = _set_aside(c, prior, ours, routed)
    if aside is not None:
        return aside
    read = _read(c, prior, ours, routed, mappings)
    if prior.link is None:
        return _create(read, mappings)
    return _existing(read, prior.link, prior.current_status, mappings)


@dataclass(frozen=True)
class Prior:
    """What is known of a complaint before its new detail, as ``decide`` is given it: its
    link (None: never linked), our own posts on it, the ticket's local status, and its
    stored due periods."""

    link: LinkState | None
    own_posts: tuple[OwnPost, ...] = ()
    current_status: str | None = None
    facts: clock.Facts | None = None


@dataclass(frozen=True)
class _Read:
    """A detail read against its prior state: where the new and the existing path start."""

    c: m.Complaint
    ours: tuple[m.Disposition, ...]  # the dispositions to Mahulu's instansi
    routed: list[tuple[m.Disposition, str]]  # those in a mapped unit, with its agency
    local_status: str  # what LAPOR!'s status maps to
    messages: tuple[NewMessage, ...]  # follow-ups not seen before, less our own posts
    link: LinkState  # the link as this detail leaves it
    facts: clock.Facts


def _set_aside(
    c: m.Complaint,
    prior: Prior,
    ours: tuple[m.Disposition, ...],
    routed: list[tuple[m.Disposition, str]],
) -> Hold | Quarantine | None:
    """A complaint kept out of the tracker: disposed to units no agency has (held for a
    mapping), or never ours (a new complaint disposed only to other instansi)."""
    if ours and not routed:
        units = tuple(d.unit_id for d in ours)
        return quarantine(
            c.tracking_id,
            Reason.UNMAPPED_UNIT,
            "unit " + ", ".join(map(str, units)) + " is in no agency of agencies.toml",
            c.updated_at,
            units,
        )
    if prior.link is None and not ours:
        return quarantine(
            c.tracking_id,
            Reason.OUTSIDE_INSTANSI,
            "disposed only to units of other instansi",
            c.updated_at,
            c.unit_ids,
        )
    return None


def _read(
    c: m.Complaint,
    prior: Prior,
    ours: tuple[m.Disposition, ...],
    routed: list[tuple[m.Disposition, str]],
    mappings: Mappings,
) -> _Read:
    link = prior.link
    local_status = mappings.inbound[c.status]
    new_msgs, seen = _messages(c, link.seen_followups if link else frozenset(), prior.own_posts)
    # Never flips because LAPOR! reordered its list: see clock.lead_agency.
    agency = clock.lead_agency(routed, link.agency if link else None)
    new_link = LinkState(
        tracking_id=c.tracking_id,
        ticket_ref=link.ticket_ref if link else "",
        agency=agency,
        lapor_status=c.status,
        lapor_updated_at=c.updated_at,
        unit_ids=tuple(sorted(c.unit_ids)),
        seen_followups=seen,
        closed=c.status in CLOSED_STATUSES or not ours,
        content_hash=content_hash(c),
    )
    new_facts = clock.advance(
        c,
        prior.facts,
        routed,
        agency,
        new_link.closed,
        mappings,
        link.lapor_status if link else None,
        link.closed if link else False,
        link.unit_ids if link else (),
    )
    return _Read(c, ours, routed, local_status, new_msgs, new_link, new_facts)


def _create(r: _Read, mappings: Mappings) -> Create:
    """A new ticket, with a note of the other agencies it went to and of repaired data."""
    c, agency = r.c, r.link.agency
    extra = [f"Juga didisposisikan ke unit {d.unit_id} ({a})" for d, a in r.routed if a != agency]
    if c.repairs:
        extra.append(
            "Data dari LAPOR! diperbaiki saat diterima (makna tetap): " + "; ".join(c.repairs)[:900]
        )
    first_msgs = r.messages + tuple(
        NewMessage(Direction.INTERNAL, CONNECTOR, t, c.updated_at) for t in extra
    )
    ticket = NewTicket(
        tracking_id=c.tracking_id,
        agency=agency,
        status=r.local_status,
        lapor_status=c.status,
        title=c.title,
        body=c.body,
        classification=c.classification,
        category=mappings.category_for(c.category.id, c.category.parent_id) or c.category.name,
        channel=c.channel,
        anonymous=c.anonymous,
        confidential=c.confidential,
        reporter=None
        if c.anonymous or c.reporter is None
        else {"name": c.reporter.name, "email": c.reporter.email, "phone": c.reporter.phone},
        location=None
        if c.location is None
        else {
            "province": c.location.province,
            "regency": c.location.regency,
            "district": c.location.district,
            "village": c.location.village,
            "lat": c.location.lat,
            "lon": c.location.lon,
        },
        attachments=tuple(attachment_meta(a) for a in c.attachments),
        submitted_at=c.submitted_at,
        due_at=r.facts.current.due_at,
        messages=first_msgs,
    )
    return Create(c.tracking_id, ticket, r.link, r.facts)


CONNECTOR = "Konektor LAPOR!"  # the author of the connector's own notes on a ticket


def _existing(
    r: _Read, link: LinkState, current_status: str | None, mappings: Mappings
) -> Update | Unchanged:
    """An existing ticket: what of its status, agency, messages and text changes."""
    c = r.c
    status, reason, msgs = _status_change(r, link, current_status, mappings)
    moved = None
    if r.ours and r.link.agency != link.agency:
        moved = r.link.agency
        msgs.append(
            NewMessage(
                Direction.INTERNAL,
                CONNECTOR,
                f"Didisposisikan ulang di LAPOR!: dipindah dari {link.agency} ke {moved}.",
                c.updated_at,
            )
        )
    changed = (
        status is not None
        or moved is not None
        or bool(msgs)
        or r.link != replace(link, lapor_updated_at=r.link.lapor_updated_at)
    )
    # Edited text and later privacy reach the ticket (LAPOR!'s admins remove personal data
    # by editing; privacy only ever tightens locally).
    edited = link.content_hash != r.link.content_hash
    update = TicketUpdate(
        lapor_status=c.status,
        status=status,
        agency=moved,
        due_at=r.facts.current.due_at,
        reason=reason,
        messages=tuple(msgs),
        title=c.title if edited else None,
        body=c.body if edited else None,
        anonymous=c.anonymous if edited else None,
        confidential=c.confidential if edited else None,
    )
    if changed:
        return Update(c.tracking_id, update, r.link, r.facts)
    return Unchanged(c.tracking_id, r.link, r.facts)


# Why a ticket's status follows LAPOR!'s, by the status it follows (else "menjadi ...").
_STATUS_REASONS: dict[str, str] = {
    LaporStatus.DITUTUP: "ditutup di LAPOR!",
    LaporStatus.DIARSIPKAN: "diarsipkan di LAPOR!",
}


def _status_change(
    r: _Read,
    link: LinkState,
    current_status: str | None,
    mappings: Mappings,
) -> tuple[str | None, str | None, list[NewMessage]]:
    """The ticket's new local status (None: it keeps its own), why, and the messages so far.

    Disposed away from Mahulu closes it; disposed back, or a LAPOR! status that is not the
    echo of our own follow-up, sets the mapped status."""
    c, msgs = r.c, list(r.messages)
    if not r.ours:
        msgs.append(
            NewMessage(
                Direction.INTERNAL,
                CONNECTOR,
                "Laporan dialihkan ke instansi lain; tiket ditutup.",
                c.updated_at,
            )
        )
        return LocalStatus.CLOSED, "didisposisikan ke instansi lain di LAPOR!", msgs
    if link.closed and not r.link.closed:
        return r.local_status, "didisposisikan kembali ke Mahulu", msgs
    if c.status == link.lapor_status or _echo(current_status, c.status, mappings):
        return None, None, msgs
    reason = _STATUS_REASONS.get(c.status, f"status LAPOR! menjadi {c.status}")
    if link.lapor_status == LaporStatus.SELESAI and c.status == LaporStatus.DITINDAKLANJUTI:
        reason = "pelapor menyatakan keberatan; tiket dibuka kembali"
    return r.local_status, reason, msgs


def _echo(current_status: str | None, lapor_status: str, mappings: Mappings) -> bool:
    outbound = mappings.outbound.get(current_status or "")
    return outbound is not None and POSTED_RESULT.get(outbound.lapor) == lapor_status


def _messages(
    c: m.Complaint, seen: frozenset[str], own_posts: tuple[OwnPost, ...]
) -> tuple[tuple[NewMessage, ...], frozenset[str]]:
    """New follow-ups as messages; our own posts are recognised, never re-imported."""
    out: list[NewMessage] = []
    own = list(own_posts)
    now_seen = set(seen)
    for fu in c.follow_ups:
        if fu.id in now_seen:
            continue
        now_seen.add(fu.id)
        if fu.by == "instansi":
            match = next(
                (
                    p
                    for p in own
                    if p.text == fu.text and (fu.status is None or fu.status == p.lapor_status)
                ),
                None,
            )
            if match is not None:
                own.remove(match)
                continue
            out.append(NewMessage(Direction.OUT, AUTHORS["instansi"], fu.text, fu.at, fu.id))
        else:
            out.append(NewMessage(Direction.IN, AUTHORS.get(fu.by, fu.by), fu.text, fu.at, fu.id))
    return tuple(out), frozenset(now_seen)


# -- push -------------------------------------------------------------------------------------


def plan_outbox(
    change: OfficerChange,
    link: LinkState | None,
    mappings: Mappings,
    last_queued: str | None = None,
) -> FollowUpPlan | None:
    """The outbox entry for one officer change, or None when nothing goes to LAPOR!.

    ``last_queued`` is the LAPOR! status of the complaint's latest outbox entry that was
    not refused: a local ``closed`` after ``resolved`` must not post a second ``selesai``.
    """
    if change.status is None and not change.reply:
        return None
    outbound = mappings.outbound.get(
        change.ticket_status if change.status is None else change.status
    )
    if (
        change.status is not None
        and not change.reply
        and _nothing_to_say(outbound, link, last_queued)
    ):
        return None
    lapor_status = outbound.lapor if outbound else PostStatus.DIPROSES
    agency = mappings.agency(link.agency) if link is not None else None
    text = change.reply or (
        outbound.text(agency.name if agency else "Pemerintah Kabupaten Mahakam Ulu")
        if outbound
        else ""
    )
    failed, unit = _posting(link, mappings)
    return FollowUpPlan(
        change_id=ChangeId.of(change.change_id),
        tracking_id=change.tracking_id,
        ticket_ref=change.ticket_ref,
        lapor_status=lapor_status,
        text=text,
        failed=failed,
        unit_id=unit,
        at=change.at,
    )


def _nothing_to_say(
    outbound: Outbound | None, link: LinkState | None, last_queued: str | None
) -> bool:
    """A status change without a reply that posts nothing: LAPOR! has no agency status for
    it (e.g. back to "new"), or it is done on LAPOR! already (the template would say it
    twice)."""
    if outbound is None:
        return True
    done = last_queued == PostStatus.SELESAI or (
        link is not None and link.lapor_status == LaporStatus.SELESAI
    )
    return outbound.lapor == PostStatus.SELESAI and done


def _posting(link: LinkState | None, mappings: Mappings) -> tuple[FailReason | None, int | None]:
    """The unit an entry posts for, or why it cannot post."""
    if link is None:
        return FailReason.COMPLAINT_NOT_FOUND, None
    if link.closed:
        return closed_reason(link), None
    unit = posting_unit(link, mappings)
    return (FailReason.NOT_DISPOSED_TO_US if unit is None else None), unit


def closed_reason(link: LinkState | None) -> FailReason:
    """Why nothing more can be posted on a complaint that is no longer ours to answer."""
    if link is not None and link.lapor_status in CLOSED_STATUSES:
        return FailReason.COMPLAINT_CLOSED
    return FailReason.NOT_DISPOSED_TO_US


def posting_unit(link: LinkState, mappings: Mappings) -> int | None:
    """The disposed unit that maps to the ticket's agency."""
    mine = set(mappings.units_of(link.agency))
    return next((u for u in link.unit_ids if u in mine), None)


# -- delivery: what to do with one outbox entry, keys' lifetime, finding our own post --------

# How far LAPOR!'s clock may be behind ours when we look for our own post, plus the
# whole-second truncation of its WIB timestamps.
VERIFY_SKEW = timedelta(seconds=601)
UNCONFIRMED_MAX_CHECKS = 3  # "delivered, answer unreadable" but not found: then a person looks
UNCONFIRMED_FIRST_CHECK_S = 30.0  # an unreadable success answer: read the complaint after
MAX_KEY_CHANGES = 5  # new keys after collisions with a restored backup's, then it fails


@dataclass(frozen=True)
class Verify:
    """Delivered already (an unreadable success answer): only confirm it by reading."""

    unit: int


@dataclass(frozen=True)
class Fail:
    reason: FailReason


@dataclass(frozen=True)
class Post:
    """Post it (after a verify, when ``must_verify`` says so)."""

    unit: int
    fix_unit: bool  # the entry predates fixed units: store it now, so replays stay equal


@dataclass(frozen=True)
class LookUp:
    """The complaint is no longer ours to answer (closed, moved): never posted now, but
    looked for on LAPOR! first (a change read again after a restore may be there, sent by
    the lost database before the close); failed with ``reason`` when it is not."""

    reason: FailReason


SendStep = Verify | Fail | Post | LookUp


def send_step(
    state: str, unit_id: int | None, link: LinkState | None, mappings: Mappings
) -> SendStep:
    """The first step for a due outbox entry."""
    # The unit was fixed when the entry was made; entries older than that get it now, once.
    unit = (
        unit_id
        if unit_id is not None
        else (posting_unit(link, mappings) if link is not None else None)
    )
    if state == OutboxState.UNCONFIRMED and unit is not None:
        return Verify(unit)  # even if the complaint closed meanwhile
    if link is None:
        return Fail(closed_reason(link))
    if link.closed or unit is None:
        return LookUp(closed_reason(link))
    return Post(unit, fix_unit=unit_id is None)


def failed_at_once(plan: FollowUpPlan) -> FailReason | None:
    """The failure an outbox entry is made with. A complaint never linked fails at once;
    one no longer ours to answer (closed, moved) is looked up on LAPOR! first
    (``LookUp``): the change may be one read again after a restore, sent before."""
    return plan.failed if plan.failed is FailReason.COMPLAINT_NOT_FOUND else None


def own_units(
    unit: int | None, link: LinkState | None, facts: Facts | None, mappings: Mappings
) -> frozenset[int]:
    """The units a post of ours on this complaint may carry: the entry's, and those of
    every Mahulu agency that held it (its due periods, its holders now, the link). A change
    read again after a restore is planned for the unit holding the complaint now; the lost
    database may have posted it for the unit that held it then."""
    agencies = ({p.agency for p in facts.periods} | set(facts.agencies)) if facts else set()
    if link is not None:
        agencies.add(link.agency)
    units = {u for a in agencies for u in mappings.units_of(a)}
    if link is not None:
        units.update(u for u in link.unit_ids if u in mappings.unit_to_agency)
    return frozenset(units | ({unit} if unit is not None else set()))


def rekey_on_refusal(reason: FailReason | None, key_changes: int) -> bool:
    """LAPOR! refused the POST: a key it holds for another body (this database reuses a
    restored copy's keys) gets a new key, a few times; any other refusal fails the entry."""
    return reason is FailReason.KEY_TAKEN and key_changes < MAX_KEY_CHANGES


_VERIFY_FAILS: dict[str, FailReason] = {
    Reason.NOT_FOUND: FailReason.COMPLAINT_NOT_FOUND,
    Reason.NOT_DISPOSED: FailReason.NOT_DISPOSED_TO_US,
}


def verify_refused(reason: str) -> FailReason | None:
    """Reading the complaint to verify was refused: the entry fails (gone, not ours), or
    None: an answer we could not read this time; look again later, never post blindly."""
    return _VERIFY_FAILS.get(reason)


def defer_delay_s(attempts: int, max_backoff_s: float) -> float:
    """When an entry LAPOR! could not take now is tried again."""
    return backoff(attempts, 30.0, max_backoff_s, 0.0)


def check_delay_s(checks: int, max_backoff_s: float) -> float:
    """When an unconfirmed entry not found on LAPOR! is looked for again."""
    return backoff(checks, 60.0, max_backoff_s, 0.0)


def unconfirmed_gives_up(checks: int) -> bool:
    """LAPOR! said it was created, yet it was never found: a person looks."""
    return checks >= UNCONFIRMED_MAX_CHECKS


def verify_margin(ttl_s: float) -> timedelta:
    """Safety margin before LAPOR! forgets a key: a quarter of its life, at most an hour."""
    return timedelta(seconds=min(3600.0, ttl_s / 4))


def post_window_end(key_first_used_at: datetime, ttl_s: float) -> datetime:
    """After this moment a POST with the same key may create a second follow-up."""
    return key_first_used_at + timedelta(seconds=ttl_s) - verify_margin(ttl_s)


def must_verify(
    state: str,
    key_first_used_at: datetime | None,
    now: datetime,
    ttl_s: float,
    created_at: datetime | None = None,
) -> bool:
    """Whether to read the complaint before any POST: never re-POST blindly once the key
    may be forgotten, nor after a success answer we could not read.

    An entry never tried by this database counts from its creation (its officer change):
    a database restored from a backup has forgotten attempts made after the backup, and
    LAPOR! the key of one made more than a key's lifetime ago."""
    if state == OutboxState.UNCONFIRMED:
        return True
    since = key_first_used_at if key_first_used_at is not None else created_at
    return since is not None and now >= post_window_end(since, ttl_s)


def looks_restored(never_tried: bool, posted_at: datetime, tried_at: datetime) -> bool:
    """LAPOR! already had this post (found, or replayed by its key) from before this
    database first tried it: the database forgot sending it, as a restored backup does.
    ``posted_at`` is on LAPOR!'s clock brought to ours; VERIFY_SKEW covers what is left."""
    return never_tried and posted_at < tried_at - VERIFY_SKEW


def find_own_post(
    follow_ups: tuple[m.FollowUp, ...],
    units: Collection[int],
    status: str,
    text: str,
    since: datetime,
    taken: frozenset[str] = frozenset(),
    server_offset: timedelta = timedelta(0),
) -> m.FollowUp | None:
    """Our post among a complaint's follow-ups: by one of ``units`` (``own_units``), same
    status and text, dated no earlier than our first attempt (less skew); ``taken`` ids
    already belong to other entries.

    ``since`` is on this machine's clock, follow-ups on LAPOR!'s: ``server_offset`` (how far
    LAPOR!'s clock is ahead of ours) brings them together, so a LAPOR! whose clock runs
    an hour behind still finds the post."""
    earliest = since + server_offset - VERIFY_SKEW
    for fu in follow_ups:
        if fu.id in taken or fu.by != "instansi" or fu.text != text:
            continue
        if fu.unit_id is not None and fu.unit_id not in units:
            continue
        if fu.status is not None and fu.status != status:
            continue
        if fu.at >= earliest:
            return fu
    return None


# -- when the daemon sweeps ---------------------------------------------------------------------

QUIET_HOURS_WITA = range(1, 5)  # 01:00-04:59 WITA: offices closed, LAPOR! quiet
DAY_S = 86400


def sweep_due(now: datetime, last: datetime | None, interval_s: float) -> bool:
    """Whether the next pull should be a sweep.

    With a daily (or longer) interval the sweep waits for a quiet hour WITA, unless a
    whole extra day has passed without one (the machine was off at night). Shorter
    intervals do not wait.
    """
    now = as_utc(now)
    elapsed = None if last is None else (now - as_utc(last)).total_seconds()
    if elapsed is not None and elapsed < interval_s:
        return False
    if interval_s < DAY_S:
        return True
    if elapsed is not None and elapsed >= interval_s + DAY_S:
        return True
    return now.astimezone(WITA).hour in QUIET_HOURS_WITA
