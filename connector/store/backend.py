"""The ``Backend`` ABC: how one kind of database is opened and locked.

Its own module so ``sqlite.py`` and ``postgres.py`` depend on it alone, and
``base.py`` (which picks a backend by URL) imports them without a cycle.
"""

from __future__ import annotations

import abc

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError


class Backend(abc.ABC):
    """How one kind of database is opened and locked."""

    name: str

    def __init__(self, url: str, busy_timeout_s: float = 10.0):
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        self.lease_s = 60.0  # PostgreSQL: how long the instance lease lasts unrenewed

    @abc.abstractmethod
    def create_engine(self) -> Engine: ...

    @abc.abstractmethod
    def acquire_instance_lock(self, engine: Engine) -> None:
        """Refuse (``InstanceLocked``) when another connector runs on this storage."""

    @abc.abstractmethod
    def release_instance_lock(self) -> None: ...

    def check_schema_missing(self) -> None:
        """Called when the database holds no schema, before one is created: raise
        ``StorageError`` when this database held data before (it was deleted)."""
        return None

    def schema_created(self) -> None:  # noqa: B027 - optional hook
        """Called once a new database got its schema (to recognise its loss later)."""

    def fence(self, conn: Connection) -> None:
        """Inside every transaction, just before it commits: raise ``LeaseLost`` when this
        process holds the instance lock no more (a no-op where the lock cannot be lost)."""
        return None

    def health_problem(self, engine: Engine) -> str | None:
        """A periodic check of the storage itself (SQLite: the file's identity and
        ``quick_check``); a message when it cannot be trusted any more."""
        return None

    def is_busy(self, exc: DBAPIError) -> bool:
        """Whether an error is transient (locked, restarted) rather than a real fault."""
        return isinstance(exc, OperationalError)

    def is_full(self, exc: DBAPIError) -> bool:
        """Whether an error says the database's disk (or its size limit) is full."""
        # PostgreSQL's SQLSTATE disk_full (ENOSPC while extending a file or the WAL).
        return getattr(getattr(exc, "orig", None), "sqlstate", None) == "53100"

    def describe(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)
