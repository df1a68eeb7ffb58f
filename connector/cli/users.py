"""The officer's desk: ``web`` and the ``users`` accounts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from connector.cli.common import EXIT_OK, EXIT_USAGE, mappings_or_say_why, print_json, tracker_of
from connector.settings import Config
from connector.term import safe
from connector.timeutil import utcnow

if TYPE_CHECKING:
    from sqlalchemy import Connection

T = TypeVar("T")


def cmd_web(config: Config, args: argparse.Namespace) -> int:
    from connector.desk.serve import serve

    return serve(config, tracker_of(config))


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

    mappings = mappings_or_say_why(config)
    if mappings is None:
        return EXIT_USAGE
    password = _password_stdin()
    try:
        role = accounts.validate(
            args.login,
            args.name,
            args.role,
            args.agency,
            args.email,
            {a.code for a in mappings.agencies},
        )
        new_hash = accounts.hash_new(password)
        # The operator chose this password for someone: they change it at first login.
        user = _users(
            config,
            lambda c: accounts.add_user(
                c,
                args.login,
                args.name,
                role,
                args.agency if role != "admin" else [],
                args.email,
                new_hash,
                utcnow(),
                must_change=True,
            ),
        )
    except accounts.AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(
        f"user {user.login} added ({user.role}"
        + (f", {', '.join(user.agencies)}" if user.agencies else "")
        + ")"
    )
    return EXIT_OK


def cmd_users_list(config: Config, args: argparse.Namespace) -> int:
    from connector.desk import accounts

    users = _users(config, accounts.list_users)
    if args.json:
        print_json(
            [
                {
                    "login": u.login,
                    "name": u.name,
                    "role": str(u.role),
                    "agencies": list(u.agencies),
                    "email": u.email,
                    "disabled": u.disabled,
                    "must_change_password": u.must_change,
                }
                for u in users
            ]
        )
        return EXIT_OK
    if not users:
        print("no users (add one: lapor-connector users add LOGIN ...)")
        return EXIT_OK
    print(f"{'LOGIN':<20} {'ROLE':<9} {'STATE':<9} {'AGENCIES':<24} NAME")
    for u in users:
        print(
            f"{u.login:<20} {u.role:<9} {'disabled' if u.disabled else 'active':<9} "
            f"{','.join(u.agencies) or '*':<24} {safe(u.name, inline=True)}"
        )
    return EXIT_OK


def _users_change(config: Config, login: str, fn: Callable[[Connection], object], done: str) -> int:
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

    return _users_change(
        config,
        args.login,
        lambda c: accounts.set_disabled(c, args.login, True, utcnow()),
        "disabled; every session of it ended",
    )


def cmd_users_enable(config: Config, args: argparse.Namespace) -> int:
    from connector.desk import accounts

    return _users_change(
        config,
        args.login,
        lambda c: accounts.set_disabled(c, args.login, False, utcnow()),
        "enabled",
    )


def cmd_users_password(config: Config, args: argparse.Namespace) -> int:
    from connector.desk import accounts

    try:
        new_hash = accounts.hash_new(_password_stdin())
    except accounts.AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _users_change(
        config,
        args.login,
        lambda c: accounts.set_password(c, args.login, new_hash, utcnow(), must_change=True),
        "has a new password (to be changed at the next login); every session of it ended",
    )
