"""What every command group shares: exit codes, the store and tracker a command
opens, the checks before any command runs, and the table-or-JSON printer."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from connector.domain import LocalStatus
from connector.errors import ConfigError
from connector.settings import Config

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from connector.mappings import Mappings
    from connector.store import Store
    from connector.tracker.port import TrackerPort

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")
Row = TypeVar("Row", bound=Mapping[str, object])


def note_local_settings(config: Config, given: Path | None) -> None:
    """On a server, a ./settings.toml that wins over the service's file is worth a line."""
    import os

    from connector import settings

    if (
        given is None
        and not os.environ.get(settings.CONFIG_ENV)
        and config.path != settings.SYSTEM_CONFIG
        and settings.SYSTEM_CONFIG.exists()
    ):
        print(
            f"note: using {config.path}, not the service's {settings.SYSTEM_CONFIG} "
            "(run from another folder, or give --config)",
            file=sys.stderr,
        )


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
        raise ConfigError(
            f"{folder} belongs to {name}: run this command as that user "
            f"(sudo -u {name} lapor-connector ...), not as root, so that the "
            "database files keep their owner"
        )


def store_of(config: Config, lock: bool = False) -> Store:
    """The store alone: not ``runtime`` (the LAPOR! client, the sandbox), which a command
    that only reads the database must not pay for at start-up."""
    from connector.store.base import open_store

    s = config.settings.storage
    return open_store(
        config.database_url, busy_timeout_s=s.busy_timeout_s, lease_s=s.lease_s, lock=lock
    )


def in_store(config: Config, fn: Callable[[Connection], T]) -> T:
    """One transaction on the connector's database, for a command."""
    store = store_of(config)
    try:
        return store.run(fn)
    finally:
        store.close()


def tracker_of(config: Config | None = None) -> TrackerPort:
    """The configured tracker (no network until it is used)."""
    from connector.tracker.builtin import BuiltinTracker

    if config is None or config.settings.tracker.kind == "builtin":
        return BuiltinTracker(tuple(LocalStatus))
    from connector.mapping_reload import MappingHolder
    from connector.tracker.registry import open_tracker

    holder = MappingHolder(config.mappings_dir)
    with contextlib.suppress(ConfigError):  # the default project stands in
        holder.load_initial()
    return open_tracker(config, holder)


def mappings_or_say_why(config: Config) -> Mappings | None:
    """The mappings, or None after printing each problem (``file: entry: field: why``)."""
    from connector.mappings import MappingError
    from connector.mappings import load as load_mappings

    try:
        return load_mappings(config.mappings_dir)
    except MappingError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return None


def print_json(obj: object) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


def show_rows(
    as_json: bool,
    rows: Sequence[Row],
    empty: str,
    header: str,
    line: Callable[[Row], str],
    footer: str | None = None,
) -> int:
    """JSON for programs, or a table for a person (``footer`` under a table, when given)."""
    if as_json:
        print_json(rows)
    elif not rows:
        print(empty)
    else:
        print(header)
        for r in rows:
            print(line(r))
        if footer is not None:
            print(footer)
    return EXIT_OK
