"""SQLite backend: a file under ``var/``, WAL, busy timeout, mode 0600."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from connector.errors import InstanceLocked
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

    def create_engine(self) -> Engine:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file ourselves so it is never world-readable, not even for a moment.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            os.chmod(self.path, 0o600)
        # A small pool: connections (and their PRAGMAs) are reused across transactions;
        # check_same_thread is off: a pooled connection may serve another thread later.
        engine = create_engine(
            self.url, pool_size=4, max_overflow=4, pool_pre_ping=False,
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
                f"another connector is already running on {real} (lock {lock_path}); "
                "stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def release_instance_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def is_full(self, exc: DBAPIError) -> bool:
        # SQLITE_FULL (13), in the low byte of an extended result code.
        code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF == SQLITE_FULL

    def is_busy(self, exc: DBAPIError) -> bool:
        text = str(getattr(exc, "orig", exc)).lower()
        return "locked" in text or "busy" in text
