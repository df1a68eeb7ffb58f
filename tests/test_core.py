"""The sync core, pure: unit cases and hypothesis properties over random histories."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.domain import FIRST_RESPONSE, FailReason
from connector.lapor import models as m
from connector.lapor import reasons
from connector.sync import clock, core
from connector.tracker.base import OfficerChange
from tests.factories import MAPPINGS, T0, UNITS, complaint, linked, narrow


def summary(c: m.Complaint) -> m.Summary:
    return m.Summary(c.tracking_id, c.status, c.updated_at, c.unit_ids)


def test_new_mapped_complaint_is_created_with_mapped_status_and_category() -> None:
    d = core.decide(complaint("1", "terdisposisi", (6411003,), (), T0), None, MAPPINGS, 6411)
    assert d.kind is core.Kind.CREATE
    d = narrow(core.Create, d)
    assert d.ticket is not None
    assert (d.ticket.agency, d.ticket.status, d.ticket.category) == ("DKP2KB", "new", "KESEHATAN")
    assert d.ticket.due_at is not None and d.ticket.due_at > T0


def test_unmapped_unit_is_held_and_foreign_only_is_quarantined() -> None:
    d = narrow(
        core.Hold,
        core.decide(complaint("1", "terdisposisi", (6411777,), (), T0), None, MAPPINGS, 6411),
    )
    assert (d.kind, d.reason) == (core.Kind.HOLD, "unmapped_unit") and "6411777" in d.detail
    q = narrow(
        core.Quarantine,
        core.decide(complaint("1", "terdisposisi", (6400103,), (), T0), None, MAPPINGS, 6411),
    )
    assert (q.kind, q.reason) == (core.Kind.QUARANTINE, "outside_instansi")


def test_idle_summary_needs_no_detail_and_changes_do() -> None:
    c = complaint("1", "terdisposisi", (6411003,), (), T0)
    link = linked(core.decide(c, None, MAPPINGS, 6411)).link
    assert link is not None
    assert not core.needs_detail(summary(c), link, None, MAPPINGS)
    assert core.needs_detail(
        replace(summary(c), updated_at=T0 + timedelta(seconds=1)), link, None, MAPPINGS
    )
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
    own = (core.OwnPost("diproses", "Sedang ditangani."),)
    d = narrow(core.Create, core.decide(c, None, MAPPINGS, 6411, own))
    assert d.ticket is not None and d.ticket.messages == ()
    assert d.link is not None and "77" in d.link.seen_followups
    d = narrow(core.Create, core.decide(c, None, MAPPINGS, 6411))  # posted on LAPOR!: out
    assert d.ticket is not None and [x.direction for x in d.ticket.messages] == ["out"]


def test_our_own_status_echo_does_not_overwrite_the_local_status() -> None:
    c = complaint("1", "ditindaklanjuti", (6411003,), (), T0)
    link = linked(core.decide(c, None, MAPPINGS, 6411)).link
    assert link is not None
    # The officer closed the ticket; we posted "selesai"; LAPOR! now says selesai.
    later = replace(c, status="selesai", updated_at=T0 + timedelta(minutes=1))
    d = narrow(core.Update, core.decide(later, link, MAPPINGS, 6411, current_status="closed"))
    assert d.update is not None and d.update.status is None
    # Without that officer action the same upstream change is applied.
    d = narrow(core.Update, core.decide(later, link, MAPPINGS, 6411, current_status="in_progress"))
    assert d.update is not None and d.update.status == "resolved"
    # An objection reopens even a ticket closed locally.
    link2 = d.link
    assert link2 is not None
    objected = replace(c, updated_at=T0 + timedelta(minutes=2))
    d = narrow(core.Update, core.decide(objected, link2, MAPPINGS, 6411, current_status="closed"))
    assert d.update is not None and d.update.status == "in_progress"


def test_plan_outbox_rules() -> None:
    c = complaint("1", "terdisposisi", (6411003,), (), T0)
    link = linked(core.decide(c, None, MAPPINGS, 6411)).link
    assert link is not None
    change = OfficerChange("5", "9", "1", "resolved", "resolved", None, T0)
    plan = core.plan_outbox(change, link, MAPPINGS)
    assert plan is not None and plan.lapor_status == "selesai"
    agency = MAPPINGS.agency(link.agency)
    assert agency is not None
    name = agency.name
    assert plan.text == MAPPINGS.outbound["resolved"].template.format(agency_name=name)
    assert name in plan.text and "{" not in plan.text
    assert plan.failed is None and plan.change_id == "builtin:5"
    assert reasons.idempotency_key("", plan.tracking_id, plan.change_id) == "mahulu-1-5"
    reply = OfficerChange("6", "9", "1", None, "new", "Halo", T0)
    plan = core.plan_outbox(reply, link, MAPPINGS)
    assert plan is not None and (plan.lapor_status, plan.text) == ("diproses", "Halo")
    assert (
        core.plan_outbox(OfficerChange("7", "9", "1", "new", "new", None, T0), link, MAPPINGS)
        is None
    )
    closed = replace(link, closed=True, lapor_status="ditutup")
    plan = core.plan_outbox(change, closed, MAPPINGS)
    assert plan is not None and plan.failed is FailReason.COMPLAINT_CLOSED
    assert reasons.wire_code(plan.failed) == "laporan_ditutup"
    assert core.posting_unit(link, MAPPINGS) == 6411003


# -- properties over random histories -----------------------------------------------------

statuses = st.sampled_from(m.LAPOR_STATUSES)
unit_sets = st.lists(st.sampled_from(sorted(UNITS)), min_size=1, max_size=2, unique=True)
upstream = st.tuples(
    st.just("up"), statuses, unit_sets, st.sampled_from(["", "pelapor", "admin", "instansi"])
)
officer = st.tuples(
    st.just("officer"),
    st.sampled_from([None, "new", "in_progress", "resolved", "closed"]),
    st.sampled_from([None, "Balasan publik."]),
    st.sampled_from([None, "Catatan internal."]),
)
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
                    assert (new.first_follow_up_at, new.on_time) == (
                        old.first_follow_up_at,
                        old.on_time,
                    )
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
            change = OfficerChange(
                str(model.changes), "1", "1", new_status, ticket["status"], reply, model.at
            )
            plan = core.plan_outbox(change, model.link, MAPPINGS)
            if plan is None:
                continue
            assert note is None or note not in plan.text
            assert plan.text and len(plan.text) <= 5000
            assert plan.lapor_status in m.PUSH_STATUSES
            if model.link is not None and model.link.closed:
                assert plan.failed in (FailReason.COMPLAINT_CLOSED, FailReason.NOT_DISPOSED_TO_US)
            model.outbox.append(plan)
    keys = [reasons.idempotency_key("n", p.tracking_id, p.change_id) for p in model.outbox]
    assert len(keys) == len(set(keys))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 50)), max_size=30))
def test_dedupe_is_ascending_and_unique(raw: list[tuple[int, int]]) -> None:
    items = tuple(
        m.Summary(str(t), "terdisposisi", T0 + timedelta(seconds=s), (1,))
        for t, s in sorted(raw, key=lambda x: (x[1], x[0]))
    )
    out = core.dedupe(items)
    assert len({i.tracking_id for i in out}) == len(out)
    stamps = [narrow(datetime, i.updated_at) for i in out]
    assert stamps == sorted(stamps)
    for i in out:
        assert i.updated_at == max(x.updated_at for x in items if x.tracking_id == i.tracking_id)


# -- the pull's choices: what to fetch, re-quarantine, retries, the watermark ---------------


def test_triage_requarantines_a_bad_item_only_when_something_changed() -> None:
    bad = m.BadSummary("7", ("judul",), T0)
    held = core.Held(core.Reason.INVALID_RECORD, T0, (), False)
    fresh = core.triage([bad], {}, {}, {}, MAPPINGS)
    assert fresh.wanted == () and fresh.unchanged == 0
    [q] = fresh.bad
    assert isinstance(q, core.Quarantine) and q.reason == core.Reason.INVALID_RECORD
    assert q.lapor_updated_at == T0 and "judul" in q.detail
    # The same bad item again: nothing new, counted as unchanged, no quarantine write.
    again = core.triage([bad], {}, {"7": held}, {}, MAPPINGS)
    assert (again.bad, again.unchanged) == ((), 1)
    # Changed since, or an operator asked for a retry: quarantined again.
    later = replace(bad, updated_at=T0 + timedelta(seconds=1))
    assert len(core.triage([later], {}, {"7": held}, {}, MAPPINGS).bad) == 1
    asked = replace(held, retry_requested=True)
    assert len(core.triage([bad], {}, {"7": asked}, {}, MAPPINGS).bad) == 1
    # Without an id it is only reported, never quarantined under a made-up one.
    nameless = core.triage([m.BadSummary("unknown", ("tracking_id",))], {}, {}, {}, MAPPINGS)
    assert nameless.bad == () and nameless.unreadable == (("tracking_id",),)


def test_triage_asks_for_a_detail_once_per_pull() -> None:
    c = complaint("1", "terdisposisi", (6411003,), (), T0)
    item = summary(c)
    assert core.triage([item], {}, {}, {}, MAPPINGS).wanted == ("1",)
    # Already taken up by this pull at the same time (a later page repeats it): nothing.
    assert core.triage([item], {}, {}, {"1": T0}, MAPPINGS).unchanged == 1
    link = core.decide(c, None, MAPPINGS, 6411)
    assert isinstance(link, core.Create)
    assert core.triage([item], {"1": link.link}, {}, {}, MAPPINGS).unchanged == 1


feed_items = st.lists(
    st.one_of(
        st.builds(
            m.Summary,
            st.sampled_from("12345"),
            st.sampled_from(m.LAPOR_STATUSES),
            st.integers(0, 3).map(lambda s: T0 + timedelta(seconds=s)),
            st.sampled_from([(6411003,), (6411777,), (6400103,)]),
        ),
        st.builds(
            m.BadSummary,
            st.sampled_from(["1", "2", "unknown"]),
            st.just(("judul",)),
            st.one_of(st.none(), st.just(T0)),
        ),
    ),
    max_size=12,
)


@settings(deadline=None)
@given(feed_items, st.sets(st.sampled_from("12345")), st.booleans())
def test_triage_accounts_for_every_item_once(
    items: list[m.Summary | m.BadSummary], held_ids: set[str], retry: bool
) -> None:
    held = {t: core.Held(core.Reason.INVALID_RECORD, T0, (), retry) for t in held_ids}
    t = core.triage(items, {}, held, {}, MAPPINGS)
    assert len(t.wanted) + len(t.bad) + t.unchanged + len(t.unreadable) == len(items)
    # What is held with an operator's retry request is never left out.
    assert all(
        i.tracking_id in t.wanted or any(b.tracking_id == i.tracking_id for b in t.bad)
        for i in items
        if i.tracking_id in held and retry
    )


def test_part_high_never_passes_the_servers_clock() -> None:
    items = [
        m.Summary("1", "terdisposisi", T0, (1,)),
        m.Summary("2", "terdisposisi", T0 + timedelta(minutes=10), (1,)),
        m.Summary("3", "terdisposisi", T0 + timedelta(seconds=30), (1,)),
    ]
    assert core.part_high(items, None) == (T0 + timedelta(minutes=10), ())
    assert core.part_high(items, T0 + timedelta(hours=1)) == (T0 + timedelta(minutes=10), ())
    high, ahead = core.part_high(items, T0)
    # Capped at the server's time; only what is beyond the tolerance is reported.
    assert high == T0 and ahead == (("2", timedelta(minutes=10)),)
    assert core.part_high([m.BadSummary("9", ("x",))], T0) == (None, ())


def test_feed_since_and_late_records() -> None:
    hour = timedelta(hours=1)
    assert core.feed_since(None, hour) is None
    assert core.feed_since(T0, hour) == T0 - hour
    assert core.feed_since(T0, hour, sweep_from=T0 - 24 * hour, sweep=True) == T0 - 24 * hour
    assert core.sweep_from(T0, 24 * hour) == T0 - 24 * hour and core.sweep_from(None, hour) is None
    assert core.late_lag(T0 - 3 * hour, T0, hour) == 3 * hour  # behind the overlap: missed
    assert core.late_lag(T0 - hour / 2, T0, hour) is None  # the ordinary pull saw it
    assert core.late_lag(T0 - 3 * hour, None, hour) is None  # not a sweep


def test_retry_selection() -> None:
    held = {
        "asked": core.Held(core.Reason.INVALID_RECORD, T0, (6411003,), True),
        # 5 attempts: 120 s of backoff after the last sighting.
        "due": core.Held(
            core.Reason.NOT_FOUND, T0, (6411003,), False, 5, T0 - timedelta(seconds=120)
        ),
        "waiting": core.Held(
            core.Reason.NOT_FOUND, T0, (6411003,), False, 5, T0 - timedelta(seconds=119)
        ),
        "stuck": core.Held(
            core.Reason.INVALID_RECORD, T0, (6411003,), False, 1, T0 - timedelta(days=30)
        ),  # not transient: only an operator or a new update frees it
        "mapped": core.Held(core.Reason.UNMAPPED_UNIT, T0, (6411003,), False),
        "unmapped": core.Held(core.Reason.UNMAPPED_UNIT, T0, (6411777,), False),
        "outside": core.Held(core.Reason.OUTSIDE_INSTANSI, T0, (6400103,), True),
        "unknown": core.Held(core.Reason.INVALID_RECORD, None, (), True),
    }
    assert core.to_retry(held, {"outside"}, MAPPINGS, T0) == ["asked", "due", "mapped"]


@settings(deadline=None)
@given(st.integers(0, 200))
def test_transient_backoff_starts_at_once_then_doubles_to_six_hours(attempts: int) -> None:
    delay = core.retry_delay_s(attempts)
    assert (delay == 0.0) is (attempts <= 3)
    assert delay <= 6 * 3600 and core.retry_delay_s(attempts + 1) >= delay
    if 4 <= attempts < 12:
        assert core.retry_delay_s(attempts + 1) == 2 * delay


def test_a_decision_the_database_refuses_becomes_a_quarantine_with_what_the_feed_said() -> None:
    c = complaint("1", "terdisposisi", (6411003,), (), T0)
    created = core.decide(c, None, MAPPINGS, 6411)
    q = core.refused_by_storage(created, "DataError")
    assert isinstance(q, core.Quarantine) and q.reason == core.Reason.INVALID_RECORD
    assert (q.lapor_updated_at, q.unit_ids) == (T0, (6411003,)) and "DataError" in q.detail
    held = core.quarantine("2", core.Reason.UNMAPPED_UNIT, "x", T0, (6411777,))
    assert isinstance(held, core.Hold)
    again = core.refused_by_storage(held, "DataError")
    assert isinstance(again, core.Quarantine) and again.unit_ids == (6411777,)
    # A detail that could not be had keeps the summary's facts, never overwrites its own.
    skipped = core.detail_refused("1", core.Reason.NOT_FOUND, "")
    assert core.remember_summary(skipped, summary(c)).lapor_updated_at == T0
    dated = replace(skipped, lapor_updated_at=T0 - timedelta(days=1))
    assert core.remember_summary(dated, summary(c)) == dated


def test_attachment_metadata_has_one_shape() -> None:
    att = m.Attachment("a1", "foto.jpg", "image/jpeg", 1234, "https://x/a1")
    c = replace(complaint("1", "terdisposisi", (6411003,), (), T0), attachments=(att,))
    d = core.decide(c, None, MAPPINGS, 6411)
    assert isinstance(d, core.Create)
    assert d.ticket.attachments == (core.attachment_meta(att),)
    assert core.attachment_meta(att) == {
        "id": "a1",
        "name": "foto.jpg",
        "mime": "image/jpeg",
        "size": 1234,
    }


# -- the commit cadence, on an injected monotonic clock ----------------------------------------


def test_commit_cadence() -> None:
    cadence = core.Cadence(records=10, seconds=5.0)
    empty = core.Batch()
    assert not core.commit_due(empty, cadence, 100.0)
    assert core.commit_wait_s(empty, cadence, 100.0, budget_room=5) is None  # nothing waits
    b = empty.add(4, 100.0).add(4, 103.0)
    assert (b.records, b.since) == (8, 100.0)  # timed from the first part
    assert not core.commit_due(b, cadence, 104.9)
    assert core.commit_due(b, cadence, 105.0)  # time is up
    assert core.commit_due(b.add(2, 101.0), cadence, 101.0)  # enough records
    assert core.commit_wait_s(b, cadence, 103.0, budget_room=5) == 2.0
    assert core.commit_wait_s(b, cadence, 106.0, budget_room=5) == 0.0
    assert core.commit_wait_s(b, cadence, 103.0, budget_room=0) == 0.0  # budget spent: commit
    assert core.commit_before_part(budget_room=3, unfinished=4)
    assert not core.commit_before_part(budget_room=4, unfinished=4)


@settings(deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 30), st.floats(0, 3)), min_size=1, max_size=40),
    st.integers(1, 100),
    st.floats(0.5, 10),
)
def test_cadence_commits_by_records_or_time_whatever_the_parts(
    parts: list[tuple[int, float]], records: int, seconds: float
) -> None:
    """Replaying parts on a fake clock: a batch is never older than the cadence's time nor
    larger than its records plus one part when it commits, and nothing is left behind."""
    cadence = core.Cadence(records, seconds)
    now, batch, committed = 0.0, core.Batch(), 0
    for n, gap in parts:
        now += gap
        batch = batch.add(n, now)
        since = batch.since
        assert since is not None
        if core.commit_due(batch, cadence, now):
            assert batch.records >= records or now - since >= seconds
            committed += batch.records
            batch = core.Batch()
        else:
            assert batch.records < records and now - since < seconds
            wait = core.commit_wait_s(batch, cadence, now, budget_room=1)
            assert wait is not None and 0 < wait <= seconds
    assert committed + batch.records == sum(n for n, _ in parts)


# -- the push's choices, and the wire translation of domain reasons ----------------------------


def test_own_units_are_those_of_every_agency_that_held_the_complaint() -> None:
    """Issue 22: a change read again after a restore may have been posted by the lost
    database for the unit that held the complaint then; one never linked fails at once,
    one no longer ours is looked up first."""
    from connector.domain import Facts, Period

    c = complaint("1", "terdisposisi", (6411001,), (), T0)
    d = core.decide(c, None, MAPPINGS, 6411)
    assert isinstance(d, core.Create)
    link = d.link  # DISDUKCAPIL now
    period = Period(1, "DKP2KB", "received", T0, T0, "computed", None)
    facts = Facts(
        "1",
        "DISDUKCAPIL",
        ("DISDUKCAPIL",),
        T0,
        T0,
        "terdisposisi",
        False,
        (period, replace(period, seq=2, agency="DISDUKCAPIL", start="redisposition")),
    )
    units = core.own_units(6411001, link, facts, MAPPINGS)
    assert units == {6411001, 6411003}  # DISDUKCAPIL's unit, and DKP2KB's before it
    assert core.own_units(None, None, None, MAPPINGS) == frozenset()
    assert core.own_units(7, None, None, MAPPINGS) == {7}
    change = OfficerChange("5", "1", "1", None, "new", "Halo", T0)
    unlinked = core.plan_outbox(change, None, MAPPINGS)
    assert unlinked is not None
    assert core.failed_at_once(unlinked) is FailReason.COMPLAINT_NOT_FOUND
    closed = core.plan_outbox(change, replace(link, closed=True, lapor_status="ditutup"), MAPPINGS)
    assert closed is not None and closed.failed is FailReason.COMPLAINT_CLOSED
    assert core.failed_at_once(closed) is None


def test_send_steps() -> None:
    c = complaint("1", "terdisposisi", (6411003,), (), T0)
    d = core.decide(c, None, MAPPINGS, 6411)
    assert isinstance(d, core.Create)
    link = d.link
    assert core.send_step("pending", None, link, MAPPINGS) == core.Post(6411003, fix_unit=True)
    assert core.send_step("pending", 6411001, link, MAPPINGS) == core.Post(6411001, False)
    closed = replace(link, closed=True, lapor_status="ditutup")
    # No longer ours to answer: looked for on LAPOR! before it fails (issue 22: a change
    # read again after a restore may be there already).
    assert core.send_step("pending", 6411003, closed, MAPPINGS) == core.LookUp(
        FailReason.COMPLAINT_CLOSED
    )
    moved = replace(link, closed=True, lapor_status="ditindaklanjuti")
    assert core.send_step("pending", 6411003, moved, MAPPINGS) == core.LookUp(
        FailReason.NOT_DISPOSED_TO_US
    )
    assert core.send_step("pending", None, None, MAPPINGS) == core.Fail(
        FailReason.NOT_DISPOSED_TO_US
    )
    # Delivered already: only confirmed, even on a closed complaint.
    assert core.send_step("unconfirmed", 6411003, closed, MAPPINGS) == core.Verify(6411003)
    assert core.rekey_on_refusal(FailReason.KEY_TAKEN, 0)
    assert not core.rekey_on_refusal(FailReason.KEY_TAKEN, core.MAX_KEY_CHANGES)
    assert not core.rekey_on_refusal(None, 0)
    assert core.verify_refused("not_found") is FailReason.COMPLAINT_NOT_FOUND
    assert core.verify_refused("not_disposed") is FailReason.NOT_DISPOSED_TO_US
    assert core.verify_refused("truncated_response") is None  # look again later
    assert not core.unconfirmed_gives_up(core.UNCONFIRMED_MAX_CHECKS - 1)
    assert core.unconfirmed_gives_up(core.UNCONFIRMED_MAX_CHECKS)
    assert core.defer_delay_s(1, 600) == 30.0 and core.defer_delay_s(10, 600) == 600
    assert core.check_delay_s(1, 600) == 60.0


def test_every_domain_reason_has_one_stored_code() -> None:
    codes = [reasons.wire_code(r) for r in FailReason]
    assert len(set(codes)) == len(codes)
    assert all(reasons.fail_reason(reasons.wire_code(r)) is r for r in FailReason)
    # The codes stored before the core spoke domain reasons: outbox rows keep meaning them.
    assert reasons.wire_code(FailReason.COMPLAINT_CLOSED) == "laporan_ditutup"
    assert reasons.wire_code(FailReason.NOT_DISPOSED_TO_US) == "bukan_disposisi"
    assert reasons.fail_reason("http_500") is None
    assert reasons.detail_refusal(403, "bukan_disposisi") is core.Reason.NOT_DISPOSED
    assert reasons.detail_refusal(404, "laporan_tidak_ditemukan") is core.Reason.NOT_FOUND
    assert reasons.detail_refusal(413, "respons_terlalu_besar") is core.Reason.RESPONSE_TOO_LARGE
    assert reasons.detail_refusal(409, "konflik") is None
