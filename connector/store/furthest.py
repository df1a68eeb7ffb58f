"""The furthest watermark this connector ever committed, kept outside the database.

A database restored from a backup has the watermark of the backup: the next pulls re-read
LAPOR! from there, which is right, but the database itself cannot tell that it went back.
This small file can: the pull cycle writes it after each success, and ``status`` compares.

The file names the database's nonce beside the watermark, so that a database started
afresh on purpose (a new nonce) is never taken for a restored one. It holds no complaint
data. Every failure here is soft: a file that is missing, unreadable or not writable
only means that the comparison is not made.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from connector.store.base import backend_for
from connector.store.sqlite import SqliteBackend
from connector.timeutil import as_utc

NAME = "furthest-watermark.json"  # beside the attachments folder (PostgreSQL)


@dataclass(frozen=True)
class Furthest:
    watermark: datetime
    nonce: str  # the database's nonce when the watermark was committed


def marker_path(database_url: str, attachments_dir: Path) -> Path | None:
    """Beside the SQLite database file (as its ``.created`` marker); for PostgreSQL,
    beside the attachments folder: the connector's own local state, on this machine."""
    backend = backend_for(database_url)
    if isinstance(backend, SqliteBackend):
        if backend.path is None:
            return None  # in memory: nothing to restore
        real = backend.path.resolve()
        return real.with_name(real.name + ".watermark")
    return attachments_dir.resolve().parent / NAME


def read(path: Path | None) -> Furthest | None:
    if path is None:
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Furthest(as_utc(datetime.fromisoformat(raw["watermark"])), str(raw["nonce"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: no comparison, never a failure


def advanced(known: Furthest | None, watermark: datetime, nonce: str) -> bool:
    """Whether ``watermark`` (of the database with ``nonce``) is news for the file."""
    return known is None or known.nonce != nonce or watermark > known.watermark


def behind(known: Furthest | None, watermark: datetime | None, nonce: str | None) -> bool:
    """The database's watermark is behind the furthest this same database ever had."""
    return (
        known is not None
        and nonce == known.nonce
        and (watermark is None or watermark < known.watermark)
    )


def write(path: Path, furthest: Furthest) -> None:
    """Whole or not at all: a crash mid-write leaves the old file (or none)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # made before attachments
    tmp = path.with_name(path.name + ".tmp")
    body = (
        json.dumps({"watermark": as_utc(furthest.watermark).isoformat(), "nonce": furthest.nonce})
        + "\n"
    )
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk keeps no half-written file
        raise
