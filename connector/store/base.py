"""The store: one database for the connector's state and the built-in tracker.

Backends differ only in how an engine is made and how a single instance is
enforced; everything else is portable SQLAlchemy Core. Each backend is one
module (``sqlite.py``, ``postgres.py``) behind the ``Backend`` ABC (``backend.py``,
kept apart so the backends never import this module back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from connector.errors import ConfigError, StorageBusy, StorageError
from connector.store.backend import Backend
from connector.store.postgres import PostgresBackend
from connector.store.sqlite import READ_ONLY, SqliteBackend

T = TypeVar("T")


def backend_for(url: str, busy_timeout_s: float = 10.0) -> Backend:
    try:
        driver = make_url(url).get_backend_name()
    except Exception:
        raise ConfigError(f"storage.url: not a database URL: {url!r}") from None
    if driver == "sqlite":
        return SqliteBackend(url, busy_timeout_s)
    if driver == "postgresql":
        return PostgresBackend(url, busy_timeout_s)
    raise ConfigError(f"storage.url: unsupported database {driver!r} (use sqlite or postgresql)")


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option(
        "script_location", str(resources.files("connector.store").joinpath("migrations"))
    )
    cfg.attributes["connection"] = connection
    return cfg


class Store:
    def __init__(self, url: str, *, busy_timeout_s: float = 10.0, lease_s: float = 60.0):
        self.backend = backend_for(url, busy_timeout_s)
        self.backend.lease_s = lease_s
        try:
            self.engine = self.backend.create_engine()
        except SQLAlchemyError as exc:
            raise StorageError(f"storage: cannot open {self.backend.describe()}: "
                               f"{exc.__class__.__name__}") from None

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent). A daemon takes its lock first."""
        try:
            with self.engine.begin() as conn:
                command.upgrade(_alembic_config(conn), "head")
                self.backend.fence(conn)
        except DBAPIError as exc:
            raise StorageError(f"storage: migration failed on {self.backend.describe()}: "
                               f"{_short(exc)}") from None

    def revision(self) -> tuple[str | None, str | None]:
        """(current, head) schema revisions."""
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            head = ScriptDirectory.from_config(_alembic_config(conn)).get_current_head()
        return current, head

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction; storage trouble becomes StorageBusy (retry) or StorageError."""
        try:
            with self.engine.begin() as conn:
                yield conn
                self.backend.fence(conn)
        except DBAPIError as exc:
            if self.backend.is_busy(exc):
                raise StorageBusy(f"storage busy: {_short(exc)}") from None
            raise StorageError(f"storage error: {_short(exc)}") from None

    def run(self, fn: Callable[[Connection], T]) -> T:
        with self.begin() as conn:
            return fn(conn)

    def read(self, fn: Callable[[Connection], T]) -> T:
        """A transaction that only reads: on SQLite it takes no write lock (WAL), so it
        never waits for the daemon's pull, nor holds it up."""
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    return fn(conn)
        except DBAPIError as exc:
            if self.backend.is_busy(exc):
                raise StorageBusy(f"storage busy: {_short(exc)}") from None
            raise StorageError(f"storage error: {_short(exc)}") from None

    def lock_instance(self) -> None:
        try:
            self.backend.acquire_instance_lock(self.engine)
        except DBAPIError as exc:
            raise StorageError(f"storage: cannot take the instance lock on "
                               f"{self.backend.describe()}: {_short(exc)}") from None

    def close(self) -> None:
        self.backend.release_instance_lock()
        self.engine.dispose()


def _short(exc: DBAPIError) -> str:
    # The driver's first line only: no SQL, no bound parameters (they may hold complaint text).
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else exc.__class__.__name__
    return text.splitlines()[0][:200] if text else exc.__class__.__name__
