"""PostgreSQL backend through psycopg 3; an instance lease for single instance.

The lease is a row (owner, expiry) that the running connector renews. Every
transaction of the lease holder checks and renews it just before committing
(fencing): a process whose lease was taken over can commit nothing more, and
the push checks it before every POST. A database restart does not lose the
lease (it is a row, not a session lock): the holder's next commit renews it,
unless another connector took it over after it expired; then the holder stops.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
import zlib

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from connector.errors import InstanceLocked, LeaseLost
from connector.store.backend import Backend

LOCK_KEY = zlib.crc32(b"mahulu-lapor-connector")
# Created here, not by a migration: the lease is taken before migrating.
_CREATE = text(
    "CREATE TABLE IF NOT EXISTS connector_lease ("
    "id integer PRIMARY KEY, owner text NOT NULL, "
    "expires_at timestamptz NOT NULL)"
)
_READ = text(
    "SELECT owner, expires_at > clock_timestamp() AS live FROM connector_lease "
    "WHERE id = 1 FOR UPDATE"
)
_TAKE = text(
    "INSERT INTO connector_lease (id, owner, expires_at) VALUES "
    "(1, :me, clock_timestamp() + make_interval(secs => :s)) "
    "ON CONFLICT (id) DO UPDATE SET owner = :me, expires_at = EXCLUDED.expires_at"
)
_RENEW = text(
    "UPDATE connector_lease SET expires_at = clock_timestamp() + "
    "make_interval(secs => :s) WHERE id = 1 AND owner = :me"
)


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, url: str, busy_timeout_s: float = 10.0):
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        super().__init__(url, busy_timeout_s)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._engine: Engine | None = None
        self.holding = False
        self.lost = False

    def create_engine(self) -> Engine:
        # pre_ping: a server restarted between cycles costs one reconnect, not a failed cycle.
        return create_engine(
            self.url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={"connect_timeout": 10},
        )

    def acquire_instance_lock(self, engine: Engine) -> None:
        with engine.begin() as conn:
            # Serialises starters (and the table's creation) for this transaction only.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
            conn.execute(_CREATE)
            row = conn.execute(_READ).first()
            if row is not None and row.live and row.owner != self.owner:
                raise InstanceLocked(
                    f"another connector is already running on {self.describe()} "
                    f"(lease held by {row.owner.rsplit(':', 1)[0]}); stop it first"
                )
            conn.execute(_TAKE, {"me": self.owner, "s": self.lease_s})
        self._engine = engine
        self.holding = True

    def fence(self, conn: Connection) -> None:
        if not self.holding:
            return
        if self.lost or conn.execute(_RENEW, {"me": self.owner, "s": self.lease_s}).rowcount != 1:
            self.lost = True  # for good: this process commits nothing more
            raise LeaseLost(
                f"the instance lease on {self.describe()} was taken over by another "
                "connector; stopping"
            )

    def release_instance_lock(self) -> None:
        if self.holding and not self.lost and self._engine is not None:
            self.holding = False
            with contextlib.suppress(DBAPIError), self._engine.begin() as conn:
                conn.execute(
                    text("DELETE FROM connector_lease WHERE id = 1 AND owner = :me"),
                    {"me": self.owner},
                )

    def is_busy(self, exc: DBAPIError) -> bool:
        return isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated
