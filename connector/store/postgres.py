"""PostgreSQL backend through psycopg 3; a session advisory lock for single instance."""

from __future__ import annotations

import contextlib
import zlib

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from connector.errors import InstanceLocked
from connector.store.base import Backend

LOCK_KEY = zlib.crc32(b"mahulu-lapor-connector")


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, url: str, busy_timeout_s: float = 10.0):
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        super().__init__(url, busy_timeout_s)
        self._lock_conn: Connection | None = None

    def create_engine(self) -> Engine:
        # pre_ping: a server restarted between cycles costs one reconnect, not a failed cycle.
        return create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                             connect_args={"connect_timeout": 10})

    def acquire_instance_lock(self, engine: Engine) -> None:
        conn = engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
        conn.commit()
        if not got:
            conn.close()
            raise InstanceLocked(
                f"another connector is already running on {self.describe()}; stop it first"
            )
        self._lock_conn = conn

    def release_instance_lock(self) -> None:
        if self._lock_conn is not None:
            with contextlib.suppress(DBAPIError):
                self._lock_conn.close()
            self._lock_conn = None

    def is_busy(self, exc: DBAPIError) -> bool:
        return isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated
