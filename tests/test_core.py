"""The sync core, pure: unit cases and hypothesis properties over random histories."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.domain import FIRST_RESPONSE, FailReason
from connector.lapor import models as m
from connector.lapor import reasons
from connector.mappings import load
from connector.sync import clock, core
from connector.tracker.base import OfficerChange

MAPPINGS = load(Path(__file__).resolve().parent.parent / "mappings")
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
UNITS = {6411001: 6411, 6411003: 6411, 6411777: 6411, 6400103: 64}  # 6411777: ours, unmapped


def complaint(tid: str, status: str, units: tuple[int, ...], fus: tuple[m.FollowUp, ...],
              at: datetime, deadline: datetime | None = None) -> m.Complaint:
    return m.Complaint(
        tracking_id=tid, title="t", body="b", classification="pengaduan",
        category=m.Category(101, "Pelayanan Puskesmas", 1), status=status, anonymous=False,
        confidential=False, reporter=m.Reporter("N", None, None), channel="web", location=None,
        dispositions=tuple(m.Disposition(u, "u", UNITS[u], T0) for u in units),
        attachments=(), follow_ups=fus, submitted_at=T0, updated_at=at, deadline=deadline)


def summary(c: m.Complaint) -> m.Summary:
    return m.Summary(c.tracking_id, c.status, c.updated_at, c.unit_ids)


def test_new_mapped_complaint_is_created_with_mapped_status_and_category() -> None:
    d = core.decide(complaint("1", "terdisposisi", (6411003,), (), T0), None, MAPPINGS, 6411)
    assert d.kind is core.Kind.CREATE and d.ticket is not None
    assert (d.ticket.agency, d.ticket.status, d.ticket.category) == ("DKP2KB", "new", "KESEHATAN")
    assert d.ticket.due_at is not None and d.ticket.due_at > T0


def test_unmapped_unit_is_held_and_foreign_only_is_quarantined() -> None:
    d = core.decide(complaint("1", "terdisposisi", (6411777,), (), T0), None, MAPPINGS, 6411)
    assert (d.kind, d.reason) == (core.Kind.HOLD, "unmapped_unit") and "6411777" in d.detail
    d = core.decide(complaint("1", "terdisposisi", (6400103,), (), T0), None, MAPPINGS, 6411)
    assert (d.kind, d.reason) == (core.Kind.QUARANTINE, "outside_instansi")


def test_idle_summary_needs_no_detail_and_changes_do() -> None:
    c = complaint("1", "terdisposisi", (6411003,), (), T0)
    link = core.decide(c, None, MAPPINGS, 6411).link
    assert link is not None
    assert not core.needs_detail(summary(c), link, None, MAPPINGS)
    assert core.needs_detail(replace(summary(c), updated_at=T0 + timedelta(seconds=1)), link,
                             None, MAPPINGS)
    assert core.needs_detail(replace(summary(c), unit_ids=(6411001,)), link, None, MAPPINGS)
    held = core.Held("invalid_record", T0, (6411003,), False)
    assert not core.needs_detail(summary(c), None, held, MAPPINGS)
    assert core.needs_detail(summary(c), None, replace(held, retry_requested=True), MAPPINGS)


def test_dedupe_keeps_newest_at_its_later_position() -> None:
    a1 = m.Summary("1", "terdisposisi", T0, (1,))
    b = m.Summary("2", "terdisposisi", T0 + timedelta(seconds=1), (1,))
    a2 = m.Summary("1", "selesai", T0 + timedelta(seconds=2), (1,))
    assert core.dedupe((a1, b, a2, a1)) == [b, a2]


def test_own_pending_post_is_recognised_not_imported() -> None:
    fu = m.FollowUp("77", "instansi", 6411003, "diproses", "Sedang ditangani.", T0)
    c = complaint("1", "ditindaklanjuti", (6411003,), (fu,), T0)
    d = core.decide(c, None, MAPPINGS, 6411, (core.OwnPost("diproses", "Sedang ditangani."),))
    assert d.ticket is not None and d.ticket.messages == ()
    assert d.link is not None and "77" in d.link.seen_followups
    d = core.decide(c, None, MAPPINGS, 6411)  # posted on LAPOR! directly: shown as out
    assert d.ticket is not None and [x.direction for x in d.ticket.messages] == ["out"]


def test_our_own_status_echo_does_not_overwrite_the_local_status() -> None:
    c = complaint("1", "ditindaklanjuti", (6411003,), (), T0)
    link = core.decide(c, None, MAPPINGS, 6411).link
    assert link is not None
    # The officer closed the ticket; we posted "selesai"; LAPOR! now says selesai.
    later = replace(c, status="selesai", updated_at=T0 + timedelta(minutes=1))
    d = core.decide(later, link, MAPPINGS, 6411, current_status="closed")
    assert d.update is not None and d.update.status is None
    # Without that officer action the same upstream change is applied.
    d = core.decide(later, link, MAPPINGS, 6411, current_status="in_progress")
    assert d.update is not None and d.update.status == "resolved"
    # An objection reopens even a ticket closed locally.
    link2 = d.link
    assert link2 is not None
    objected = replace(c, updated_at=T0 + timedelta(minutes=2))
    d = core.decide(objected, link2, MAPPINGS, 6411, current_status="closed")
    assert d.update is not None and d.update.status == "in_progress"


def test_plan_outbox_rules() -> None:
    c = complaint("1", "terdisposisi", (6411003,), (), T0)
    link = core.decide(c, None, MAPPINGS, 6411).link
    assert link is not None
    change = OfficerChange("5", "9", "1", "resolved", "resolved", None, T0)
    plan = core.plan_outbox(change, link, MAPPINGS)
    assert plan is not None and plan.lapor_status == "selesai"
    name = MAPPINGS.agency(link.agency).name  # type: ignore[union-attr]
    assert plan.text == MAPPINGS.outbound["resolved"].template.format(agency_name=name)
    assert name in plan.text and "{" not in plan.text
    assert plan.failed is None and plan.change_id == "builtin:5"
    assert reasons.idempotency_key("", plan.tracking_id, plan.change_id) == "mahulu-1-5"
    reply = OfficerChange("6", "9", "1", None, "new", "Halo", T0)
    plan = core.plan_outbox(reply, link, MAPPINGS)
    assert plan is not None and (plan.lapor_status, plan.text) == ("diproses", "Halo")
    assert core.plan_outbox(OfficerChange("7", "9", "1", "new", "new", None, T0), link,
                            MAPPINGS) is None
    closed = replace(link, closed=True, lapor_status="ditutup")
    plan = core.plan_outbox(change, closed, MAPPINGS)
    assert plan is not None and plan.failed is FailReason.COMPLAINT_CLOSED
    assert reasons.wire_code(plan.failed) == "laporan_ditutup"
    assert core.posting_unit(link, MAPPINGS) == 6411003


# -- properties over random histories -----------------------------------------------------

statuses = st.sampled_from(m.LAPOR_STATUSES)
unit_sets = st.lists(st.sampled_from(sorted(UNITS)), min_size=1, max_size=2, unique=True)
upstream = st.tuples(st.just("up"), statuses, unit_sets,
                     st.sampled_from(["", "pelapor", "admin", "instansi"]))
officer = st.tuples(st.just("officer"), st.sampled_from([None, "new", "in_progress", "resolved",
                                                        "closed"]),
                    st.sampled_from([None, "Balasan publik."]),
                    st.sampled_from([None, "Catatan internal."]))
histories = st.lists(st.one_of(upstream, officer), min_size=1, max_size=25)


class Model:
    """What the shells do with decisions, in memory."""

    def __init__(self) -> None:
        self.tickets: dict[str, dict[str, Any]] = {}
        self.link: core.LinkState | None = None
        self.outbox: list[core.FollowUpPlan] = []
        self.fus: list[m.FollowUp] = []
        self.at = T0
        self.changes = 0
        self.facts: clock.Facts | None = None

    def upstream(self, status: str, units: list[int], by: str) -> m.Complaint:
        self.at += timedelta(minutes=1)
        if by:
            unit = 6411003 if by == "instansi" else None
            self.fus.append(m.FollowUp(str(len(self.fus) + 1), by, unit, None, "x", self.at))
        return complaint("1", status, tuple(units), tuple(self.fus), self.at)

    def apply(self, c: m.Complaint) -> core.Decision:
        current = self.tickets["1"]["status"] if "1" in self.tickets else None
        d = core.decide(c, self.link, MAPPINGS, 6411, current_status=current, facts=self.facts)
        match d:
            case core.Hold() | core.Quarantine():
                return d
            case core.Create():
                assert "1" not in self.tickets, "a second ticket for one complaint"
                self.tickets["1"] = {"status": d.ticket.status, "agency": d.ticket.agency}
            case core.Update():
                assert self.link is not None
                if d.update.status:
                    self.tickets["1"]["status"] = d.update.status
                if d.update.agency:
                    self.tickets["1"]["agency"] = d.update.agency
            case core.Unchanged():
                assert self.link is not None
        self.check_clock(d.facts, self.facts)
        self.facts = d.facts
        self.link = replace(d.link, ticket_ref="1")
        return d

    @staticmethod
    def check_clock(f: clock.Facts, prev: clock.Facts | None) -> None:
        """Periods only grow; a verdict once made never changes; only the last is open."""
        assert [p.seq for p in f.periods] == list(range(1, len(f.periods) + 1))
        assert all(p.ended_at is not None for p in f.periods[:-1])
        for p in f.periods:
            if p.first_follow_up_at is not None:
                assert p.on_time == (p.first_follow_up_at <= p.due_at)
        if prev is not None:
            assert len(f.periods) >= len(prev.periods)
            for old, new in zip(prev.periods, f.periods, strict=False):
                assert old.start == new.start and old.started_at == new.started_at
                if old.first_follow_up_at is not None:
                    assert (new.first_follow_up_at, new.on_time) == (old.first_follow_up_at,
                                                                     old.on_time)
        assert f.first_response().start in FIRST_RESPONSE


@settings(max_examples=300, deadline=None)
@given(histories)
def test_invariants_hold_over_random_histories(history: list[tuple[Any, ...]]) -> None:
    model = Model()
    for step in history:
        if step[0] == "up":
            _, status, units, by = step
            prev = model.link.lapor_status if model.link else None
            before = model.tickets["1"]["agency"] if "1" in model.tickets else None
            d = model.apply(model.upstream(status, units, by))
            ticket = model.tickets.get("1")
            ours = [u for u in units if UNITS[u] == 6411]
            mapped = [u for u in ours if u in MAPPINGS.unit_to_agency]
            if d.kind is core.Kind.HOLD:
                assert ours and not mapped
            if ticket is not None and mapped and d.kind is not core.Kind.HOLD:
                if status in ("terdisposisi", "ditindaklanjuti") and prev != status:
                    # A reopened (or re-disposed) complaint is open locally.
                    assert ticket["status"] in ("new", "in_progress")
                holders = {MAPPINGS.unit_to_agency[u] for u in mapped}
                assert ticket["agency"] in holders
                if before in holders:  # never flips while its agency still holds it
                    assert ticket["agency"] == before
            if ticket is not None and not ours:
                assert ticket["status"] == "closed"
        else:
            _, status, reply, note = step
            ticket = model.tickets.get("1")
            if ticket is None or ticket["status"] == "closed":
                continue  # the tracker refuses officer changes on closed tickets
            new_status = status if status not in (None, ticket["status"]) else None
            if new_status:
                ticket["status"] = new_status
            if new_status is None and reply is None:
                continue  # a note alone records no change: internal notes never leave
            model.changes += 1
            change = OfficerChange(str(model.changes), "1", "1", new_status, ticket["status"],
                                   reply, model.at)
            plan = core.plan_outbox(change, model.link, MAPPINGS)
            if plan is None:
                continue
            assert note is None or note not in plan.text
            assert plan.text and len(plan.text) <= 5000
            assert plan.lapor_status in m.PUSH_STATUSES
            if model.link is not None and model.link.closed:
                assert plan.failed in (FailReason.COMPLAINT_CLOSED,
                                       FailReason.NOT_DISPOSED_TO_US)
            model.outbox.append(plan)
    keys = [reasons.idempotency_key("n", p.tracking_id, p.change_id) for p in model.outbox]
    assert len(keys) == len(set(keys))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 50)), max_size=30))
def test_dedupe_is_ascending_and_unique(raw: list[tuple[int, int]]) -> None:
    items = tuple(m.Summary(str(t), "terdisposisi", T0 + timedelta(seconds=s), (1,))
                  for t, s in sorted(raw, key=lambda x: (x[1], x[0])))
    out = core.dedupe(items)
    assert len({i.tracking_id for i in out}) == len(out)
    assert [i.updated_at for i in out] == sorted(i.updated_at for i in out)
    for i in out:
        assert i.updated_at == max(x.updated_at for x in items if x.tracking_id == i.tracking_id)
