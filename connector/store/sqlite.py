"""SQLite backend: a file under ``var/``, WAL, busy timeout, mode 0600."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from connector.errors import InstanceLocked, StorageError
from connector.store.backend import Backend

READ_ONLY = "lapor_read_only"
SQLITE_FULL = 13  # "database or disk is full"


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, url: str, busy_timeout_s: float = 10.0):
        super().__init__(url, busy_timeout_s)
        db = make_url(url).database
        self.path = Path(db) if db and db != ":memory:" else None
        self._lock_fd: int | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened

    def create_engine(self) -> Engine:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file ourselves so it is never world-readable, not even for a moment.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            st = os.fstat(fd)
            self._identity = (st.st_dev, st.st_ino)
            os.close(fd)
            os.chmod(self.path, 0o600)
        # A small pool: connections (and their PRAGMAs) are reused across transactions;
        # check_same_thread is off: a pooled connection may serve another thread later.
        engine = create_engine(
            self.url,
            pool_size=4,
            max_overflow=4,
            pool_pre_ping=False,
            connect_args={"timeout": self.busy_timeout_s, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _: Any) -> None:
            # Manage transactions ourselves so writers take the lock at BEGIN (no upgrade
            # deadlocks between the daemon and `tickets update`).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # A read (Store.read: the desk's pages) never waits for the daemon's writes.
            read = conn.get_execution_options().get(READ_ONLY)
            conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

        return engine

    @property
    def marker(self) -> Path | None:
        """Beside the database once it has a schema: a database found empty while its
        marker is there was deleted (or lost), never new."""
        if self.path is None:
            return None
        real = self.path.resolve()
        return real.with_name(real.name + ".created")

    def check_schema_missing(self) -> None:
        marker = self.marker
        if marker is not None and marker.exists():
            raise StorageError(
                f"storage: the database {self.path} is empty, but {marker} shows a "
                "connector database was here: it was deleted or lost. Restore the last "
                "backup (README: Backup and restore); to start afresh on purpose, delete "
                f"{marker} first. Nothing was created"
            )

    def schema_created(self) -> None:
        marker = self.marker
        if marker is not None and not marker.exists():
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"a connector database lives beside this file\n")
            os.close(fd)

    def acquire_instance_lock(self, engine: Engine) -> None:
        if self.path is None:
            return
        # Beside the real file, whatever form the settings use (relative, ./, symlinks):
        # two spellings of one database must meet at one lock.
        real = self.path.resolve()
        lock_path = real.with_name(real.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstanceLocked(
                f"another connector is already running on {real} (lock {lock_path}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def release_instance_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def fence(self, conn: Connection) -> None:
        """Before every commit: the file is still the one this process opened. Deleted or
        replaced under a running connector, the commit would go into an unlinked file
        (and a restart would begin again from nothing)."""
        if self.path is None or self._identity is None:
            return
        problem = self.file_problem()
        if problem:
            raise StorageError(problem)

    def file_problem(self) -> str | None:
        if self.path is None or self._identity is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (
                f"storage: the database file {self.path} was deleted while the connector "
                "ran; stop it and restore the file from a backup"
            )
        except OSError as exc:
            return f"storage: cannot stat {self.path}: {exc.__class__.__name__}"
        if (st.st_dev, st.st_ino) != self._identity:
            return (
                f"storage: the database file {self.path} was replaced while the connector "
                "ran; restart it to use the new file"
            )
        return None

    def health_problem(self, engine: Engine) -> str | None:
        """The file's identity, then ``PRAGMA quick_check`` (corruption)."""
        problem = self.file_problem()
        if problem or self.path is None:
            return problem
        try:
            with engine.connect() as conn:
                rows = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
        except DBAPIError as exc:
            if self.is_busy(exc):
                return None  # a writer holds it: the next check will tell
            return (
                f"storage: the database file {self.path} cannot be read ({exc.__class__.__name__})"
            )
        if rows != ["ok"]:
            return (
                f"storage: the database file {self.path} is corrupt (quick_check: "
                f"{len(rows)} problem(s)); stop and restore it from a backup"
            )
        return None

    def is_full(self, exc: DBAPIError) -> bool:
        # SQLITE_FULL (13), in the low byte of an extended result code.
        code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF == SQLITE_FULL

    def is_busy(self, exc: DBAPIError) -> bool:
        text = str(getattr(exc, "orig", exc)).lower()
        return "locked" in text or "busy" in text
