"""LAPOR!'s clock in the pure core: due periods, first follow-ups, the ticket's agency."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from connector.lapor import models as m
from connector.mappings import load
from connector.sync import clock, core
from connector.timeutil import WIB, WITA
from connector.tracker.base import OfficerChange
from tests.factories import MAPPINGS, T0, UNITS, complaint, linked, narrow

DINKES, DISDUK = 6411003, 6411001  # two units of two agencies in the shipped mappings
# T0 is Monday 2 November 2026, 09:00 WITA: the 5th working day after it is Monday 9th.
DUE0 = datetime(2026, 11, 9, 23, 59, 59, tzinfo=WITA)


def fu(
    i: int,
    at: datetime,
    by: str = "instansi",
    unit: int | None = DINKES,
    status: str | None = "diproses",
) -> m.FollowUp:
    return m.FollowUp(
        str(i),
        by,
        unit if by == "instansi" else None,
        status if by == "instansi" else None,
        "isi",
        at,
    )


def run(*steps: m.Complaint) -> list[core.Linked]:
    """Feed details through decide like the pull does, carrying link and facts (no step here
    is set aside)."""
    link: core.LinkState | None = None
    facts: clock.Facts | None = None
    out: list[core.Linked] = []
    for c in steps:
        d = linked(core.decide(c, link, MAPPINGS, 6411, facts=facts))
        out.append(d)
        link, facts = replace(d.link, ticket_ref="1"), d.facts
    return out


def test_agency_names_match_the_units_used_here() -> None:
    assert MAPPINGS.unit_to_agency[DINKES] == "DKP2KB"
    assert MAPPINGS.unit_to_agency[DISDUK] == "DISDUKCAPIL"


def test_first_follow_up_on_time_and_computed_due() -> None:
    c = complaint("1", "terdisposisi", (DINKES,), (), T0)
    answered = complaint(
        "1", "ditindaklanjuti", (DINKES,), (fu(1, T0 + timedelta(days=3)),), T0 + timedelta(days=3)
    )
    d0, d1 = run(c, answered)
    ticket = narrow(core.Create, d0).ticket
    assert ticket is not None and ticket.due_at == DUE0
    assert d0.facts is not None and d0.facts.current.first_follow_up_at is None
    assert d0.facts.overdue(DUE0 + timedelta(seconds=1)) and not d0.facts.overdue(DUE0)
    p = d1.facts.current
    assert p.first_follow_up_at == T0 + timedelta(days=3) and p.on_time is True
    assert p.due_source == "computed" and p.start == clock.Start.RECEIVED
    assert not d1.facts.overdue(DUE0 + timedelta(days=30))


def test_late_against_the_lapor_deadline_and_fixed_once_seen() -> None:
    deadline = T0 + timedelta(days=1)
    c = complaint("1", "terdisposisi", (DINKES,), (), T0, deadline)
    late = fu(1, deadline + timedelta(seconds=1))
    d = run(
        c,
        complaint("1", "ditindaklanjuti", (DINKES,), (late,), late.at, deadline),
        # LAPOR! later moves its deadline: the verdict stays as it was then.
        complaint(
            "1",
            "ditindaklanjuti",
            (DINKES,),
            (late,),
            late.at + timedelta(hours=1),
            deadline + timedelta(days=9),
        ),
    )
    ticket = narrow(core.Create, d[0]).ticket
    assert ticket is not None and ticket.due_at == deadline
    p = d[2].facts.current
    assert p.on_time is False and p.due_at == deadline and p.due_source == "lapor"


def test_at_the_due_second_is_on_time() -> None:
    deadline = T0 + timedelta(days=1)
    ans = fu(1, deadline)
    d = run(complaint("1", "ditindaklanjuti", (DINKES,), (ans,), ans.at, deadline))
    assert d[0].facts is not None and d[0].facts.current.on_time is True


def test_only_the_agencys_own_units_count() -> None:
    others = (
        fu(1, T0 + timedelta(hours=1), unit=DISDUK),
        fu(2, T0 + timedelta(hours=2), by="pelapor"),
        fu(3, T0 + timedelta(hours=3), by="admin"),
        fu(4, T0 + timedelta(hours=4), unit=None),
    )
    d = run(complaint("1", "ditindaklanjuti", (DINKES,), others, T0 + timedelta(hours=5)))
    assert d[0].facts is not None and d[0].facts.current.first_follow_up_at is None


def test_objection_starts_a_new_period_and_keeps_the_old() -> None:
    done = fu(1, T0 + timedelta(days=1), status="selesai")
    objection_at = T0 + timedelta(days=10)  # Thursday 12 November 09:00 WITA
    objected = (done, fu(2, objection_at, by="pelapor"))
    answer = fu(3, objection_at + timedelta(days=1))
    d = run(
        complaint("1", "selesai", (DINKES,), (done,), done.at, T0 + timedelta(days=5)),
        complaint(
            "1",
            "ditindaklanjuti",
            (DINKES,),
            objected,
            objection_at + timedelta(minutes=5),
            T0 + timedelta(days=5),
        ),
        complaint(
            "1",
            "ditindaklanjuti",
            (DINKES,),
            (*objected, answer),
            answer.at,
            T0 + timedelta(days=5),
        ),
    )
    f = d[2].facts
    assert f is not None and len(f.periods) == 2
    first, second = f.periods
    assert first.on_time is True and first.ended_at == objection_at
    assert second.start == clock.Start.OBJECTION and second.started_at == objection_at
    # The old LAPOR! deadline is stale for the objection: 5 working days from it.
    assert second.due_at == datetime(2026, 11, 19, 23, 59, 59, tzinfo=WITA)
    assert second.due_source == "computed"
    assert second.first_follow_up_at == answer.at and second.on_time is True
    assert f.first_response() is first


def test_redisposition_with_stale_deadline_recomputes_from_the_new_disposition() -> None:
    stale = T0 + timedelta(days=2)
    c = complaint("1", "terdisposisi", (DINKES,), (), T0, stale)
    moved_at = T0 + timedelta(days=7)  # Monday 9 November
    moved = replace(
        c, dispositions=(m.Disposition(DISDUK, "disduk", 6411, moved_at),), updated_at=moved_at
    )
    d = run(c, moved)
    update = narrow(core.Update, d[1]).update
    assert update is not None and update.agency == "DISDUKCAPIL"
    f = d[1].facts
    assert f is not None and [p.agency for p in f.periods] == ["DKP2KB", "DISDUKCAPIL"]
    new = f.current
    assert new.start == clock.Start.REDISPOSITION and new.started_at == moved_at
    assert new.due_at == datetime(2026, 11, 16, 23, 59, 59, tzinfo=WITA)
    assert update.due_at == new.due_at  # the ticket's due date follows
    assert not f.overdue(stale + timedelta(days=1))  # the stale deadline flags nothing
    # A deadline LAPOR! set for the new disposition is its word.
    fresh = moved_at + timedelta(days=3)
    d = run(c, replace(moved, deadline=fresh))
    assert d[1].facts is not None and d[1].facts.current.due_at == fresh


def test_reopening_starts_a_period() -> None:
    c = complaint("1", "terdisposisi", (DINKES,), (), T0)
    closed = complaint("1", "diarsipkan", (DINKES,), (), T0 + timedelta(days=1))
    back = complaint("1", "ditindaklanjuti", (DINKES,), (), T0 + timedelta(days=8))
    d = run(c, closed, back)
    assert d[1].facts is not None and not d[1].facts.overdue(T0 + timedelta(days=30))
    f = d[2].facts
    assert f is not None and f.current.start == clock.Start.REOPENED
    assert f.current.started_at == T0 + timedelta(days=8) and not f.closed


def test_two_agencies_lead_never_flips_when_lapor_reorders() -> None:
    both = (
        m.Disposition(DINKES, "a", 6411, T0),
        m.Disposition(DISDUK, "b", 6411, T0 + timedelta(hours=1)),
    )
    c = complaint("1", "terdisposisi", (DINKES, DISDUK), (), T0)
    c = replace(c, dispositions=both)
    flipped = replace(c, dispositions=both[::-1], updated_at=T0 + timedelta(hours=2))
    d = run(c, flipped)
    ticket = narrow(core.Create, d[0]).ticket
    assert ticket is not None and ticket.agency == "DKP2KB"
    notes = [x.text for x in ticket.messages if x.direction == "internal"]
    assert notes == [f"Juga didisposisikan ke unit {DISDUK} (DISDUKCAPIL)"]
    assert isinstance(d[1], core.Unchanged)  # the reordered list changes nothing
    assert d[1].link is not None and d[1].link.agency == "DKP2KB"
    assert d[1].facts is not None and d[1].facts.agencies == ("DKP2KB", "DISDUKCAPIL")
    assert len(d[1].facts.periods) == 1
    # The same complaint seen first in the other order still goes to the earliest.
    d = run(flipped)
    ticket = narrow(core.Create, d[0]).ticket
    assert ticket is not None and ticket.agency == "DKP2KB"
    assert [x.text for x in ticket.messages if x.direction == "internal"] == notes


def test_disposition_at_2330_wib_counts_from_the_wita_date() -> None:
    # Monday 23:30 WIB is Tuesday 00:30 WITA: Mahulu receives it on Tuesday.
    at = datetime(2026, 11, 2, 23, 30, tzinfo=WIB).astimezone(UTC)
    c = complaint("1", "terdisposisi", (DINKES,), (), at)
    c = replace(c, dispositions=(m.Disposition(DINKES, "a", 6411, at),))
    d = run(c)
    ticket = narrow(core.Create, d[0]).ticket
    assert ticket is not None
    assert ticket.due_at == datetime(2026, 11, 10, 23, 59, 59, tzinfo=WITA)


def test_settlement_limit_is_sixty_days_after_the_disposition() -> None:
    d = run(complaint("1", "terdisposisi", (DINKES,), (), T0))
    assert d[0].facts is not None
    assert d[0].facts.settle_by == datetime(2027, 1, 1, 23, 59, 59, tzinfo=WITA)
    assert d[0].facts.settle_by > d[0].facts.current.due_at


def test_declared_holiday_moves_the_due(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(Path(__file__).resolve().parent.parent / "mappings", tmp_path / "m")
    (tmp_path / "m" / "holidays.toml").write_text(
        '[[holiday]]\ndate = 2026-11-05\nname = "Libur daerah"\n', encoding="utf-8"
    )
    mappings = load(tmp_path / "m")
    assert mappings.holidays == frozenset({date(2026, 11, 5)})
    d = core.decide(complaint("1", "terdisposisi", (DINKES,), (), T0), None, mappings, 6411)
    ticket = narrow(core.Create, d).ticket
    assert ticket is not None
    assert ticket.due_at == datetime(2026, 11, 10, 23, 59, 59, tzinfo=WITA)


@pytest.mark.parametrize(
    "lapor_status,last_queued,posts",
    [
        ("ditindaklanjuti", "selesai", False),  # resolved queued: closed must not repeat it
        ("selesai", None, False),  # already selesai on LAPOR! (an officer posted there)
        ("ditindaklanjuti", "diproses", True),  # closed straight from in_progress: one selesai
    ],
)
def test_closed_after_resolved_posts_no_second_selesai(
    lapor_status: str, last_queued: str | None, posts: bool
) -> None:
    d = linked(core.decide(complaint("1", lapor_status, (DINKES,), (), T0), None, MAPPINGS, 6411))
    assert d.link is not None
    close = OfficerChange("7", "1", "1", "closed", "closed", None, T0)
    plan = core.plan_outbox(close, d.link, MAPPINGS, last_queued)
    assert (plan is not None) is posts
    if plan is not None:
        assert plan.lapor_status == "selesai" and "Dinas Kesehatan" in plan.text
    # The officer's own words still go out.
    worded = replace(close, reply="Kami tutup karena sudah diperbaiki.")
    assert core.plan_outbox(worded, d.link, MAPPINGS, last_queued) is not None


def test_units_table_is_shared() -> None:
    assert UNITS[DINKES] == 6411


def test_objection_between_two_pulls_is_still_a_new_period() -> None:
    done = fu(1, T0 + timedelta(days=1), status="selesai")
    objection = fu(2, T0 + timedelta(days=2), by="pelapor")
    d = run(
        complaint("1", "terdisposisi", (DINKES,), (), T0),
        complaint("1", "ditindaklanjuti", (DINKES,), (done, objection), objection.at),
    )
    f = d[1].facts
    assert f is not None and [p.start for p in f.periods] == ["received", "objection"]
    assert f.periods[0].first_follow_up_at == done.at and f.current.started_at == objection.at
    # Seen again: no third period.
    d = run(
        complaint("1", "terdisposisi", (DINKES,), (), T0),
        complaint("1", "ditindaklanjuti", (DINKES,), (done, objection), objection.at),
        complaint(
            "1", "ditindaklanjuti", (DINKES,), (done, objection), objection.at + timedelta(hours=1)
        ),
    )
    assert d[2].facts is not None and len(d[2].facts.periods) == 2


def test_a_second_unit_of_the_same_agency_keeps_the_clock(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(Path(__file__).resolve().parent.parent / "mappings", tmp_path / "m")
    agencies = tmp_path / "m" / "agencies.toml"
    agencies.write_text(
        agencies.read_text(encoding="utf-8").replace(
            "lapor_unit_ids = [6411003]", "lapor_unit_ids = [6411003, 6411777]"
        ),
        encoding="utf-8",
    )
    mappings = load(tmp_path / "m")
    first = m.Disposition(DINKES, "a", 6411, T0)
    other = m.Disposition(6411777, "b", 6411, T0 + timedelta(days=1))
    c = replace(complaint("1", "terdisposisi", (DINKES,), (), T0), dispositions=(first,))
    d0 = linked(core.decide(c, None, mappings, 6411))
    link = replace(d0.link, ticket_ref="1")
    added = replace(c, dispositions=(first, other), updated_at=other.at)
    d1 = linked(core.decide(added, link, mappings, 6411, facts=d0.facts))
    assert d1.facts is not None and len(d1.facts.periods) == 1
    # Replaced by the other unit of the same agency: a re-disposition, a new clock.
    moved = replace(c, dispositions=(other,), updated_at=other.at)
    d2 = linked(core.decide(moved, link, mappings, 6411, facts=d0.facts))
    assert d2.facts is not None and [p.start for p in d2.facts.periods] == [
        "received",
        "redisposition",
    ]
    assert d2.facts.current.agency == "DKP2KB" and d2.facts.current.started_at == other.at
