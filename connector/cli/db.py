"""``db upgrade`` and ``db backup PATH [--keep N]``."""

from __future__ import annotations

import argparse
import sys

from connector.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, store_of
from connector.settings import Config
from connector.timeutil import utcnow


def cmd_db_upgrade(config: Config, args: argparse.Namespace) -> int:
    store = store_of(config, lock=True)  # never migrate under a running connector
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
        print(
            f"error: {be.describe()} is PostgreSQL: back it up with pg_dump (a consistent "
            f"snapshot while the daemon runs), e.g.\n  {dump}\nand restore with the "
            f"daemon stopped:\n  {restore}\n(see README: Backup and restore)",
            file=sys.stderr,
        )
        return EXIT_FAIL
    if be.path is None:
        print("error: storage.url is an in-memory database: nothing to back up", file=sys.stderr)
        return EXIT_USAGE
    try:
        made = backup.sqlite_backup(
            be.path, backup.target(args.path, utcnow()), config.settings.storage.busy_timeout_s
        )
        gone = backup.prune(args.path, args.keep) if args.path.is_dir() and args.keep else []
    except OSError as exc:
        print(
            f"error: db backup: {exc.strerror or exc} ({exc.filename or args.path})",
            file=sys.stderr,
        )
        return EXIT_FAIL
    print(
        f"backup ok: {made.path} ({made.size} bytes, schema revision {made.revision}, "
        f"integrity ok)" + (f"; removed {len(gone)} older backup(s)" if gone else "")
    )
    return EXIT_OK
