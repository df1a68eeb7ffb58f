"""The sync core: pure functions from (upstream record, link state, mappings) to decisions.

No I/O here. The shells in ``pull.py`` and ``push.py`` fetch, then execute
what these functions return inside one database transaction.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from connector.domain import Held, LinkState, OutboxPlan, OutboxState, OwnPost
from connector.lapor import models as m
from connector.mappings import Mappings
from connector.sync import clock
from connector.tracker.base import Direction, NewMessage, NewTicket, OfficerChange, TicketUpdate

AUTHORS = {"pelapor": "Pelapor (LAPOR!)", "admin": "Admin LAPOR!", "instansi": "Instansi (LAPOR!)"}


class Reason(enum.StrEnum):
    UNMAPPED_UNIT = "unmapped_unit"
    INVALID_RECORD = "invalid_record"
    NOT_FOUND = "not_found"
    NOT_DISPOSED = "not_disposed"
    OUTSIDE_INSTANSI = "outside_instansi"
    RESPONSE_TOO_LARGE = "response_too_large"
    TRUNCATED_RESPONSE = "truncated_response"


# Reasons that look transient (a lagging replica, a cut-off answer): retried by themselves.
TRANSIENT_REASONS = frozenset({Reason.NOT_FOUND, Reason.TRUNCATED_RESPONSE,
                               Reason.RESPONSE_TOO_LARGE})
# Reasons that need nobody: they do not make `status` degraded however old.
SETTLED_REASONS = frozenset({Reason.OUTSIDE_INSTANSI})


def retry_delay_s(attempts: int) -> float:
    """Backoff for a transient quarantine: the next few cycles at once, then doubling
    from a minute up to six hours."""
    if attempts <= 3:
        return 0.0
    return float(min(6 * 3600, 60 * 2 ** (attempts - 4)))


class Kind(enum.StrEnum):
    CREATE = "created"
    UPDATE = "updated"
    UNCHANGED = "unchanged"
    HOLD = "held"  # waiting for an admin's mapping
    QUARANTINE = "quarantined"


@dataclass(frozen=True)
class Decision:
    kind: Kind
    tracking_id: str
    ticket: NewTicket | None = None
    update: TicketUpdate | None = None
    link: LinkState | None = None
    reason: str | None = None
    detail: str = ""
    lapor_updated_at: datetime | None = None
    unit_ids: tuple[int, ...] = ()
    fail_outbox: str | None = None  # LAPOR! code to fail pending follow-ups with
    facts: clock.Facts | None = None  # due periods and first follow-ups, to store


# -- what to fetch -------------------------------------------------------------------------


def needs_detail(summary: m.Summary, link: LinkState | None, held: Held | None,
                 mappings: Mappings) -> bool:
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
    return (summary.updated_at > link.lapor_updated_at
            or tuple(sorted(summary.unit_ids)) != tuple(sorted(link.unit_ids))
            or summary.status != link.lapor_status)


def unmapped_now_mapped(held: Held, mappings: Mappings) -> bool:
    return any(u in mappings.unit_to_agency for u in held.unit_ids)


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


def quarantine(tracking_id: str, reason: str, detail: str, updated_at: datetime | None = None,
               unit_ids: tuple[int, ...] = ()) -> Decision:
    kind = Kind.HOLD if reason == Reason.UNMAPPED_UNIT else Kind.QUARANTINE
    return Decision(kind, tracking_id, reason=reason, detail=detail[:500],
                    lapor_updated_at=updated_at, unit_ids=unit_ids)


def decide(c: m.Complaint, link: LinkState | None, mappings: Mappings, instansi_id: int,
           own_posts: tuple[OwnPost, ...] = (), current_status: str | None = None,
           facts: clock.Facts | None = None) -> Decision:
    """The one decision for a complaint's current detail.

    ``current_status`` is the ticket's local status: an upstream status that this status
    already explains (an officer closed the ticket, so LAPOR! shows ``selesai``) is the
    echo of our own follow-up and does not overwrite it. ``facts`` are the complaint's
    stored due periods; the decision carries them advanced (``connector/sync/clock.py``).
    """
    ours = [d for d in c.dispositions if d.instansi_id == instansi_id]
    routed = [(d, mappings.unit_to_agency[d.unit_id]) for d in ours
              if d.unit_id in mappings.unit_to_agency]
    if ours and not routed:
        units = tuple(d.unit_id for d in ours)
        return quarantine(c.tracking_id, Reason.UNMAPPED_UNIT,
                          "unit " + ", ".join(map(str, units)) + " is in no agency of "
                          "agencies.toml", c.updated_at, units)
    if link is None and not ours:
        return quarantine(c.tracking_id, Reason.OUTSIDE_INSTANSI,
                          "disposed only to units of other instansi", c.updated_at, c.unit_ids)
    local_status = mappings.inbound[c.status]
    new_msgs, seen = _messages(c, link.seen_followups if link else frozenset(), own_posts)
    # Never flips because LAPOR! reordered its list: see clock.lead_agency.
    agency = clock.lead_agency(routed, link.agency if link else None)
    new_link = LinkState(
        tracking_id=c.tracking_id, ticket_ref=link.ticket_ref if link else "", agency=agency,
        lapor_status=c.status, lapor_updated_at=c.updated_at,
        unit_ids=tuple(sorted(c.unit_ids)), seen_followups=seen,
        closed=c.status in m.CLOSED_STATUSES or not ours, content_hash=content_hash(c),
    )
    new_facts = clock.advance(c, facts, routed, agency, new_link.closed, mappings,
                              link.lapor_status if link else None, link.closed if link else False,
                              link.unit_ids if link else ())
    if link is None:
        extra = [f"Juga didisposisikan ke unit {d.unit_id} ({a})" for d, a in routed
                 if a != agency]
        if c.repairs:
            extra.append("Data dari LAPOR! diperbaiki saat diterima (makna tetap): "
                         + "; ".join(c.repairs)[:900])
        first_msgs = new_msgs + tuple(
            NewMessage(Direction.INTERNAL, "Konektor LAPOR!", t, c.updated_at) for t in extra)
        ticket = NewTicket(
            tracking_id=c.tracking_id, agency=agency, status=local_status, lapor_status=c.status,
            title=c.title, body=c.body, classification=c.classification,
            category=mappings.category_for(c.category.id, c.category.parent_id) or c.category.name,
            channel=c.channel, anonymous=c.anonymous, confidential=c.confidential,
            reporter=None if c.anonymous or c.reporter is None else {
                "name": c.reporter.name, "email": c.reporter.email, "phone": c.reporter.phone},
            location=None if c.location is None else {
                "province": c.location.province, "regency": c.location.regency,
                "district": c.location.district, "village": c.location.village,
                "lat": c.location.lat, "lon": c.location.lon},
            attachments=tuple({"id": a.id, "name": a.name, "mime": a.mime, "size": a.size}
                              for a in c.attachments),
            submitted_at=c.submitted_at,
            due_at=new_facts.current.due_at,
            messages=first_msgs,
        )
        return Decision(Kind.CREATE, c.tracking_id, ticket=ticket, link=new_link,
                        fail_outbox=_fail_code(c, ours), facts=new_facts)
    # An existing ticket.
    status = None
    reason = None
    msgs = list(new_msgs)
    if not ours:
        status, reason = "closed", "didisposisikan ke instansi lain di LAPOR!"
        msgs.append(NewMessage(Direction.INTERNAL, "Konektor LAPOR!",
                               "Laporan dialihkan ke instansi lain; tiket ditutup.", c.updated_at))
    elif link.closed and not new_link.closed:
        status, reason = local_status, "didisposisikan kembali ke Mahulu"
    elif c.status != link.lapor_status and not _echo(current_status, c.status, mappings):
        status = local_status
        reason = {"ditutup": "ditutup di LAPOR!", "diarsipkan": "diarsipkan di LAPOR!"}.get(
            c.status, f"status LAPOR! menjadi {c.status}")
        if link.lapor_status == "selesai" and c.status == "ditindaklanjuti":
            reason = "pelapor menyatakan keberatan; tiket dibuka kembali"
    moved = None
    if ours and agency != link.agency:
        moved = agency
        msgs.append(NewMessage(Direction.INTERNAL, "Konektor LAPOR!",
                               f"Didisposisikan ulang di LAPOR!: dipindah dari {link.agency} "
                               f"ke {agency}.", c.updated_at))
    changed = status is not None or moved is not None or bool(msgs) or new_link != replace(
        link, lapor_updated_at=new_link.lapor_updated_at)
    # Edited text and later privacy reach the ticket (LAPOR!'s admins remove personal data
    # by editing; privacy only ever tightens locally).
    edited = link.content_hash != new_link.content_hash
    update = TicketUpdate(lapor_status=c.status, status=status, agency=moved,
                          due_at=new_facts.current.due_at, reason=reason, messages=tuple(msgs),
                          title=c.title if edited else None, body=c.body if edited else None,
                          anonymous=c.anonymous if edited else None,
                          confidential=c.confidential if edited else None)
    kind = Kind.UPDATE if changed else Kind.UNCHANGED
    return Decision(kind, c.tracking_id, update=update, link=new_link,
                    fail_outbox=_fail_code(c, ours), facts=new_facts)


# What a posted follow-up status makes of the complaint on LAPOR!.
POSTED_RESULT = {"diproses": "ditindaklanjuti", "selesai": "selesai"}


def _echo(current_status: str | None, lapor_status: str, mappings: Mappings) -> bool:
    outbound = mappings.outbound.get(current_status or "")
    return outbound is not None and POSTED_RESULT.get(outbound.lapor) == lapor_status


def _fail_code(c: m.Complaint, ours: list[m.Disposition]) -> str | None:
    if c.status in m.CLOSED_STATUSES:
        return "laporan_ditutup"
    if not ours:
        return "bukan_disposisi"
    return None


def _messages(c: m.Complaint, seen: frozenset[str],
              own_posts: tuple[OwnPost, ...]) -> tuple[tuple[NewMessage, ...], frozenset[str]]:
    """New follow-ups as messages; our own posts are recognised, never re-imported."""
    out: list[NewMessage] = []
    own = list(own_posts)
    now_seen = set(seen)
    for fu in c.follow_ups:
        if fu.id in now_seen:
            continue
        now_seen.add(fu.id)
        if fu.by == "instansi":
            match = next((p for p in own if p.text == fu.text
                          and (fu.status is None or fu.status == p.lapor_status)), None)
            if match is not None:
                own.remove(match)
                continue
            out.append(NewMessage(Direction.OUT, AUTHORS["instansi"], fu.text, fu.at, fu.id))
        else:
            out.append(NewMessage(Direction.IN, AUTHORS.get(fu.by, fu.by), fu.text, fu.at, fu.id))
    return tuple(out), frozenset(now_seen)


# -- push -------------------------------------------------------------------------------------


def plan_outbox(change: OfficerChange, link: LinkState | None,
                mappings: Mappings, last_queued: str | None = None,
                nonce: str = "") -> OutboxPlan | None:
    """The outbox entry for one officer change, or None when nothing goes to LAPOR!.

    ``last_queued`` is the LAPOR! status of the complaint's latest outbox entry that was
    not refused: a local ``closed`` after ``resolved`` must not post a second ``selesai``.
    """
    if change.status is None and not change.reply:
        return None
    if change.status is not None:
        outbound = mappings.outbound.get(change.status)
        if outbound is None and not change.reply:
            return None  # e.g. back to "new": LAPOR! has no such agency status
        if (outbound is not None and outbound.lapor == "selesai" and not change.reply
                and "selesai" in (last_queued, link.lapor_status if link else None)):
            return None  # already done on LAPOR!: the template would say it twice
    else:
        outbound = mappings.outbound.get(change.ticket_status)
    lapor_status = outbound.lapor if outbound else "diproses"
    agency = mappings.agency(link.agency) if link is not None else None
    text = change.reply or (outbound.text(agency.name if agency else "Pemerintah Kabupaten "
                                          "Mahakam Ulu") if outbound else "")
    failed = None
    unit = None
    if link is None:
        failed = "laporan_tidak_ditemukan"
    elif link.closed:
        failed = "laporan_ditutup" if link.lapor_status in m.CLOSED_STATUSES else "bukan_disposisi"
    else:
        unit = posting_unit(link, mappings)
        if unit is None:
            failed = "bukan_disposisi"
    # Namespaced by tracker kind ("redmine:<journal id>"); the built-in tracker's bare ids
    # get theirs here (its in-transaction path reads them without one).
    change_id = change.change_id if ":" in change.change_id else f"builtin:{change.change_id}"
    return OutboxPlan(
        change_id=change_id, tracking_id=change.tracking_id,
        ticket_ref=change.ticket_ref,
        idempotency_key=idempotency_key(nonce, change.tracking_id, change_id),
        lapor_status=lapor_status, text=text, failed_with=failed, unit_id=unit,
    )


def posting_unit(link: LinkState, mappings: Mappings) -> int | None:
    """The disposed unit that maps to the ticket's agency."""
    mine = set(mappings.units_of(link.agency))
    return next((u for u in link.unit_ids if u in mine), None)


# -- delivery: keys, their lifetime on LAPOR!, and finding our own post ------------------------

KEY_MAX = 128  # the spec: 1..128 printable ASCII
# How far LAPOR!'s clock may be behind ours when we look for our own post, plus the
# whole-second truncation of its WIB timestamps.
VERIFY_SKEW = timedelta(seconds=601)
UNCONFIRMED_MAX_CHECKS = 3  # "delivered, answer unreadable" but not found: then a person looks


def idempotency_key(nonce: str, tracking_id: str, change_id: str, generation: int = 0) -> str:
    """The one place a key is built: ``mahulu-<nonce>-<tracking id>-<change id>[-k<n>]``.

    ``nonce`` is made when the database is created, so a fresh database never reuses an
    old one's keys; ``generation`` counts keys replaced after LAPOR! forgot the old one.
    """
    # Built-in changes keep their keys of before trackers had kinds; others keep the kind.
    change = change_id.removeprefix("builtin:")
    parts = ["mahulu", nonce, tracking_id, change] if nonce else ["mahulu", tracking_id, change]
    if generation:
        parts.append(f"k{generation}")
    key = "-".join(parts)
    if len(key) > KEY_MAX or not all(0x21 <= ord(c) <= 0x7E for c in key):
        digest = hashlib.sha256(key.encode()).hexdigest()[:40]
        key = f"mahulu-{nonce}-{digest}"
    return key


def verify_margin(ttl_s: float) -> timedelta:
    """Safety margin before LAPOR! forgets a key: a quarter of its life, at most an hour."""
    return timedelta(seconds=min(3600.0, ttl_s / 4))


def post_window_end(key_first_used_at: datetime, ttl_s: float) -> datetime:
    """After this moment a POST with the same key may create a second follow-up."""
    return key_first_used_at + timedelta(seconds=ttl_s) - verify_margin(ttl_s)


def must_verify(state: str, key_first_used_at: datetime | None, now: datetime,
                ttl_s: float) -> bool:
    """Whether to read the complaint before any POST: never re-POST blindly once the key
    may be forgotten, nor after a success answer we could not read."""
    if state == OutboxState.UNCONFIRMED:
        return True
    return key_first_used_at is not None and now >= post_window_end(key_first_used_at, ttl_s)


def find_own_post(follow_ups: tuple[m.FollowUp, ...], unit_id: int, status: str, text: str,
                  since: datetime, taken: frozenset[str] = frozenset(),
                  server_offset: timedelta = timedelta(0)) -> m.FollowUp | None:
    """Our post among a complaint's follow-ups: same unit, status and text, dated no earlier
    than our first attempt (less skew); ``taken`` ids already belong to other entries.

    ``since`` is on this machine's clock, follow-ups on LAPOR!'s: ``server_offset`` (how far
    LAPOR!'s clock is ahead of ours) brings them together, so a LAPOR! whose clock runs
    an hour behind still finds the post."""
    earliest = since + server_offset - VERIFY_SKEW
    for fu in follow_ups:
        if fu.id in taken or fu.by != "instansi" or fu.text != text:
            continue
        if fu.unit_id is not None and fu.unit_id != unit_id:
            continue
        if fu.status is not None and fu.status != status:
            continue
        if fu.at >= earliest:
            return fu
    return None
