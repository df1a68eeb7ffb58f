"""What waits: ``quarantine list|retry``, ``outbox list|retry|dismiss`` and
``intents retry``."""

from __future__ import annotations

import argparse
import sys

from connector.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, in_store, show_rows
from connector.settings import Config
from connector.term import safe
from connector.timeutil import utcnow


def cmd_quarantine_list(config: Config, args: argparse.Namespace) -> int:
    from connector.store import state

    return show_rows(
        args.json,
        in_store(config, state.list_quarantine),
        "quarantine is empty",
        f"{'TRACKING':<12} {'REASON':<18} {'TRIES':>5}  {'SINCE':<25} DETAIL",
        lambda r: (
            f"{r['tracking_id']:<12} {r['reason']:<18} {r['attempts']:>5}  "
            f"{r['first_seen']:<25} {safe(r['detail'], inline=True)}"
        ),
    )


def cmd_quarantine_retry(config: Config, args: argparse.Namespace) -> int:
    from connector.store import state

    n = in_store(config, lambda c: state.request_retry(c, args.id))
    if args.id and not n:
        print(f"error: {args.id} is not in quarantine", file=sys.stderr)
        return EXIT_FAIL
    print(f"{n} record(s) will be retried on the next pull")
    return EXIT_OK


def cmd_outbox_list(config: Config, args: argparse.Namespace) -> int:
    from connector.store import state

    return show_rows(
        args.json,
        in_store(config, lambda c: state.list_outbox(c, args.state)),
        "outbox is empty",
        f"{'ID':>5}  {'TRACKING':<10} {'STATUS':<9} {'STATE':<8} {'TRIES':>5}  ERROR",
        lambda r: (
            f"{r['id']:>5}  {r['tracking_id']:<10} {r['lapor_status']:<9} "
            f"{r['state']:<8} {r['attempts']:>5}  "
            f"{safe(r['last_error'] or '', inline=True)}"
            + (
                f"  (dismissed: {safe(r['dismiss_reason'], inline=True)})"
                if r["dismiss_reason"]
                else ""
            )
        ),
    )


def cmd_outbox_retry(config: Config, args: argparse.Namespace) -> int:
    from connector.store import state

    n = in_store(config, lambda c: state.retry_failed(c, args.id, utcnow()))
    if args.id is not None and not n:
        print(f"error: outbox entry {args.id} is not failed (or does not exist)", file=sys.stderr)
        return EXIT_FAIL
    print(f"{n} follow-up(s) queued again; the same Idempotency-Key is reused")
    return EXIT_OK


def cmd_outbox_dismiss(config: Config, args: argparse.Namespace) -> int:
    from connector.store import state

    reason = args.reason.strip()
    if not reason:
        print("error: --reason must not be empty", file=sys.stderr)
        return EXIT_USAGE
    n = in_store(config, lambda c: state.dismiss(c, args.id, reason, utcnow()))
    if not n:
        print(f"error: outbox entry {args.id} is not failed (or does not exist)", file=sys.stderr)
        return EXIT_FAIL
    print(f"outbox entry {args.id} dismissed; it will not be sent")
    return EXIT_OK


def cmd_intents_retry(config: Config, args: argparse.Namespace) -> int:
    from connector.store import intents

    n = in_store(config, lambda c: intents.retry(c, args.id, utcnow()))
    if args.id is not None and not n:
        print(f"error: tracker change {args.id} is not failed (or does not exist)", file=sys.stderr)
        return EXIT_FAIL
    print(f"{n} tracker change(s) queued again")
    return EXIT_OK
