"""``db backup``: a consistent copy of the SQLite database while the daemon runs, and for
PostgreSQL the ``pg_dump`` command to use (the connector does not dump a server itself).

SQLite's online backup API copies the pages under one read transaction: in WAL mode the
daemon goes on writing meanwhile, and the copy is the database as of one commit. The
copy is written beside its final name, checked (``PRAGMA integrity_check``), made a
single self-contained file (rollback journal, not WAL) and only then renamed into place,
so a failed or interrupted backup never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from connector.errors import StorageError

NAME_FORMAT = "connector-%Y%m%dT%H%M%SZ.db"  # a backup named by its time, in a folder
NAME_GLOB = "connector-*.db"


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    revision: str | None


def target(path: Path, now: datetime) -> Path:
    """An existing folder gets a file named by the time (UTC); anything else is the file."""
    return path / now.strftime(NAME_FORMAT) if path.is_dir() else path


def sqlite_backup(source: Path, dest: Path, busy_timeout_s: float = 10.0) -> Backup:
    if not source.is_file():
        raise StorageError(f"db backup: no database at {source}")
    if dest.resolve() == source.resolve():
        raise StorageError("db backup: the backup cannot be the database itself")
    tmp = dest.with_name(dest.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    # Never world-readable, not even for a moment: it holds complaints and reporters.
    os.close(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        src = sqlite3.connect(source, timeout=busy_timeout_s)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
                check = [r[0] for r in dst.execute("PRAGMA integrity_check")]
                if check != ["ok"]:
                    raise StorageError(
                        f"db backup: the copy failed its integrity check: {'; '.join(check)[:300]}"
                    )
                dst.execute("PRAGMA journal_mode=DELETE")
                revision = _revision(dst)
            finally:
                dst.close()
        finally:
            src.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except sqlite3.Error as exc:
        raise StorageError(f"db backup: {exc.__class__.__name__}: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return Backup(dest, dest.stat().st_size, revision)


def _revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def prune(folder: Path, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest backups named by time in ``folder``."""
    found = sorted(folder.glob(NAME_GLOB))  # the names sort by time
    gone = found[:-keep] if keep > 0 else []
    for p in gone:
        p.unlink()
    return gone


def pg_dump_command(url: str, dest: Path) -> list[str]:
    """The commands to back up (and restore) a PostgreSQL database, without its password
    (pg_dump takes it from ~/.pgpass or PGPASSWORD)."""
    u = make_url(url).set(drivername="postgresql", password=None)
    plain = u.render_as_string(hide_password=False)
    return [
        f"pg_dump --format=custom --file={shlex.quote(str(dest))} {shlex.quote(plain)}",
        f"pg_restore --clean --if-exists --no-owner --dbname={shlex.quote(plain)} "
        f"{shlex.quote(str(dest))}",
    ]
