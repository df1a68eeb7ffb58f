"""The argument parser of every command (``--help`` and usage errors, exit 2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

from connector import __version__
from connector.cli import notify as notify_commands
from connector.cli.common import EXIT_USAGE
from connector.domain import LocalStatus, OutboxState


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors exit 2 with a clear line
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    # --config is accepted before or after the command; SUPPRESS keeps a subcommand's
    # default from overwriting a value given before it.
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="settings file (default: $LAPOR_CONNECTOR_CONFIG, else "
        "./settings.toml if it exists, else "
        "/etc/lapor-connector/settings.toml)",
    )
    p = _Parser(
        prog="lapor-connector", parents=[common], description="Mahulu SP4N-LAPOR! connector"
    )
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in GROUPS:
        group(sub, common)
    return p


def _daemon(sub: Any, common: argparse.ArgumentParser) -> None:
    sub.add_parser("run", parents=[common], help="the daemon (same as python scheduler.py)")
    sy = sub.add_parser("sync", parents=[common], help="one pull and one push cycle, then exit")
    sy.add_argument(
        "--sweep",
        action="store_true",
        help="a reconciliation sweep over sync.sweep_window_s instead of the pull",
    )


def _tickets(sub: Any, common: argparse.ArgumentParser) -> None:
    t = sub.add_parser("tickets", parents=[common], help="local tickets (built-in tracker)")
    ts = t.add_subparsers(dest="action", required=True, parser_class=_Parser)
    tl = ts.add_parser("list", parents=[common])
    tl.add_argument("--json", action="store_true")
    tl.add_argument("--agency")
    tl.add_argument("--status", choices=tuple(LocalStatus))
    tsh = ts.add_parser("show", parents=[common])
    tsh.add_argument("id")
    tsh.add_argument("--json", action="store_true")
    tu = ts.add_parser("update", parents=[common])
    tu.add_argument("id")
    tu.add_argument("--status")
    tu.add_argument("--reply", help="public reply: goes to LAPOR! (max 5,000 characters)")
    tu.add_argument("--note", help="internal note: never leaves this system")
    tu.add_argument("--author", default="petugas")


def _mappings(sub: Any, common: argparse.ArgumentParser) -> None:
    mp = sub.add_parser("mappings", parents=[common], help="check or suggest mapping files")
    ms = mp.add_subparsers(dest="action", required=True, parser_class=_Parser)
    mc = ms.add_parser("check", parents=[common])
    mc.add_argument(
        "--online", action="store_true", help="also check unit ids against LAPOR!'s /unit-kerja"
    )
    ms.add_parser("suggest", parents=[common])


def _status(sub: Any, common: argparse.ArgumentParser) -> None:
    st = sub.add_parser("status", parents=[common], help="health report; exit 1 when degraded")
    st.add_argument("--json", action="store_true")


def _queues(sub: Any, common: argparse.ArgumentParser) -> None:
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
    od = os_.add_parser(
        "dismiss", parents=[common], help="accept a failed follow-up as final (it is never sent)"
    )
    od.add_argument("id", type=int)
    od.add_argument("--reason", required=True, help="why; kept and shown in `outbox list`")

    it = sub.add_parser(
        "intents", parents=[common], help="changes waiting for an external tracker (Redmine)"
    )
    its = it.add_subparsers(dest="action", required=True, parser_class=_Parser)
    itr = its.add_parser("retry", parents=[common], help="try refused changes again now")
    itr.add_argument("id", nargs="?", type=int)


def _sandbox(sub: Any, common: argparse.ArgumentParser) -> None:
    sb = sub.add_parser("sandbox", parents=[common], help="serve the LAPOR! sandbox on loopback")
    sb.add_argument("--port", type=int, default=8765)
    sb.add_argument("--seed", type=int)
    sb.add_argument("--complaints", type=int)
    sb.add_argument("--no-generator", action="store_true")
    sb.add_argument("--faults", help="JSON object of initial faults")


def _report(sub: Any, common: argparse.ArgumentParser) -> None:
    rp = sub.add_parser(
        "report",
        parents=[common],
        help="on-time follow-up per agency for complaints received in a period",
    )
    rp.add_argument(
        "--from",
        dest="date_from",
        type=_date,
        metavar="DATE",
        help="first WITA date (YYYY-MM-DD; default: first of this month)",
    )
    rp.add_argument(
        "--to",
        dest="date_to",
        type=_date,
        metavar="DATE",
        help="last WITA date, inclusive (default: end of this month)",
    )
    rp.add_argument("--agency", help="one agency code (default: every agency)")
    rp.add_argument("--format", choices=("table", "csv", "json", "html"), default="table")
    rp.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")


def _db(sub: Any, common: argparse.ArgumentParser) -> None:
    db = sub.add_parser("db", parents=[common], help="database maintenance")
    dbs = db.add_subparsers(dest="action", required=True, parser_class=_Parser)
    dbs.add_parser("upgrade", parents=[common])
    dbb = dbs.add_parser(
        "backup",
        parents=[common],
        help="a consistent copy of the SQLite database, also while the "
        "daemon runs (PostgreSQL: prints the pg_dump command)",
    )
    dbb.add_argument(
        "path", type=Path, help="the backup file, or a folder: then connector-<UTC time>.db in it"
    )
    dbb.add_argument(
        "--keep",
        type=int,
        default=0,
        metavar="N",
        help="with a folder: keep only the N newest backups in it",
    )


def _desk(sub: Any, common: argparse.ArgumentParser) -> None:
    w = sub.add_parser(
        "web", parents=[common], help="serve the officer's desk on web.listen (beside the daemon)"
    )
    w.set_defaults(action=None)

    us = sub.add_parser("users", parents=[common], help="accounts of the officer's desk")
    uss = us.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ua = uss.add_parser("add", parents=[common])
    ua.add_argument("login")
    ua.add_argument("--name", required=True)
    ua.add_argument("--role", required=True, help="petugas, pimpinan or admin")
    ua.add_argument(
        "--agency",
        action="append",
        default=[],
        metavar="CODE",
        help="an agency of agencies.toml (repeat for several)",
    )
    ua.add_argument("--email")
    ua.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from the first line of standard input",
    )
    ul = uss.add_parser("list", parents=[common])
    ul.add_argument("--json", action="store_true")
    for name in ("disable", "enable"):
        uss.add_parser(name, parents=[common]).add_argument("login")
    up = uss.add_parser("password", parents=[common])
    up.add_argument("login")
    up.add_argument("--password-stdin", action="store_true", required=True)
    notify_commands.add_parsers(sub, uss, common)  # notify test; users notify


def _reliability(sub: Any, common: argparse.ArgumentParser) -> None:
    rel = sub.add_parser(
        "reliability",
        parents=[common],
        help="run the crash and fault campaign and print the figures",
    )
    rel.add_argument("--kills", type=int, default=25)
    rel.add_argument("--complaints", type=int, default=1500)
    rel.add_argument("--changes", type=int, default=30)
    rel.add_argument("--seed", type=int, default=6411)


# The command groups, in the order `--help` lists them.
GROUPS: tuple[Callable[[Any, argparse.ArgumentParser], None], ...] = (
    _daemon,
    _tickets,
    _mappings,
    _status,
    _queues,
    _sandbox,
    _report,
    _db,
    _desk,
    _reliability,
)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
