"""``tickets list|show|update``: the built-in tracker's tickets, or an external
tracker's issues as the connector knows them."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from connector.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    in_store,
    print_json,
    show_rows,
    tracker_of,
)
from connector.domain import LocalStatus
from connector.errors import ConfigError
from connector.settings import Config
from connector.term import safe
from connector.timeutil import human_iso, utcnow
from connector.tracker import listing

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from connector.tracker.base import OfficerChange
    from connector.tracker.port import TrackerPort
    from connector.tracker.rows import ExternalTicketView, TicketView


def cmd_tickets_list(config: Config, args: argparse.Namespace) -> int:
    tracker = tracker_of(config)
    desk = tracker.desk()
    if desk is None:

        def issue(r: ExternalTicketView) -> str:
            return (
                f"#{r['issue']}  {r['issue_url']}"
                if r["issue"]
                else "(not created yet: see `status`)"
            )

        return show_rows(
            args.json,
            in_store(
                config,
                lambda c: listing.external_view(c, tracker, args.agency, args.status, utcnow()),
            ),
            "no tickets",
            f"{'TRACKING':<10} {'AGENCY':<12} {'STATUS':<12} {'LAPOR':<16} "
            f"{'DUE (WITA)':<16} !  {tracker.kind.upper()} ISSUE",
            lambda r: (
                f"{r['tracking_id']:<10} {r['agency']:<12} {r['status']:<12} "
                # The row has no due_at_wita (the clock adds settle_by_wita only).
                f"{r['lapor_status']:<16} {'-':<16} "
                f"{'!' if r['overdue'] else ' '}  {issue(r)}"
            ),
        )

    def line(r: TicketView) -> str:
        flag = "[RAHASIA] " if r["confidential"] else ""
        if args.agency and r["agency"] != args.agency:
            flag += f"[juga {args.agency}] "
        mark = "!" if r["overdue"] else " "
        due = (r["due_at_wita"] or "-")[:16].replace("T", " ")
        return (
            f"{r['id']:>5}  {r['tracking_id']:<10} {r['agency']:<12} {r['status']:<12} "
            f"{r['lapor_status']:<16} {due:<16} {mark}  "
            f"{flag}{safe(r['title'][:60], inline=True)}"
        )

    rows = in_store(
        config, lambda c: listing.desk_view(c, desk, args.agency, args.status, utcnow())
    )
    return show_rows(
        args.json,
        rows,
        "no tickets",
        f"{'ID':>5}  {'TRACKING':<10} {'AGENCY':<12} {'STATUS':<12} {'LAPOR':<16} "
        f"{'DUE (WITA)':<16} !  TITLE",
        line,
        footer="! = overdue: no follow-up on LAPOR! by the due time"
        if any(r["overdue"] for r in rows)
        else None,
    )


def _officers_work_in(tracker: TrackerPort) -> int:
    print(
        f"error: tickets are kept in {tracker.kind.capitalize()} (tracker.kind = "
        f'"{tracker.kind}"): officers work on the issues there, and their public notes '
        "and status changes go to LAPOR! by themselves. `tickets list` shows each "
        "complaint's issue and its URL.",
        file=sys.stderr,
    )
    return EXIT_USAGE


def cmd_tickets_show(config: Config, args: argparse.Namespace) -> int:
    tracker = tracker_of(config)
    desk = tracker.desk()
    if desk is None:
        return _officers_work_in(tracker)
    found = in_store(config, lambda c: listing.desk_view(c, desk, None, None, utcnow(), args.id))
    ticket = found[0] if found else None
    if ticket is None:
        print(f"error: no ticket with id {args.id}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print_json(ticket)
        return EXIT_OK
    rep = ticket["reporter"]
    print(
        f"Ticket {ticket['id']}  (LAPOR! {ticket['tracking_id']})"
        + ("  [RAHASIA: restricted]" if ticket["confidential"] else "")
    )
    others = [a for a in ticket["agencies"] if a != ticket["agency"]]
    print(
        f"  Agency:    {ticket['agency']}"
        + (f"   (also disposed to: {', '.join(others)})" if others else "")
    )
    print(f"  Status:    {ticket['status']}  (LAPOR!: {ticket['lapor_status']})")
    print(f"  Category:  {ticket['category']}   Channel: {ticket['channel']}")
    print(f"  Submitted: {human_iso(ticket['submitted_at'])}")
    print(
        f"  Due:       {human_iso(ticket['due_at'])}"
        + ("   OVERDUE: no follow-up on LAPOR! yet" if ticket["overdue"] else "")
    )
    print(f"  Settle by: {human_iso(ticket['settle_by'])}   (Perpres 76/2013: 60 days)")
    for p in ticket["due_periods"]:
        fu = (
            "no follow-up yet"
            if p["first_follow_up_at"] is None
            else f"first follow-up {human_iso(p['first_follow_up_at'])} "
            + ("on time" if p["on_time"] else "LATE")
        )
        print(
            f"  Period {p['seq']}:  {p['start']} {human_iso(p['started_at'])} ({p['agency']}), "
            f"due {human_iso(p['due_at'])} ({p['due_source']}); {fu}"
        )
    if ticket["anonymous"]:
        print("  Reporter:  anonim")
    elif rep:
        print(f"  Reporter:  {rep['name']}  {rep['email'] or ''}  {rep['phone'] or ''}")
    print(f"  Title:     {safe(ticket['title'], inline=True)}")
    print(f"\n{ticket['body']}\n")
    for a in ticket["attachments"]:
        print(f"  attachment: {a['name']} ({a['mime']}, {a['size']} bytes)")
    for m in ticket["messages"]:
        print(f"  [{human_iso(m['at'])}] {m['direction']:<8} {m['author']}: {m['text']}")
    return EXIT_OK


def cmd_tickets_update(config: Config, args: argparse.Namespace) -> int:
    from connector.mapping_reload import MappingHolder
    from connector.sync.push import ingest
    from connector.tracker.builtin import OfficerAction, TrackerRefusal, check_status
    from connector.tracker.sink import sink_for

    tracker = tracker_of(config)
    desk, inline = tracker.desk(), sink_for(tracker).in_database
    if desk is None or inline is None:
        return _officers_work_in(tracker)
    if args.status is None and args.reply is None and args.note is None:
        print("error: give at least one of --status, --reply, --note", file=sys.stderr)
        return EXIT_USAGE
    try:
        check_status(args.status, tuple(LocalStatus))
    except TrackerRefusal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    holder = MappingHolder(config.mappings_dir)
    try:
        mappings = holder.load_initial()
    except ConfigError as exc:
        mappings = None
        print(
            f"warning: {exc}\nthe change is recorded; the daemon sends it once the mapping "
            "is valid",
            file=sys.stderr,
        )
    outbound = mappings.outbound.get(args.status or "") if mappings is not None else None
    if outbound is not None and outbound.requires_reply and not args.reply:
        print(
            f"error: status {args.status} needs a public reply in the officer's own words "
            "(--reply TEXT): LAPOR!'s admins reject a template alone (statuses.toml: "
            "requires_reply)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    action = OfficerAction(args.status, args.reply, args.note, args.author)

    def tx(conn: Connection) -> OfficerChange | None:
        now = utcnow()
        change = desk.officer_update(conn, args.id, action, now)
        if change is not None and mappings is not None:
            # The outbox entry is written in the same transaction as the change itself.
            ingest(conn, inline, mappings, now)
        return change

    try:
        change = in_store(config, tx)
    except TrackerRefusal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"ticket {args.id} updated" + (" (queued for LAPOR!)" if change else ""))
    return EXIT_OK
