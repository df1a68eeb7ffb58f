"""The tickets as ``tickets list`` and ``tickets show`` give them: the built-in desk's
rows, or an external tracker's complaints as the connector knows them (the text lives in
the tracker), each with what LAPOR!'s clock adds (overdue, settle_by, due periods)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from connector.store import followups, intents, state
from connector.store.schema import links
from connector.tracker.port import Desk, TrackerPort
from connector.tracker.rows import ExternalTicketJSON, ExternalTicketView, TicketView


def external_rows(
    conn: Connection, tracker: TrackerPort, agency: str | None, status: str | None
) -> list[ExternalTicketJSON]:
    """An external tracker's complaints as the connector knows them: the issue number
    and URL, and LAPOR!'s side (the text lives in the tracker)."""
    tids = [
        r.tracking_id
        for r in conn.execute(select(links.c.tracking_id).order_by(links.c.created_at))
    ]
    all_links = state.get_links(conn, tids)
    refs = intents.refs(conn, tids)
    officer = intents.officer_statuses(conn, tids)
    also = set(followups.tracking_ids_of_agency(conn, agency)) if agency else set()
    rows: list[ExternalTicketJSON] = []
    for tid in tids:
        link = all_links[tid]
        if agency and link.agency != agency and tid not in also:
            continue
        local = "closed" if link.closed else officer.get(tid, "new")
        if status and local != status:
            continue
        ref = refs.get(tid)
        rows.append(
            {
                "id": ref,
                "tracking_id": tid,
                "agency": link.agency,
                "status": local,
                "lapor_status": link.lapor_status,
                "issue": ref,
                "issue_url": tracker.issue_url(ref) if ref else None,
                "tracker": tracker.kind,
            }
        )
    return rows


def desk_view(
    conn: Connection,
    desk: Desk,
    agency: str | None,
    status: str | None,
    now: datetime,
    ticket_id: str | None = None,
) -> list[TicketView]:
    """The built-in tracker's tickets (one, with ``ticket_id``), then what LAPOR!'s clock
    adds (overdue, settle_by, due periods, agencies)."""
    if ticket_id is not None:
        one = desk.show(conn, ticket_id)
        rows = [] if one is None else [one]
    else:
        also = followups.tracking_ids_of_agency(conn, agency) if agency else None
        rows = desk.list_tickets(conn, agency, status, also)
    facts = followups.get_facts(conn, [r["tracking_id"] for r in rows])
    return [{**r, **followups.ticket_json(facts.get(r["tracking_id"]), now)} for r in rows]


def external_view(
    conn: Connection, tracker: TrackerPort, agency: str | None, status: str | None, now: datetime
) -> list[ExternalTicketView]:
    """An external tracker's complaints, then what LAPOR!'s clock adds."""
    rows = external_rows(conn, tracker, agency, status)
    facts = followups.get_facts(conn, [r["tracking_id"] for r in rows])
    return [{**r, **followups.ticket_json(facts.get(r["tracking_id"]), now)} for r in rows]
