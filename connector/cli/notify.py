"""``lapor-connector notify test ADDR`` and ``users notify LOGIN [--receive ...]``; wired
into the command line by ``add_parsers`` (``connector/cli/parser.py``) and its handler table."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update

from connector.errors import ConfigError
from connector.notify import core
from connector.settings import Config, NotifySettings, format_validation_error
from connector.store.schema import desk_users
from connector.timeutil import utcnow

ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


def add_parsers(sub: Any, users: Any, common: argparse.ArgumentParser) -> None:
    n = sub.add_parser("notify", parents=[common], help="e-mail notifications")
    ns = n.add_subparsers(dest="action", required=True, parser_class=type(common))
    t = ns.add_parser("test", parents=[common], help="send one test message; print the answer")
    t.add_argument("address")
    un = users.add_parser(
        "notify", parents=[common], help="show or choose the e-mail a user receives"
    )
    un.add_argument("login")
    un.add_argument(
        "--receive",
        metavar="LIST",
        help="comma-separated: "
        + ", ".join(str(e) for e in core.Event)
        + ' ("" for none, "default" for the default)',
    )


def _checked(config: Config) -> NotifySettings:
    """The [notify] settings as if enabled: what a test needs (exit 2 naming the key)."""
    cfg = config.settings.notify
    try:
        return NotifySettings.model_validate({**cfg.model_dump(by_alias=True), "enabled": True})
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(config.path, exc).replace(
                f"{config.path}: : ", f"{config.path}: notify: "
            )
        ) from None


def cmd_notify_test(config: Config, args: argparse.Namespace) -> int:
    if not ADDRESS.fullmatch(args.address):
        print(f"error: not an e-mail address: {args.address!r}", file=sys.stderr)
        return 2
    from connector.notify import send  # SMTP: only for the command that sends

    cfg = _checked(config)
    tested = Config(config.settings.model_copy(update={"notify": cfg}), config.path)
    password = send.password_for(tested)
    outcome = asyncio.run(send.send_test(tested, password, args.address, utcnow()))
    where = "sandbox" if cfg.sandbox else f"{cfg.smtp_host}:{cfg.port}"
    if outcome.kind == "sent":
        print(f"sent to {args.address} via {where}: {outcome.detail}")
        return 0
    print(
        f"error: not sent to {args.address} via {where} "
        f"({'refused' if outcome.kind == 'final' else 'failed'}): {outcome.detail}",
        file=sys.stderr,
    )
    return 1


def cmd_users_notify(config: Config, args: argparse.Namespace) -> int:
    from connector.desk.serve import open_desk_store

    choice: frozenset[core.Event] | None = None
    if args.receive is not None and args.receive != "default":
        try:
            choice = core.choice_from_text(args.receive)
        except ValueError as exc:
            print(f"error: --receive: {exc}", file=sys.stderr)
            return 2
    store = open_desk_store(config)
    try:

        def tx(conn: Any) -> Any:
            r = conn.execute(
                select(desk_users.c.id, desk_users.c.email, desk_users.c.notify).where(
                    desk_users.c.login == args.login
                )
            ).first()
            if r is None or args.receive is None:
                return r
            conn.execute(
                update(desk_users)
                .where(desk_users.c.id == r.id)
                .values(
                    notify=None if choice is None else core.format_choice(choice),
                    updated_at=utcnow(),
                )
            )
            return conn.execute(
                select(desk_users.c.id, desk_users.c.email, desk_users.c.notify).where(
                    desk_users.c.id == r.id
                )
            ).first()

        row = store.run(tx)
    finally:
        store.close()
    if row is None:
        print(f"error: no user with login {args.login!r}", file=sys.stderr)
        return 1
    chosen = sorted(core.parse_choice(row.notify))
    print(
        f"user {args.login} receives: {', '.join(chosen) or '(nothing)'}"
        + (" (the default)" if row.notify is None else "")
        + ("" if row.email else "; no e-mail address, so nothing is sent")
    )
    return 0
