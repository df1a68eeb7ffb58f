"""The store: one database for the connector's state and the built-in tracker.

Backends differ only in how an engine is made and how a single instance is
enforced; everything else is portable SQLAlchemy Core. Each backend is one
module (``sqlite.py``, ``postgres.py``) behind the ``Backend`` ABC (``backend.py``,
kept apart so the backends never import this module back).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from connector.errors import (
    ConfigError,
    SchemaTooNew,
    StorageBusy,
    StorageError,
    StorageFull,
)
from connector.store.backend import Backend
from connector.store.postgres import PostgresBackend
from connector.store.sqlite import READ_ONLY, SqliteBackend

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

T = TypeVar("T")
VERSION_TABLE = "alembic_version"  # Alembic's own
# A migration file's ``revision = "..."`` and ``down_revision = "..."`` (or None) lines.
_REVISION_LINE = re.compile(
    r"""^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(None|"[^"\n]*"|'[^'\n]*')\s*$""", re.MULTILINE
)


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


def migrations_dir() -> str:
    """The Alembic script directory shipped with the package."""
    return str(resources.files("connector.store").joinpath("migrations"))


def _alembic_config(connection: Connection | None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", migrations_dir())
    cfg.attributes["connection"] = connection
    return cfg


def revisions() -> list[str]:
    """Every schema revision this version knows, oldest first (the last one is head).

    Read from the migration files' own lines rather than by Alembic, which imports every
    migration: a command on a database already at head then never loads Alembic (the
    largest part of ``status``'s start-up). Anything but one straight chain: Alembic's
    own walk."""
    parents: dict[str, str | None] = {}
    for path in sorted(Path(migrations_dir(), "versions").glob("*.py")):
        found = {
            k: None if v == "None" else v[1:-1]
            for k, v in _REVISION_LINE.findall(path.read_text("utf-8"))
        }
        if found.get("revision"):
            parents[str(found["revision"])] = found.get("down_revision")
    heads = [r for r in parents if r not in set(parents.values())]
    chain = heads if len(heads) == 1 else []
    while chain and len(chain) <= len(parents) and parents.get(chain[-1]) is not None:
        chain.append(str(parents[chain[-1]]))
    if (
        not chain
        or len(chain) != len(parents)
        or chain[-1] not in parents
        or parents[chain[-1]] is not None
    ):
        return _alembic_revisions()
    return chain[::-1]


def _alembic_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(None))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _current_revision(conn: Connection) -> str | None:
    """The database's schema revision, read as Alembic does (one row of its table)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) == 1:
        return str(rows[0])
    from alembic.runtime.migration import MigrationContext  # none, or several: its answer

    return MigrationContext.configure(conn).get_current_revision()


class Store:
    def __init__(self, url: str, *, busy_timeout_s: float = 10.0, lease_s: float = 60.0):
        self.backend = backend_for(url, busy_timeout_s)
        self.backend.lease_s = lease_s
        try:
            self.engine = self.backend.create_engine()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"storage: cannot open {self.backend.describe()}: {exc.__class__.__name__}"
            ) from None

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent). A daemon takes its lock first.

        All of them in one transaction, one revision after the other: a migration that
        fails leaves the database exactly as it was (both backends have transactional
        DDL), and the error names the revision that failed."""
        known = revisions()
        where = self.backend.describe()
        try:
            with self.engine.begin() as conn:
                current = _current_revision(conn)
                if current is not None and current not in known:
                    raise SchemaTooNew(
                        f"storage: the database {where} has schema revision {current!r}, "
                        f"newer than this version of the connector knows (its newest is "
                        f"{known[-1]!r}): a newer connector upgraded it. Install that "
                        "version again, or restore a backup taken before the upgrade; "
                        "nothing was changed"
                    )
                if current is None:
                    self.backend.check_schema_missing()
                pending = known[known.index(current) + 1 :] if current else known
                step = current
                try:
                    if pending:  # Alembic only when there is something to do
                        from alembic import command
                    for step in pending:
                        command.upgrade(_alembic_config(conn), step)
                except Exception as exc:
                    detail = _short(exc) if isinstance(exc, DBAPIError) else _first_line(exc)
                    raise StorageError(
                        f"storage: migration {step!r} failed on {where} ({detail}); rolled "
                        f"back, the database is still at revision {current!r} and this "
                        "version cannot run on it: run the previous version, or fix the "
                        "cause and start again"
                    ) from None
                self.backend.fence(conn)
        except DBAPIError as exc:
            raise StorageError(f"storage: migration failed on {where}: {_short(exc)}") from None
        if current is None:
            self.backend.schema_created()

    def revision(self) -> tuple[str | None, str | None]:
        """(current, head) schema revisions."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

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
            raise self._classify(exc) from None

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
            raise self._classify(exc) from None

    def _classify(self, exc: DBAPIError) -> StorageError | StorageBusy:
        # Full before busy: PostgreSQL's disk_full is an OperationalError too, and waiting
        # for a lock to pass would not free a disk.
        if self.backend.is_full(exc):
            return StorageFull(f"storage full: {_short(exc)}")
        if self.backend.is_busy(exc):
            return StorageBusy(f"storage busy: {_short(exc)}")
        return StorageError(f"storage error: {_short(exc)}")

    def lock_instance(self) -> None:
        try:
            self.backend.acquire_instance_lock(self.engine)
        except DBAPIError as exc:
            raise StorageError(
                f"storage: cannot take the instance lock on "
                f"{self.backend.describe()}: {_short(exc)}"
            ) from None

    def close(self) -> None:
        self.backend.release_instance_lock()
        self.engine.dispose()


def open_store(
    url: str, *, busy_timeout_s: float = 10.0, lease_s: float = 60.0, lock: bool = False
) -> Store:
    """Open (and migrate) the database; with ``lock``, as the one running connector: the
    instance lock is taken before migrating."""
    store = Store(url, busy_timeout_s=busy_timeout_s, lease_s=lease_s)
    try:
        if lock:
            store.lock_instance()
        store.upgrade()
    except Exception:
        store.close()
        raise
    return store


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return (
        f"{exc.__class__.__name__}: {text.splitlines()[0][:200]}"
        if text
        else exc.__class__.__name__
    )


def _short(exc: DBAPIError) -> str:
    # The driver's first line only: no SQL, no bound parameters (they may hold complaint text).
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else exc.__class__.__name__
    return text.splitlines()[0][:200] if text else exc.__class__.__name__
