"""Stored facts of LAPOR!'s clock: due periods and first follow-ups per complaint.

Written by the pull in the same transaction as the ticket (``save``); read by ``status``,
``tickets``, ``report`` and the ``lapor_connector_overdue_tickets`` metric
(``overdue``). Overdue means what LAPOR! means: no follow-up on LAPOR! by one of
the agency's units by the due time of the complaint's current period.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, Select, and_, delete, func, insert, select, update

from connector.domain import Facts, Period
from connector.store.schema import followup_complaints as fc
from connector.store.schema import followup_periods as fp
from connector.timeutil import as_utc, iso, iso_wita

if TYPE_CHECKING:  # JSON shapes only: the store never imports the trackers
    from connector.tracker.rows import ClockJSON, OverdueJSON


def _ts(v: datetime | None) -> datetime | None:
    return None if v is None else as_utc(v)


def _period(r: Row[Any]) -> Period:
    return Period(
        seq=r.seq,
        agency=r.agency,
        start=r.start,
        started_at=as_utc(r.started_at),
        due_at=as_utc(r.due_at),
        due_source=r.due_source,
        lapor_deadline=_ts(r.lapor_deadline),
        first_follow_up_at=_ts(r.first_follow_up_at),
        first_follow_up_id=r.first_follow_up_id,
        on_time=r.on_time,
        ended_at=_ts(r.ended_at),
    )


def _facts(rows: Iterable[Row[Any]], periods: dict[str, list[Period]]) -> dict[str, Facts]:
    return {
        r.tracking_id: Facts(
            tracking_id=r.tracking_id,
            agency=r.agency,
            agencies=tuple(a for a in r.agencies.split(",") if a),
            received_at=as_utc(r.received_at),
            settle_by=as_utc(r.settle_by),
            lapor_status=r.lapor_status,
            closed=r.closed,
            periods=tuple(periods.get(r.tracking_id, ())),
        )
        for r in rows
        if periods.get(r.tracking_id)
    }


def _periods_of(conn: Connection, ids: list[str]) -> dict[str, list[Period]]:
    out: dict[str, list[Period]] = {}
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        for r in conn.execute(
            select(fp).where(fp.c.tracking_id.in_(part)).order_by(fp.c.tracking_id, fp.c.seq)
        ):
            out.setdefault(r.tracking_id, []).append(_period(r))
    return out


def get_facts(conn: Connection, ids: list[str]) -> dict[str, Facts]:
    if not ids:
        return {}
    rows: list[Row[Any]] = []
    for start in range(0, len(ids), 500):
        rows += conn.execute(select(fc).where(fc.c.tracking_id.in_(ids[start : start + 500]))).all()
    return _facts(rows, _periods_of(conn, [r.tracking_id for r in rows]))


def _period_values(p: Period) -> dict[str, object]:
    return {
        "agency": p.agency,
        "start": str(p.start),
        "started_at": p.started_at,
        "due_at": p.due_at,
        "due_source": p.due_source,
        "lapor_deadline": p.lapor_deadline,
        "first_follow_up_at": p.first_follow_up_at,
        "first_follow_up_id": p.first_follow_up_id,
        "on_time": p.on_time,
        "ended_at": p.ended_at,
    }


def _complaint_values(facts: Facts, now: datetime) -> dict[str, object]:
    return {
        "agency": facts.agency,
        "agencies": "," + ",".join(facts.agencies) + ",",
        "received_at": facts.received_at,
        "settle_by": facts.settle_by,
        "lapor_status": facts.lapor_status,
        "closed": facts.closed,
        "updated_at": now,
    }


def save(conn: Connection, facts: Facts, prev: Facts | None, now: datetime) -> None:
    """Store what changed (inside the caller's transaction)."""
    save_many(conn, [(facts, prev)], now)


def save_many(conn: Connection, pairs: list[tuple[Facts, Facts | None]], now: datetime) -> None:
    """Store what changed; new complaints in two batched inserts (a first sync's backlog)."""
    new = [f for f, prev in pairs if prev is None]
    if new:
        # A row without periods (never written so; cheap insurance) would block the insert.
        ids = [f.tracking_id for f in new]
        conn.execute(delete(fc).where(fc.c.tracking_id.in_(ids)))
        conn.execute(delete(fp).where(fp.c.tracking_id.in_(ids)))
        conn.execute(
            insert(fc), [{"tracking_id": f.tracking_id, **_complaint_values(f, now)} for f in new]
        )
        conn.execute(
            insert(fp),
            [
                {"tracking_id": f.tracking_id, "seq": p.seq, **_period_values(p)}
                for f in new
                for p in f.periods
            ],
        )
    for facts, prev in pairs:
        if prev is None or facts == prev:
            continue
        conn.execute(
            update(fc)
            .where(fc.c.tracking_id == facts.tracking_id)
            .values(**_complaint_values(facts, now))
        )
        old = {p.seq: p for p in prev.periods}
        for p in facts.periods:
            if p.seq not in old:
                conn.execute(
                    insert(fp).values(tracking_id=facts.tracking_id, seq=p.seq, **_period_values(p))
                )
            elif old[p.seq] != p:
                conn.execute(
                    update(fp)
                    .where(fp.c.tracking_id == facts.tracking_id, fp.c.seq == p.seq)
                    .values(**_period_values(p))
                )


# -- reading ----------------------------------------------------------------------------------


def _current() -> Select[Any]:
    """The current (last) period of each complaint."""
    last = (
        select(fp.c.tracking_id, func.max(fp.c.seq).label("seq"))
        .group_by(fp.c.tracking_id)
        .subquery()
    )
    return (
        select(fp, fc.c.closed, fc.c.agency.label("lead"))
        .join(last, and_(last.c.tracking_id == fp.c.tracking_id, last.c.seq == fp.c.seq))
        .join(fc, fc.c.tracking_id == fp.c.tracking_id)
    )


def _overdue_query(now: datetime) -> Select[Any]:
    return _current().where(
        fc.c.closed.is_(False), fp.c.first_follow_up_at.is_(None), fp.c.due_at < now
    )


def overdue(conn: Connection, now: datetime, limit: int) -> tuple[int, list[OverdueJSON]]:
    """How many are overdue, and the first ``limit`` of them (earliest due first), in one
    query: the daemon's health refresh runs this every few seconds."""
    if limit < 1:
        raise ValueError("limit must be at least 1: the total rides on the rows")
    q = (
        _overdue_query(now)
        .add_columns(func.count().over().label("total"))
        .order_by(fp.c.due_at, fp.c.tracking_id)
        .limit(limit)
    )
    rows = conn.execute(q).all()
    if not rows:
        return 0, []
    return int(rows[0].total), [
        {
            "tracking_id": r.tracking_id,
            "agency": r.lead,
            "due_at": iso(r.due_at),
            "due_at_wita": iso_wita(r.due_at),
            "period": r.seq,
            "start": r.start,
        }
        for r in rows
    ]


def tracking_ids_of_agency(conn: Connection, agency: str) -> list[str]:
    """Complaints an agency holds a disposition of, lead or not."""
    # autoescape: a code's "_" must not match any character.
    q = select(fc.c.tracking_id).where(fc.c.agencies.contains(f",{agency},", autoescape=True))
    return [r.tracking_id for r in conn.execute(q)]


def received_between(conn: Connection, start: datetime, end: datetime) -> list[Facts]:
    """Facts of complaints whose LAPOR! ``dibuat`` is in [start, end)."""
    rows = conn.execute(
        select(fc)
        .where(fc.c.received_at >= start, fc.c.received_at < end)
        .order_by(fc.c.received_at, fc.c.tracking_id)
    ).all()
    return list(_facts(rows, _periods_of(conn, [r.tracking_id for r in rows])).values())


def ticket_json(facts: Facts | None, now: datetime) -> ClockJSON:
    """The keys the clock adds to a ticket object (JSON: ISO with offset)."""
    if facts is None:
        return {
            "overdue": False,
            "settle_by": None,
            "settle_by_wita": None,
            "agencies": [],
            "first_follow_up_at": None,
            "due_periods": [],
        }
    first = next((p.first_follow_up_at for p in facts.periods if p.first_follow_up_at), None)
    return {
        "overdue": facts.overdue(now),
        "settle_by": iso(facts.settle_by),
        "settle_by_wita": iso_wita(facts.settle_by),
        "agencies": list(facts.agencies),
        "first_follow_up_at": iso(first),
        "due_periods": [
            {
                "seq": p.seq,
                "agency": p.agency,
                "start": str(p.start),
                "started_at": iso(p.started_at),
                "due_at": iso(p.due_at),
                "due_source": p.due_source,
                "first_follow_up_at": iso(p.first_follow_up_at),
                "on_time": p.on_time,
                "ended_at": iso(p.ended_at),
            }
            for p in facts.periods
        ],
    }
