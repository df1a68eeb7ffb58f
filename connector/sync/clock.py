"""LAPOR!'s clock, as pure functions: due periods and the first follow-up in each.

A complaint's *due period* starts when it is disposed to Mahulu, and again at every
objection (``selesai`` → ``ditindaklanjuti``), re-disposition to another unit and
reopening. Each period keeps its due time and the LAPOR! time (``dibuat``) of the
first follow-up posted by one of the responsible agency's units, whoever posted it
(the connector's push or an officer on LAPOR! directly), and whether that was on time.
The shells store what these functions return (``connector/store/followups.py``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from connector.domain import POSTED_RESULT, Facts, LaporStatus, Period, PostStatus, Start
from connector.lapor import models as m
from connector.mappings import Mappings
from connector.timeutil import add_calendar_days, add_working_days

WORKING_DAYS_TO_FOLLOW_UP = 5
# Perpres 76/2013: a complaint is settled within 60 days of its receipt (calendar days,
# counted from the first disposition to Mahulu, to the end of that day in WITA).
SETTLEMENT_DAYS = 60


def lead_agency(routed: list[tuple[m.Disposition, str]], previous: str | None) -> str:
    """The agency that owns the ticket. It keeps the ticket while it holds a disposition,
    whatever order LAPOR! lists them in; otherwise the earliest disposition wins."""
    if previous and any(a == previous for _, a in routed):
        return previous
    if routed:
        return min(routed, key=lambda da: (da[0].at, da[0].unit_id))[1]
    return previous or ""


def all_agencies(routed: list[tuple[m.Disposition, str]], lead: str) -> tuple[str, ...]:
    out = [lead] if lead else []
    for _, a in sorted(routed, key=lambda da: (da[0].at, da[0].unit_id)):
        if a not in out:
            out.append(a)
    return tuple(out)


def advance(
    c: m.Complaint,
    prev: Facts | None,
    routed: list[tuple[m.Disposition, str]],
    agency: str,
    closed: bool,
    mappings: Mappings,
    prev_status: str | None = None,
    prev_closed: bool = False,
    prev_units: tuple[int, ...] = (),
) -> Facts:
    """The complaint's facts after this detail: new periods, first follow-ups found."""
    extra = mappings.holidays
    periods = list(prev.periods) if prev else []
    lead = [d for d, a in routed if a == agency]
    if not periods:
        start = min((d.at for d in lead), default=None) or min(
            (d.at for d, _ in routed), default=c.submitted_at
        )
        due, source = (
            (c.deadline, "lapor")
            if c.deadline is not None
            else (add_working_days(start, WORKING_DAYS_TO_FOLLOW_UP, extra), "computed")
        )
        periods.append(Period(1, agency, Start.RECEIVED, start, due, source, c.deadline))
    else:
        cur = periods[-1]
        began = _new_period(c, cur, lead, agency, closed, prev_status, prev_closed, prev_units)
        if began is not None:
            kind, start = began
            if c.deadline is not None and c.deadline != cur.lapor_deadline and c.deadline > start:
                due, source = c.deadline, "lapor"
            else:  # no deadline, or the old period's: stale for the new disposition
                due, source = add_working_days(start, WORKING_DAYS_TO_FOLLOW_UP, extra), "computed"
            periods[-1] = replace(cur, ended_at=cur.ended_at or start)
            periods.append(Period(cur.seq + 1, agency, kind, start, due, source, c.deadline))
        elif (
            cur.first_follow_up_at is None
            and c.deadline is not None
            and c.deadline != cur.lapor_deadline
            and (cur.start == Start.RECEIVED or c.deadline > cur.started_at)
        ):
            # LAPOR! set or moved its deadline within the period: its word is the due time.
            periods[-1] = replace(
                cur, due_at=c.deadline, due_source="lapor", lapor_deadline=c.deadline
            )
    periods = [
        _with_first_follow_up(
            p, c, mappings, periods[i + 1].started_at if i + 1 < len(periods) else None
        )
        for i, p in enumerate(periods)
    ]
    first = periods[0].started_at
    return Facts(
        tracking_id=c.tracking_id,
        agency=agency,
        agencies=all_agencies(routed, agency),
        received_at=c.submitted_at,
        settle_by=add_calendar_days(first, SETTLEMENT_DAYS),
        lapor_status=c.status,
        closed=closed,
        periods=tuple(periods),
    )


def posted(facts: Facts, fu: m.FollowUp, mappings: Mappings) -> Facts:
    """Our own follow-up as LAPOR!'s receipt dates it, recorded at once by the push (the
    next pull would find the same one): the first of the current period if none yet."""
    periods = list(facts.periods)
    cur = periods[-1]
    if (
        cur.first_follow_up_at is None
        and fu.unit_id in mappings.units_of(cur.agency)
        and (cur.seq == 1 or fu.at >= cur.started_at)
    ):
        periods[-1] = replace(
            cur, first_follow_up_at=fu.at, first_follow_up_id=fu.id, on_time=fu.at <= cur.due_at
        )
    status = POSTED_RESULT.get(fu.status or "")
    return replace(facts, periods=tuple(periods), lapor_status=status or facts.lapor_status)


def _new_period(
    c: m.Complaint,
    cur: Period,
    lead: list[m.Disposition],
    agency: str,
    closed: bool,
    prev_status: str | None,
    prev_closed: bool,
    prev_units: tuple[int, ...],
) -> tuple[Start, datetime] | None:
    newest = max((d.at for d in lead), default=None)
    if prev_closed and not closed:
        return Start.REOPENED, newest if newest and newest > cur.started_at else c.updated_at
    fresh = [d.at for d in lead if d.unit_id not in prev_units and d.at > cur.started_at]
    kept = any(d.unit_id in prev_units for d in lead)  # a unit added beside it: same clock
    if lead and (agency != cur.agency or (fresh and not kept)):
        return Start.REDISPOSITION, max(fresh) if fresh else newest or c.updated_at
    if c.status == LaporStatus.DITINDAKLANJUTI:
        objected = _objection_at(c)
        if prev_status == LaporStatus.SELESAI:
            return Start.OBJECTION, objected or c.updated_at
        if objected is not None and objected > cur.started_at:
            # selesai and the objection both happened between two pulls
            return Start.OBJECTION, objected
    return None


def _objection_at(c: m.Complaint) -> datetime | None:
    """When the reporter objected: their first follow-up after the last ``selesai``."""
    last_done = max(
        (f.at for f in c.follow_ups if f.by == "instansi" and f.status == PostStatus.SELESAI),
        default=None,
    )
    if last_done is not None:
        after = [f.at for f in c.follow_ups if f.by == "pelapor" and f.at >= last_done]
        if after:
            return min(after)
    return None


def _with_first_follow_up(
    p: Period, c: m.Complaint, mappings: Mappings, until: datetime | None
) -> Period:
    if p.first_follow_up_at is not None:
        return p  # fixed once seen: on time against the due time in force then
    units = set(mappings.units_of(p.agency))
    for fu in c.follow_ups:
        # The first period takes any earlier follow-up too (a disposition date LAPOR!
        # stamped after the answer must not hide it).
        if (
            fu.by == "instansi"
            and fu.unit_id in units
            and (p.seq == 1 or fu.at >= p.started_at)
            and (until is None or fu.at < until)
        ):
            return replace(
                p, first_follow_up_at=fu.at, first_follow_up_id=fu.id, on_time=fu.at <= p.due_at
            )
    return p
