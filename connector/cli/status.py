"""``status`` (health, exit 1 when degraded) and ``report`` (on-time follow-up)."""

from __future__ import annotations

import argparse
import sys

from connector.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    in_store,
    mappings_or_say_why,
    print_json,
    tracker_of,
)
from connector.settings import Config
from connector.timeutil import utcnow


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from connector.cli_format import render_status
    from connector.status import report

    tracker = tracker_of(config)
    rep = in_store(config, lambda c: report(c, config, tracker, utcnow()))
    if args.json:
        print_json(rep.as_dict())
    else:
        print(render_status(rep))
    return EXIT_OK if rep.healthy else EXIT_FAIL


def cmd_report(config: Config, args: argparse.Namespace) -> int:
    from connector import report
    from connector.store import followups

    mappings = mappings_or_say_why(config)
    if mappings is None:
        return EXIT_USAGE
    now = utcnow()
    first, last = report.current_month(now)
    date_from, date_to = args.date_from or first, args.date_to or last
    if date_from > date_to:
        print(f"error: --from {date_from} is after --to {date_to}", file=sys.stderr)
        return EXIT_USAGE
    start, end = report.bounds(date_from, date_to)
    facts = in_store(config, lambda c: followups.received_between(c, start, end))
    if (
        args.agency
        and mappings.agency(args.agency) is None
        and not any(f.first_response().agency == args.agency for f in facts)
    ):
        print(
            f"error: --agency: unknown agency {args.agency!r} (see agencies.toml)", file=sys.stderr
        )
        return EXIT_USAGE
    text = report.render(
        report.build(facts, mappings, date_from, date_to, now, args.agency), args.format
    )
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"report written to {args.out}")
    return EXIT_OK
