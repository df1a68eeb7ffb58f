"""The command line: ``lapor-connector`` and ``python -m connector`` (see CONTRACT.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from connector import __version__
from connector.domain import OutboxState
from connector.errors import ConfigError, ConnectorError, Fatal, RetryLater
from connector.logging import configure_for
from connector.mappings import LOCAL_STATUSES, MappingError, Mappings
from connector.mappings import load as load_mappings
from connector.mappings import suggest as suggest_mappings
from connector.notify import commands as notify_commands
from connector.settings import Config, load_config
from connector.term import SafeWriter, safe
from connector.timeutil import human_iso, utcnow

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from connector.lapor.models import Unit
    from connector.runtime import Runtime
    from connector.store import Store
    from connector.tracker.base import OfficerChange
    from connector.tracker.port import Desk, TrackerPort
    from connector.tracker.rows import ExternalTicketJSON, ExternalTicketView, TicketView

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")
Row = TypeVar("Row", bound=Mapping[str, object])


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors exit 2 with a clear line
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    # --config is accepted before or after the command; SUPPRESS keeps a subcommand's
    # default from overwriting a value given before it.
    common = _Parser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                        help="settings file (default: $LAPOR_CONNECTOR_CONFIG, else "
                             "./settings.toml if it exists, else "
                             "/etc/lapor-connector/settings.toml)")
    p = _Parser(prog="lapor-connector", parents=[common],
                description="Mahulu SP4N-LAPOR! connector")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("run", parents=[common], help="the daemon (same as python scheduler.py)")
    sy = sub.add_parser("sync", parents=[common], help="one pull and one push cycle, then exit")
    sy.add_argument("--sweep", action="store_true",
                    help="a reconciliation sweep over sync.sweep_window_s instead of the pull")

    t = sub.add_parser("tickets", parents=[common], help="local tickets (built-in tracker)")
    ts = t.add_subparsers(dest="action", required=True, parser_class=_Parser)
    tl = ts.add_parser("list", parents=[common])
    tl.add_argument("--json", action="store_true")
    tl.add_argument("--agency")
    tl.add_argument("--status", choices=LOCAL_STATUSES)
    tsh = ts.add_parser("show", parents=[common])
    tsh.add_argument("id")
    tsh.add_argument("--json", action="store_true")
    tu = ts.add_parser("update", parents=[common])
    tu.add_argument("id")
    tu.add_argument("--status")
    tu.add_argument("--reply", help="public reply: goes to LAPOR! (max 5,000 characters)")
    tu.add_argument("--note", help="internal note: never leaves this system")
    tu.add_argument("--author", default="petugas")

    mp = sub.add_parser("mappings", parents=[common], help="check or suggest mapping files")
    ms = mp.add_subparsers(dest="action", required=True, parser_class=_Parser)
    mc = ms.add_parser("check", parents=[common])
    mc.add_argument("--online", action="store_true",
                    help="also check unit ids against LAPOR!'s /unit-kerja")
    ms.add_parser("suggest", parents=[common])

    st = sub.add_parser("status", parents=[common], help="health report; exit 1 when degraded")
    st.add_argument("--json", action="store_true")

    q = sub.add_parser("quarantine", parents=[common], help="records held back")
    qs = q.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ql = qs.add_parser("list", parents=[common])
    ql.add_argument("--json", action="store_true")
    qr = qs.add_parser("retry", parents=[common])
    qr.add_argument("id", nargs="?")

    o = sub.add_parser("outbox", parents=[common], help="follow-ups waiting or refused")
    os_ = o.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ol = os_.add_parser("list", parents=[common])
    ol.add_argument("--json", action="store_true")
    ol.add_argument("--state", choices=tuple(OutboxState))
    orr = os_.add_parser("retry", parents=[common])
    orr.add_argument("id", nargs="?", type=int)
    od = os_.add_parser("dismiss", parents=[common],
                        help="accept a failed follow-up as final (it is never sent)")
    od.add_argument("id", type=int)
    od.add_argument("--reason", required=True, help="why; kept and shown in `outbox list`")

    it = sub.add_parser("intents", parents=[common],
                        help="changes waiting for an external tracker (Redmine)")
    its = it.add_subparsers(dest="action", required=True, parser_class=_Parser)
    itr = its.add_parser("retry", parents=[common], help="try refused changes again now")
    itr.add_argument("id", nargs="?", type=int)

    sb = sub.add_parser("sandbox", parents=[common], help="serve the LAPOR! sandbox on loopback")
    sb.add_argument("--port", type=int, default=8765)
    sb.add_argument("--seed", type=int)
    sb.add_argument("--complaints", type=int)
    sb.add_argument("--no-generator", action="store_true")
    sb.add_argument("--faults", help="JSON object of initial faults")

    rp = sub.add_parser("report", parents=[common],
                        help="on-time follow-up per agency for complaints received in a period")
    rp.add_argument("--from", dest="date_from", type=_date, metavar="DATE",
                    help="first WITA date (YYYY-MM-DD; default: first of this month)")
    rp.add_argument("--to", dest="date_to", type=_date, metavar="DATE",
                    help="last WITA date, inclusive (default: end of this month)")
    rp.add_argument("--agency", help="one agency code (default: every agency)")
    rp.add_argument("--format", choices=("table", "csv", "json", "html"), default="table")
    rp.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")

    db = sub.add_parser("db", parents=[common], help="database maintenance")
    dbs = db.add_subparsers(dest="action", required=True, parser_class=_Parser)
    dbs.add_parser("upgrade", parents=[common])
    dbb = dbs.add_parser("backup", parents=[common],
                         help="a consistent copy of the SQLite database, also while the "
                              "daemon runs (PostgreSQL: prints the pg_dump command)")
    dbb.add_argument("path", type=Path,
                     help="the backup file, or a folder: then connector-<UTC time>.db in it")
    dbb.add_argument("--keep", type=int, default=0, metavar="N",
                     help="with a folder: keep only the N newest backups in it")

    w = sub.add_parser("web", parents=[common],
                       help="serve the officer's desk on web.listen (beside the daemon)")
    w.set_defaults(action=None)

    us = sub.add_parser("users", parents=[common], help="accounts of the officer's desk")
    uss = us.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ua = uss.add_parser("add", parents=[common])
    ua.add_argument("login")
    ua.add_argument("--name", required=True)
    ua.add_argument("--role", required=True, help="petugas, pimpinan or admin")
    ua.add_argument("--agency", action="append", default=[], metavar="CODE",
                    help="an agency of agencies.toml (repeat for several)")
    ua.add_argument("--email")
    ua.add_argument("--password-stdin", action="store_true", required=True,
                    help="read the password from the first line of standard input")
    ul = uss.add_parser("list", parents=[common])
    ul.add_argument("--json", action="store_true")
    for name in ("disable", "enable"):
        uss.add_parser(name, parents=[common]).add_argument("login")
    up = uss.add_parser("password", parents=[common])
    up.add_argument("login")
    up.add_argument("--password-stdin", action="store_true", required=True)
    notify_commands.add_parsers(sub, uss, common)  # notify test; users notify

    rel = sub.add_parser("reliability", parents=[common],
                         help="run the crash and fault campaign and print the figures")
    rel.add_argument("--kills", type=int, default=25)
    rel.add_argument("--complaints", type=int, default=1500)
    rel.add_argument("--changes", type=int, default=30)
    rel.add_argument("--seed", type=int, default=6411)
    return p


# Commands whose plain-text output carries LAPOR!'s text: neutralised on the way out.
SAFE_STDOUT = frozenset({"sync", "tickets", "status", "quarantine", "outbox", "mappings", "db",
                         "users"})
SAFE_STDERR = SAFE_STDOUT - {"sync"}  # sync's stderr carries the (coloured) log


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    if args.command in SAFE_STDOUT and not getattr(args, "json", False):
        sys.stdout = SafeWriter(out)
    if args.command in SAFE_STDERR:
        sys.stderr = SafeWriter(err)
    try:
        return _main(args)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(args: argparse.Namespace) -> int:
    handler = HANDLERS[(args.command, getattr(args, "action", None))]
    try:
        if args.command == "sandbox":
            return handler(None, args)
        config = load_config(getattr(args, "config", None))
        _note_local_settings(config, getattr(args, "config", None))
        check_identity(config)
        return handler(config, args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Fatal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RetryLater as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except ConnectorError as exc:  # e.g. LAPOR! refused a call (4xx): never a traceback
        from connector.logging import redact_text

        print(safe(redact_text(f"error: {exc}")), file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `tickets list | head`
        sys.stderr.close()
        return EXIT_OK


def _note_local_settings(config: Config, given: Path | None) -> None:
    """On a server, a ./settings.toml that wins over the service's file is worth a line."""
    import os

    from connector import settings

    if (given is None and not os.environ.get(settings.CONFIG_ENV)
            and config.path != settings.SYSTEM_CONFIG and settings.SYSTEM_CONFIG.exists()):
        print(f"note: using {config.path}, not the service's {settings.SYSTEM_CONFIG} "
              "(run from another folder, or give --config)", file=sys.stderr)


def check_identity(config: Config, euid: int | None = None) -> None:
    """Refuse root on a SQLite database that belongs to the service's user.

    Root would leave root-owned journal/WAL files that the service cannot open.
    """
    import os
    import pwd

    uid = os.geteuid() if euid is None else euid
    url = config.database_url
    if uid != 0 or not url.startswith("sqlite:///"):
        return
    folder = Path(url.removeprefix("sqlite:///")).parent
    try:
        owner = folder.stat().st_uid
    except OSError:
        return
    if owner != 0:
        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        raise ConfigError(f"{folder} belongs to {name}: run this command as that user "
                          f"(sudo -u {name} lapor-connector ...), not as root, so that the "
                          "database files keep their owner")


def _runtime(config: Config, need_mappings: bool = True, lock: bool = False) -> Runtime:
    from connector.runtime import open_runtime

    return open_runtime(config, need_mappings=need_mappings, lock=lock)


def _mappings_or_say_why(config: Config) -> Mappings | None:
    """The mappings, or None after printing each problem (``file: entry: field: why``)."""
    try:
        return load_mappings(config.mappings_dir)
    except MappingError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return None


def _print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


def _show_rows(as_json: bool, rows: Sequence[Row], empty: str, header: str,
               line: Callable[[Row], str], footer: str | None = None) -> int:
    """JSON for programs, or a table for a person (``footer`` under a table, when given)."""
    if as_json:
        _print_json(rows)
    elif not rows:
        print(empty)
    else:
        print(header)
        for r in rows:
            print(line(r))
        if footer is not None:
            print(footer)
    return EXIT_OK


# -- commands ---------------------------------------------------------------------------------

def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from connector.service import run

    return run(config)


def cmd_sync(config: Config, args: argparse.Namespace) -> int:
    from connector.cli_format import summary_line
    from connector.errors import ApiError
    from connector.logging import redact_text
    from connector.store import state
    from connector.sync.cycle import CycleKind, run_cycle

    configure_for(config)
    rt = _runtime(config, lock=True)  # never beside a running daemon on the same storage

    async def go() -> int:
        try:
            ctx = rt.context()
            await ctx.db(lambda c: state.set_mapping_version(c, rt.mappings().version))
            pulled = await run_cycle(ctx, CycleKind.SWEEP if args.sweep else CycleKind.PULL)
            if ctx.sink.queued:  # an external tracker: apply what the pull wrote
                try:
                    await run_cycle(ctx, CycleKind.TRACKER)
                except RetryLater as exc:
                    print(safe(f"warning: the tracker is unreachable ({exc}); the changes "
                               "wait and are applied later"), file=sys.stderr)
            pushed = await run_cycle(ctx, CycleKind.PUSH)
            line = summary_line(pulled, pushed)
            if args.sweep:
                line += f" sweep=1 late={pulled.counts.get('late', 0)}"
            print("sync ok: " + line)
            return EXIT_OK
        except (RetryLater, Fatal, ApiError) as exc:  # ApiError: LAPOR! refused feed/token
            print(safe(redact_text(f"sync failed: {exc}")), file=sys.stderr)
            return exc.exit_code if isinstance(exc, Fatal) else EXIT_FAIL
        finally:
            await rt.aclose()

    return asyncio.run(go())


def _store(config: Config, lock: bool = False) -> Store:
    from connector.runtime import open_store

    return open_store(config, lock=lock)


def _in_store(config: Config, fn: Callable[[Connection], T]) -> T:
    """One transaction on the connector's database, for a command."""
    store = _store(config)
    try:
        return store.run(fn)
    finally:
        store.close()


def _tracker(config: Config | None = None) -> TrackerPort:
    """The configured tracker (no network until it is used)."""
    from connector.mapping_reload import MappingHolder
    from connector.tracker.builtin import BuiltinTracker
    from connector.tracker.registry import open_tracker

    if config is None or config.settings.tracker.kind == "builtin":
        return BuiltinTracker(LOCAL_STATUSES)
    holder = MappingHolder(config.mappings_dir)
    with contextlib.suppress(ConfigError):  # the default project stands in
        holder.load_initial()
    return open_tracker(config, holder)


def _external_rows(conn: Connection, tracker: TrackerPort, agency: str | None,
                   status: str | None) -> list[ExternalTicketJSON]:
    """An external tracker's complaints as the connector knows them: the issue number
    and URL, and LAPOR!'s side (the text lives in the tracker)."""
    from sqlalchemy import select

    from connector.store import followups, intents, state
    from connector.store.schema import links

    tids = [r.tracking_id for r in conn.execute(select(links.c.tracking_id)
                                                 .order_by(links.c.created_at))]
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
        rows.append({"id": ref, "tracking_id": tid, "agency": link.agency, "status": local,
                     "lapor_status": link.lapor_status, "issue": ref,
                     "issue_url": tracker.issue_url(ref) if ref else None,
                     "tracker": tracker.kind})
    return rows


def _desk_view(conn: Connection, desk: Desk, agency: str | None, status: str | None,
               ticket_id: str | None = None) -> list[TicketView]:
    """The built-in tracker's tickets (one, with ``ticket_id``), then what LAPOR!'s clock
    adds (overdue, settle_by, due periods, agencies)."""
    from connector.store import followups

    now = utcnow()
    if ticket_id is not None:
        one = desk.show(conn, ticket_id)
        rows = [] if one is None else [one]
    else:
        also = followups.tracking_ids_of_agency(conn, agency) if agency else None
        rows = desk.list_tickets(conn, agency, status, also)
    facts = followups.get_facts(conn, [r["tracking_id"] for r in rows])
    return [{**r, **followups.ticket_json(facts.get(r["tracking_id"]), now)} for r in rows]


def _external_view(conn: Connection, tracker: TrackerPort, agency: str | None,
                   status: str | None) -> list[ExternalTicketView]:
    """An external tracker's complaints, then what LAPOR!'s clock adds."""
    from connector.store import followups

    now = utcnow()
    rows = _external_rows(conn, tracker, agency, status)
    facts = followups.get_facts(conn, [r["tracking_id"] for r in rows])
    return [{**r, **followups.ticket_json(facts.get(r["tracking_id"]), now)} for r in rows]


def cmd_tickets_list(config: Config, args: argparse.Namespace) -> int:
    tracker = _tracker(config)
    desk = tracker.desk()
    if desk is None:
        def issue(r: ExternalTicketView) -> str:
            return (f"#{r['issue']}  {r['issue_url']}" if r["issue"]
                    else "(not created yet: see `status`)")

        return _show_rows(
            args.json,
            _in_store(config, lambda c: _external_view(c, tracker, args.agency, args.status)),
            "no tickets",
            f"{'TRACKING':<10} {'AGENCY':<12} {'STATUS':<12} {'LAPOR':<16} "
            f"{'DUE (WITA)':<16} !  {tracker.kind.upper()} ISSUE",
            lambda r: f"{r['tracking_id']:<10} {r['agency']:<12} {r['status']:<12} "
                      # The row has no due_at_wita (the clock adds settle_by_wita only).
                      f"{r['lapor_status']:<16} {'-':<16} "
                      f"{'!' if r['overdue'] else ' '}  {issue(r)}")

    def line(r: TicketView) -> str:
        flag = "[RAHASIA] " if r["confidential"] else ""
        if args.agency and r["agency"] != args.agency:
            flag += f"[juga {args.agency}] "
        mark = "!" if r["overdue"] else " "
        due = (r["due_at_wita"] or "-")[:16].replace("T", " ")
        return (f"{r['id']:>5}  {r['tracking_id']:<10} {r['agency']:<12} {r['status']:<12} "
                f"{r['lapor_status']:<16} {due:<16} {mark}  "
                f"{flag}{safe(r['title'][:60], inline=True)}")

    rows = _in_store(config, lambda c: _desk_view(c, desk, args.agency, args.status))
    return _show_rows(
        args.json, rows, "no tickets",
        f"{'ID':>5}  {'TRACKING':<10} {'AGENCY':<12} {'STATUS':<12} {'LAPOR':<16} "
        f"{'DUE (WITA)':<16} !  TITLE", line,
        footer="! = overdue: no follow-up on LAPOR! by the due time"
        if any(r["overdue"] for r in rows) else None)


def _officers_work_in(tracker: TrackerPort) -> int:
    print(f"error: tickets are kept in {tracker.kind.capitalize()} (tracker.kind = "
          f"\"{tracker.kind}\"): officers work on the issues there, and their public notes "
          "and status changes go to LAPOR! by themselves. `tickets list` shows each "
          "complaint's issue and its URL.", file=sys.stderr)
    return EXIT_USAGE


def cmd_tickets_show(config: Config, args: argparse.Namespace) -> int:
    tracker = _tracker(config)
    desk = tracker.desk()
    if desk is None:
        return _officers_work_in(tracker)
    found = _in_store(config, lambda c: _desk_view(c, desk, None, None, args.id))
    ticket = found[0] if found else None
    if ticket is None:
        print(f"error: no ticket with id {args.id}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        _print_json(ticket)
        return EXIT_OK
    rep = ticket["reporter"]
    print(f"Ticket {ticket['id']}  (LAPOR! {ticket['tracking_id']})"
          + ("  [RAHASIA: restricted]" if ticket["confidential"] else ""))
    others = [a for a in ticket["agencies"] if a != ticket["agency"]]
    print(f"  Agency:    {ticket['agency']}"
          + (f"   (also disposed to: {', '.join(others)})" if others else ""))
    print(f"  Status:    {ticket['status']}  (LAPOR!: {ticket['lapor_status']})")
    print(f"  Category:  {ticket['category']}   Channel: {ticket['channel']}")
    print(f"  Submitted: {human_iso(ticket['submitted_at'])}")
    print(f"  Due:       {human_iso(ticket['due_at'])}"
          + ("   OVERDUE: no follow-up on LAPOR! yet" if ticket["overdue"] else ""))
    print(f"  Settle by: {human_iso(ticket['settle_by'])}   (Perpres 76/2013: 60 days)")
    for p in ticket["due_periods"]:
        fu = ("no follow-up yet" if p["first_follow_up_at"] is None else
              f"first follow-up {human_iso(p['first_follow_up_at'])} "
              + ("on time" if p["on_time"] else "LATE"))
        print(f"  Period {p['seq']}:  {p['start']} {human_iso(p['started_at'])} ({p['agency']}), "
              f"due {human_iso(p['due_at'])} ({p['due_source']}); {fu}")
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
    from connector.tracker.builtin import OfficerAction, TrackerRefusal
    from connector.tracker.sink import sink_for

    tracker = _tracker(config)
    desk, inline = tracker.desk(), sink_for(tracker).in_database
    if desk is None or inline is None:
        return _officers_work_in(tracker)
    if args.status is None and args.reply is None and args.note is None:
        print("error: give at least one of --status, --reply, --note", file=sys.stderr)
        return EXIT_USAGE
    if args.status is not None and args.status not in LOCAL_STATUSES:
        print(f"error: unknown status {args.status!r} (one of {', '.join(LOCAL_STATUSES)})",
              file=sys.stderr)
        return EXIT_USAGE
    holder = MappingHolder(config.mappings_dir)
    try:
        mappings = holder.load_initial()
    except ConfigError as exc:
        mappings = None
        print(f"warning: {exc}\nthe change is recorded; the daemon sends it once the mapping "
              "is valid", file=sys.stderr)
    outbound = mappings.outbound.get(args.status or "") if mappings is not None else None
    if outbound is not None and outbound.requires_reply and not args.reply:
        print(f"error: status {args.status} needs a public reply in the officer's own words "
              "(--reply TEXT): LAPOR!'s admins reject a template alone (statuses.toml: "
              "requires_reply)", file=sys.stderr)
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
        change = _in_store(config, tx)
    except TrackerRefusal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"ticket {args.id} updated" + (" (queued for LAPOR!)" if change else ""))
    return EXIT_OK


def cmd_mappings_check(config: Config, args: argparse.Namespace) -> int:
    mappings = _mappings_or_say_why(config)
    if mappings is None:
        return EXIT_FAIL
    if args.online:
        from connector.runtime import make_client

        async def units() -> list[Unit]:
            async with make_client(config) as client:
                return await client.units()

        known = {u.id: u for u in asyncio.run(units())}
        problems = _redmine_online(config, mappings)
        for i, agency in enumerate(mappings.agencies, start=1):
            for unit in agency.lapor_unit_ids:
                found = known.get(unit)
                if found is None:
                    problems.append(f"agencies.toml: agency[{i}] {agency.code}: lapor_unit_ids: "
                                    f"unit {unit} does not exist on LAPOR!")
                elif not found.active:
                    problems.append(f"agencies.toml: agency[{i}] {agency.code}: lapor_unit_ids: "
                                    f"unit {unit} is not active on LAPOR!")
        if problems:
            for line in problems:
                print(line, file=sys.stderr)
            return EXIT_FAIL
    if config.settings.tracker.kind == "redmine" and not args.online:
        problems = _redmine_offline(config, mappings)
        if problems:
            for line in problems:
                print(line, file=sys.stderr)
            return EXIT_FAIL
    print(f"mappings OK (version {mappings.version}, {len(mappings.agencies)} agencies, "
          f"{len(mappings.unit_to_agency)} units"
          + (", redmine.toml" if config.settings.tracker.kind == "redmine" else "") + ")")
    return EXIT_OK


def _redmine_projects(config: Config, mappings: Mappings) -> dict[str, str]:
    projects = {f"agency {a.code}": a.redmine_project for a in mappings.agencies
                if a.redmine_project}
    projects["settings.toml: tracker.redmine.project"] = config.settings.tracker.redmine.project
    return projects


def _redmine_offline(config: Config, mappings: Mappings) -> list[str]:
    """redmine.toml and the agencies' project identifiers (tracker.kind = "redmine")."""
    from connector.tracker import redmine_mapping

    problems: list[str] = []
    try:
        redmine_mapping.load(config.mappings_dir)
    except MappingError as exc:
        problems += exc.problems
    redmine_mapping.check_projects(_redmine_projects(config, mappings), problems)
    return problems


def _redmine_online(config: Config, mappings: Mappings) -> list[str]:
    """Also what only Redmine can tell: names, the custom field, the projects exist."""
    if config.settings.tracker.kind != "redmine":
        return []
    problems = _redmine_offline(config, mappings)
    if problems:
        return problems
    from connector.settings import load_redmine_key
    from connector.tracker import redmine_mapping
    from connector.tracker.redmine_api import RedmineClient

    r = config.settings.tracker.redmine
    mapping = redmine_mapping.load(config.mappings_dir)

    async def check() -> list[str]:
        async with RedmineClient(r.url, load_redmine_key(),
                                 tracking_field_id=r.tracking_field_id) as client:
            return await redmine_mapping.check_online(mapping, client,
                                                      _redmine_projects(config, mappings))

    return asyncio.run(check())


def cmd_mappings_suggest(config: Config, args: argparse.Namespace) -> int:
    from connector.runtime import make_client

    try:
        existing = load_mappings(config.mappings_dir)
    except MappingError:
        existing = None

    async def units() -> list[Unit]:
        async with make_client(config) as client:
            return await client.units()

    instansi = config.settings.lapor.instansi_id
    found = [(u.id, u.name) for u in asyncio.run(units()) if u.instansi_id == instansi and u.active]
    text = suggest_mappings(found, existing)
    print(text if text else "# every active unit of the instansi is already mapped")
    return EXIT_OK


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from connector.cli_format import render_status
    from connector.status import report

    tracker = _tracker(config)
    rep = _in_store(config, lambda c: report(c, config, tracker, utcnow()))
    if args.json:
        _print_json(rep.as_dict())
    else:
        print(render_status(rep))
    return EXIT_OK if rep.healthy else EXIT_FAIL


def cmd_quarantine_list(config: Config, args: argparse.Namespace) -> int:
    from connector.store import state

    return _show_rows(
        args.json, _in_store(config, state.list_quarantine), "quarantine is empty",
        f"{'TRACKING':<12} {'REASON':<18} {'TRIES':>5}  {'SINCE':<25} DETAIL",
        lambda r: f"{r['tracking_id']:<12} {r['reason']:<18} {r['attempts']:>5}  "
                  f"{r['first_seen']:<25} {safe(r['detail'], inline=True)}")


def cmd_quarantine_retry(config: Config, args: argparse.Namespace) -> int:
    from connector.store import state

    n = _in_store(config, lambda c: state.request_retry(c, args.id))
    if args.id and not n:
        print(f"error: {args.id} is not in quarantine", file=sys.stderr)
        return EXIT_FAIL
    print(f"{n} record(s) will be retried on the next pull")
    return EXIT_OK


def cmd_outbox_list(config: Config, args: argparse.Namespace) -> int:
    from connector.store import state

    return _show_rows(
        args.json, _in_store(config, lambda c: state.list_outbox(c, args.state)),
        "outbox is empty",
        f"{'ID':>5}  {'TRACKING':<10} {'STATUS':<9} {'STATE':<8} {'TRIES':>5}  ERROR",
        lambda r: f"{r['id']:>5}  {r['tracking_id']:<10} {r['lapor_status']:<9} "
                  f"{r['state']:<8} {r['attempts']:>5}  "
                  f"{safe(r['last_error'] or '', inline=True)}"
                  + (f"  (dismissed: {safe(r['dismiss_reason'], inline=True)})"
                     if r["dismiss_reason"] else ""))


def cmd_outbox_retry(config: Config, args: argparse.Namespace) -> int:
    from connector.store import state

    n = _in_store(config, lambda c: state.retry_failed(c, args.id, utcnow()))
    if args.id is not None and not n:
        print(f"error: outbox entry {args.id} is not failed (or does not exist)", file=sys.stderr)
        return EXIT_FAIL
    print(f"{n} follow-up(s) queued again; the same Idempotency-Key is reused")
    return EXIT_OK


def cmd_intents_retry(config: Config, args: argparse.Namespace) -> int:
    from connector.store import intents

    n = _in_store(config, lambda c: intents.retry(c, args.id, utcnow()))
    if args.id is not None and not n:
        print(f"error: tracker change {args.id} is not failed (or does not exist)",
              file=sys.stderr)
        return EXIT_FAIL
    print(f"{n} tracker change(s) queued again")
    return EXIT_OK


def cmd_report(config: Config, args: argparse.Namespace) -> int:
    from connector import report
    from connector.store import followups

    mappings = _mappings_or_say_why(config)
    if mappings is None:
        return EXIT_USAGE
    now = utcnow()
    first, last = report.current_month(now)
    date_from, date_to = args.date_from or first, args.date_to or last
    if date_from > date_to:
        print(f"error: --from {date_from} is after --to {date_to}", file=sys.stderr)
        return EXIT_USAGE
    start, end = report.bounds(date_from, date_to)
    facts = _in_store(config, lambda c: followups.received_between(c, start, end))
    if args.agency and mappings.agency(args.agency) is None and not any(
            f.first_response().agency == args.agency for f in facts):
        print(f"error: --agency: unknown agency {args.agency!r} (see agencies.toml)",
              file=sys.stderr)
        return EXIT_USAGE
    text = report.render(report.build(facts, mappings, date_from, date_to, now, args.agency),
                         args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"report written to {args.out}")
    return EXIT_OK


def cmd_outbox_dismiss(config: Config, args: argparse.Namespace) -> int:
    from connector.store import state

    reason = args.reason.strip()
    if not reason:
        print("error: --reason must not be empty", file=sys.stderr)
        return EXIT_USAGE
    n = _in_store(config, lambda c: state.dismiss(c, args.id, reason, utcnow()))
    if not n:
        print(f"error: outbox entry {args.id} is not failed (or does not exist)", file=sys.stderr)
        return EXIT_FAIL
    print(f"outbox entry {args.id} dismissed; it will not be sent")
    return EXIT_OK


def cmd_sandbox(config: Config | None, args: argparse.Namespace) -> int:
    from connector.sandbox.serve import serve

    return serve(args)


def cmd_db_upgrade(config: Config, args: argparse.Namespace) -> int:
    store = _store(config, lock=True)  # never migrate under a running connector
    try:
        current, head = store.revision()
    finally:
        store.close()
    print(f"database at revision {current} (head {head}): {store.backend.describe()}")
    return EXIT_OK


def cmd_db_backup(config: Config, args: argparse.Namespace) -> int:
    from connector.store import backup
    from connector.store.base import backend_for
    from connector.store.sqlite import SqliteBackend

    be = backend_for(config.database_url)
    if not isinstance(be, SqliteBackend):
        # Not pretending: the connector does not dump a server; exit 1 so that a timer
        # never counts this as a backup.
        dump, restore = backup.pg_dump_command(config.database_url, args.path)
        print(f"error: {be.describe()} is PostgreSQL: back it up with pg_dump (a consistent "
              f"snapshot while the daemon runs), e.g.\n  {dump}\nand restore with the "
              f"daemon stopped:\n  {restore}\n(see README: Backup and restore)",
              file=sys.stderr)
        return EXIT_FAIL
    if be.path is None:
        print("error: storage.url is an in-memory database: nothing to back up",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        made = backup.sqlite_backup(be.path, backup.target(args.path, utcnow()),
                                    config.settings.storage.busy_timeout_s)
        gone = backup.prune(args.path, args.keep) if args.path.is_dir() and args.keep else []
    except OSError as exc:
        print(f"error: db backup: {exc.strerror or exc} ({exc.filename or args.path})",
              file=sys.stderr)
        return EXIT_FAIL
    print(f"backup ok: {made.path} ({made.size} bytes, schema revision {made.revision}, "
          f"integrity ok)" + (f"; removed {len(gone)} older backup(s)" if gone else ""))
    return EXIT_OK


def cmd_reliability(config: Config, args: argparse.Namespace) -> int:
    from connector.reliability import main as reliability_main

    return reliability_main(config, args)


def cmd_web(config: Config, args: argparse.Namespace) -> int:
    from connector.desk.serve import serve

    return serve(config, _tracker(config))


def _password_stdin() -> str:
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def _users(config: Config, fn: Callable[[Connection], T]) -> T:
    """Account commands open the store like the desk: migrated, never locked."""
    from connector.desk.serve import open_desk_store

    store = open_desk_store(config)
    try:
        return store.run(fn)
    finally:
        store.close()


def cmd_users_add(config: Config, args: argparse.Namespace) -> int:
    from connector.desk import accounts

    mappings = _mappings_or_say_why(config)
    if mappings is None:
        return EXIT_USAGE
    password = _password_stdin()
    try:
        role = accounts.validate(args.login, args.name, args.role, args.agency, args.email,
                                 {a.code for a in mappings.agencies})
        new_hash = accounts.hash_new(password)
        # The operator chose this password for someone: they change it at first login.
        user = _users(config, lambda c: accounts.add_user(
            c, args.login, args.name, role, args.agency if role != "admin" else [],
            args.email, new_hash, utcnow(), must_change=True))
    except accounts.AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"user {user.login} added ({user.role}"
          + (f", {', '.join(user.agencies)}" if user.agencies else "") + ")")
    return EXIT_OK


def cmd_users_list(config: Config, args: argparse.Namespace) -> int:
    from connector.desk import accounts

    users = _users(config, accounts.list_users)
    if args.json:
        _print_json([{"login": u.login, "name": u.name, "role": str(u.role),
                      "agencies": list(u.agencies), "email": u.email, "disabled": u.disabled,
                      "must_change_password": u.must_change} for u in users])
        return EXIT_OK
    if not users:
        print("no users (add one: lapor-connector users add LOGIN ...)")
        return EXIT_OK
    print(f"{'LOGIN':<20} {'ROLE':<9} {'STATE':<9} {'AGENCIES':<24} NAME")
    for u in users:
        print(f"{u.login:<20} {u.role:<9} {'disabled' if u.disabled else 'active':<9} "
              f"{','.join(u.agencies) or '*':<24} {safe(u.name, inline=True)}")
    return EXIT_OK


def _users_change(config: Config, login: str, fn: Callable[[Connection], object],
                  done: str) -> int:
    from connector.desk import accounts

    try:
        _users(config, fn)
    except accounts.AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"user {login} {done}")
    return EXIT_OK


def cmd_users_disable(config: Config, args: argparse.Namespace) -> int:
    from connector.desk import accounts

    return _users_change(config, args.login, lambda c: accounts.set_disabled(
        c, args.login, True, utcnow()), "disabled; every session of it ended")


def cmd_users_enable(config: Config, args: argparse.Namespace) -> int:
    from connector.desk import accounts

    return _users_change(config, args.login, lambda c: accounts.set_disabled(
        c, args.login, False, utcnow()), "enabled")


def cmd_users_password(config: Config, args: argparse.Namespace) -> int:
    from connector.desk import accounts

    try:
        new_hash = accounts.hash_new(_password_stdin())
    except accounts.AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _users_change(config, args.login, lambda c: accounts.set_password(
        c, args.login, new_hash, utcnow(), must_change=True),
        "has a new password (to be changed at the next login); every session of it ended")


HANDLERS: dict[tuple[str, str | None], Callable[..., int]] = {
    ("run", None): cmd_run,
    ("sync", None): cmd_sync,
    ("tickets", "list"): cmd_tickets_list,
    ("tickets", "show"): cmd_tickets_show,
    ("tickets", "update"): cmd_tickets_update,
    ("mappings", "check"): cmd_mappings_check,
    ("mappings", "suggest"): cmd_mappings_suggest,
    ("status", None): cmd_status,
    ("quarantine", "list"): cmd_quarantine_list,
    ("quarantine", "retry"): cmd_quarantine_retry,
    ("outbox", "list"): cmd_outbox_list,
    ("outbox", "retry"): cmd_outbox_retry,
    ("intents", "retry"): cmd_intents_retry,
    ("report", None): cmd_report,
    ("outbox", "dismiss"): cmd_outbox_dismiss,
    ("sandbox", None): cmd_sandbox,
    ("db", "upgrade"): cmd_db_upgrade,
    ("db", "backup"): cmd_db_backup,
    ("reliability", None): cmd_reliability,
    ("web", None): cmd_web,
    ("users", "add"): cmd_users_add,
    ("users", "list"): cmd_users_list,
    ("users", "disable"): cmd_users_disable,
    ("users", "enable"): cmd_users_enable,
    ("users", "password"): cmd_users_password,
}
HANDLERS.update(notify_commands.HANDLERS)
