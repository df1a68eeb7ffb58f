"""Storage on every backend: migrations, atomicity, locking, file modes."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, insert, inspect, select
from sqlalchemy.sql import sqltypes

from connector.domain import ChangeId, FollowUpPlan, LinkState
from connector.errors import InstanceLocked, StorageBusy, StorageError, StorageFull
from connector.store import Store, schema, state
from connector.store.schema import links, tickets
from connector.tracker.base import NewTicket
from connector.tracker.builtin import BuiltinTracker

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
TABLES = {
    "tickets",
    "messages",
    "status_history",
    "tracker_changes",
    "links",
    "connector_state",
    "outbox",
    "quarantine",
    "runs",
    "alembic_version",
    "followup_complaints",
    "followup_periods",
    "tracker_intents",
    "tracker_issues",
    "desk_users",
    "desk_sessions",
    "desk_login_failures",
    "desk_audit",
    "desk_submissions",
    "notifications",
}


def ticket(tid: str = "4100001") -> NewTicket:
    return NewTicket(
        tracking_id=tid,
        agency="DINKES",
        status="new",
        lapor_status="terdisposisi",
        title="t",
        body="b",
        classification="pengaduan",
        category=None,
        channel="web",
        anonymous=False,
        confidential=True,
        reporter={"name": "N", "email": None, "phone": None},
        location=None,
        attachments=(),
        submitted_at=NOW,
        due_at=None,
    )


def test_migrations_from_empty(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade()
    store.upgrade()  # idempotent
    assert set(inspect(store.engine).get_table_names()) == TABLES
    current, head = store.revision()
    assert current == head and head is not None and head != "0001"
    assert "content_hash" in {c["name"] for c in inspect(store.engine).get_columns("links")}
    store.close()


@pytest.mark.sqlite_only(reason="the modes of SQLite's file and folder")
def test_sqlite_file_modes(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/var/c.db")
    store.upgrade()
    assert oct(os.stat(tmp_path / "var" / "c.db").st_mode & 0o777) == "0o600"
    assert oct(os.stat(tmp_path / "var").st_mode & 0o777) == "0o700"
    store.close()


def test_failure_mid_transaction_leaves_nothing(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade()
    tracker = BuiltinTracker(("new", "in_progress", "resolved", "closed"))

    def half(conn: Connection) -> None:
        ref = tracker.create_ticket(conn, ticket(), NOW)
        state.save_link(
            conn,
            LinkState("4100001", ref, "DINKES", "terdisposisi", NOW, (1,), frozenset(), False),
            NOW,
        )
        state.advance_watermark(conn, NOW)
        raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError):
        store.run(half)
    with store.begin() as conn:
        assert conn.execute(select(tickets)).first() is None
        assert conn.execute(select(links)).first() is None
        assert state.get_watermark(conn) is None
    store.close()


@pytest.mark.sqlite_only(reason="SQLITE_FULL, SQLite's own answer to a full disk")
def test_a_full_disk_is_storage_full_and_the_transaction_rolls_back_whole(tmp_path: Path) -> None:
    """Issue 22 (4): "database or disk is full" (here SQLite's page limit, the same
    SQLITE_FULL a full disk gives; tests/test_disk_full.py fills a real one)."""
    store = Store(f"sqlite:///{tmp_path}/var/c.db")
    store.upgrade()
    tracker = BuiltinTracker(("new", "in_progress", "resolved", "closed"))

    def fills(conn: Any) -> None:
        ref = tracker.create_ticket(conn, ticket(), NOW)
        state.save_link(
            conn,
            LinkState("4100001", ref, "DINKES", "terdisposisi", NOW, (1,), frozenset(), False),
            NOW,
        )
        state.advance_watermark(conn, NOW)
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
        for i in range(200):
            state.set_value(conn, f"filler_{i}", "x" * 4000)

    with pytest.raises(StorageFull, match="database or disk is full") as caught:
        store.run(fills)
    assert isinstance(caught.value, StorageError)  # an admin's matter, as before
    with store.begin() as conn:
        conn.exec_driver_sql("PRAGMA max_page_count = 1073741823")
        assert conn.execute(select(tickets)).first() is None
        assert conn.execute(select(links)).first() is None
        assert state.get_watermark(conn) is None
    store.run(lambda conn: state.advance_watermark(conn, NOW))  # room again: it goes on
    assert store.run(state.get_watermark) == NOW
    store.close()


def test_postgresql_disk_full_is_storage_full_not_busy() -> None:
    import psycopg
    from sqlalchemy.exc import OperationalError

    from connector.store.postgres import PostgresBackend

    backend = PostgresBackend("postgresql+psycopg://u@127.0.0.1/none")
    full = OperationalError("INSERT", {}, psycopg.errors.DiskFull("could not extend file"))
    gone = OperationalError("INSERT", {}, psycopg.errors.AdminShutdown("terminating"))
    assert backend.is_full(full) and not backend.is_full(gone)
    store = Store.__new__(Store)
    store.backend = backend
    assert isinstance(store._classify(full), StorageFull)
    assert type(store._classify(gone)) is StorageBusy


def test_unique_tracking_id_is_the_last_line_of_defence(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade()
    tracker = BuiltinTracker(("new",))
    store.run(lambda c: tracker.create_ticket(c, ticket(), NOW))
    with pytest.raises(StorageError):
        store.run(lambda c: tracker.create_ticket(c, ticket(), NOW))
    store.close()


def test_watermark_only_moves_forward(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade()
    later = NOW.replace(hour=5)
    store.run(lambda c: state.advance_watermark(c, later))
    store.run(lambda c: state.advance_watermark(c, NOW))
    assert store.run(state.get_watermark) == later
    store.close()


def test_outbox_enqueue_is_idempotent_and_ordered(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade()
    plans = [FollowUpPlan(ChangeId.builtin(i), "41", "1", "diproses", "x") for i in (1, 2)]
    plans.append(FollowUpPlan(ChangeId.builtin(3), "42", "2", "selesai", "y"))
    for plan in plans + plans:

        def enqueue(c: Connection, p: FollowUpPlan = plan) -> object:
            return state.enqueue(c, p, f"k{p.change_id[-1]}", None, NOW)

        store.run(enqueue)
    assert len(store.run(state.list_outbox)) == 3
    due = store.run(lambda c: state.due_entries(c, NOW, 10))
    assert [d.idempotency_key for d in due] == ["k1", "k3"]  # one per complaint, oldest first
    # The enum is stored as its plain value (not its name), as before it was an enum.
    stored = store.run(lambda c: c.execute(select(schema.outbox.c.state)).scalars().all())
    assert [type(v) for v in stored] == [str] * 3 and set(stored) == {"pending"}
    store.close()


def test_second_instance_refused(db_url: str) -> None:
    a, b = Store(db_url), Store(db_url)
    a.upgrade()
    a.lock_instance()
    with pytest.raises(InstanceLocked, match="already running"):
        b.lock_instance()
    a.close()
    b.lock_instance()
    b.close()


def test_unsupported_url_is_a_config_error() -> None:
    from connector.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported database"):
        Store("mysql://x/y")


def test_followups_migration_backfills_existing_tickets(db_url: str) -> None:
    from alembic import command

    from connector.store import followups
    from connector.store.base import _alembic_config
    from connector.store.schema import messages

    store = Store(db_url)
    with store.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0002_intake")  # the one before 0004
    tracker = BuiltinTracker(("new", "in_progress", "resolved", "closed"))
    due = NOW + timedelta(days=7)
    answered = NOW + timedelta(days=8)

    def before(conn: Any) -> None:
        for tid in ("4100001", "4100002"):
            ref = tracker.create_ticket(conn, replace(ticket(tid), due_at=due), NOW)
            state.save_link(
                conn,
                LinkState(tid, ref, "DINKES", "ditindaklanjuti", NOW, (1,), frozenset(), False),
                NOW,
            )
        conn.execute(
            insert(messages).values(
                ticket_id=1,
                direction="out",
                author="x",
                text="y",
                at=answered,
                source="lapor",
                lapor_followup_id="9",
            )
        )

    store.run(before)
    store.upgrade()
    facts = store.run(lambda c: followups.get_facts(c, ["4100001", "4100002"]))
    late, open_ = facts["4100001"], facts["4100002"]
    assert late.current.first_follow_up_at == answered and late.current.on_time is False
    assert open_.current.first_follow_up_at is None and open_.current.due_at == due
    assert store.run(lambda c: followups.overdue(c, due + timedelta(seconds=1), 5))[0] == 1
    assert store.run(lambda c: followups.overdue(c, due, 5)) == (0, [])


def test_migration_0003_keeps_old_entries_safe(db_url: str) -> None:
    """Entries tried before 0003 count as first tried at their creation (so an old one is
    looked up before any new POST); the database gets its nonce."""
    from alembic import command
    from sqlalchemy import text

    from connector.store.base import _alembic_config

    store = Store(db_url)
    with store.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
    made = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    with store.engine.begin() as conn:
        for i, attempts in ((1, 2), (2, 0)):
            conn.execute(
                text(
                    "INSERT INTO outbox (change_id, tracking_id, ticket_ref, idempotency_key, "
                    "lapor_status, text, state, attempts, created_at) VALUES "
                    "(:c, '4511', '1', :k, 'diproses', 'x', 'pending', :a, :t)"
                ),
                {"c": f"builtin:{i}", "k": f"mahulu-4511-{i}", "a": attempts, "t": made},
            )
    store.upgrade()
    with store.begin() as conn:
        rows = {r.change_id: r for r in conn.execute(select(schema.outbox))}
        nonce = state.db_nonce(conn)
    assert rows["builtin:1"].key_first_used_at is not None
    assert rows["builtin:2"].key_first_used_at is None
    assert rows["builtin:1"].key_changes == 0 and len(nonce) == 10
    store.close()


def _kind(t: Any) -> str:
    """A column type's general kind, as both backends reflect it."""
    for kind, cls in (
        ("bool", sqltypes.Boolean),
        ("int", sqltypes.Integer),
        ("datetime", sqltypes.DateTime),
        ("text", sqltypes.Text),
    ):
        if isinstance(t, cls):
            return kind
    if isinstance(t, sqltypes.String):
        return f"varchar({t.length})"
    return type(t).__name__


def test_schema_matches_the_migrated_database(db_url: str) -> None:
    """``schema.py`` (what queries use) and the migrations (what creates the tables) agree,
    column by column: names, kind of type, nullability and primary keys."""
    store = Store(db_url)
    store.upgrade()
    db = inspect(store.engine)
    for table in schema.metadata.sorted_tables:
        declared = {c.name: (_kind(c.type), c.nullable) for c in table.columns}
        migrated = {
            c["name"]: (_kind(c["type"]), c["nullable"]) for c in db.get_columns(table.name)
        }
        assert migrated == declared, table.name
        assert db.get_pk_constraint(table.name)["constrained_columns"] == [
            c.name for c in table.primary_key.columns
        ], table.name
    assert {t.name for t in schema.metadata.sorted_tables} | {"alembic_version"} == TABLES
    store.close()


@pytest.mark.sqlite_only(reason="the subject is SQLite's file under a running connector")
def test_a_database_file_deleted_replaced_or_corrupted_is_noticed(tmp_path: Path) -> None:
    """Issue 23 item 11: deleted, the connector wrote on into the unlinked file; replaced,
    it never noticed. Every commit is fenced on the file's identity; the periodic check
    adds quick_check."""
    import shutil

    from sqlalchemy import text as sql

    from connector.errors import StorageError
    from connector.store import Store

    db = tmp_path / "c.db"
    store = Store(f"sqlite:///{db}")
    store.upgrade()
    store.run(lambda c: c.execute(sql("CREATE TABLE t (x TEXT)")))
    store.run(lambda c: c.execute(sql("INSERT INTO t VALUES (:x)"), [{"x": "y" * 3000}] * 200))
    assert store.backend.health_problem(store.engine) is None
    shutil.copy(db, tmp_path / "copy.db")
    db.unlink()
    with pytest.raises(StorageError, match="was deleted"):
        store.run(lambda c: c.execute(sql("INSERT INTO t VALUES ('z')")))
    assert "was deleted" in (store.backend.health_problem(store.engine) or "")
    (tmp_path / "copy.db").rename(db)
    with pytest.raises(StorageError, match="was replaced"):
        store.run(lambda c: c.execute(sql("INSERT INTO t VALUES ('z')")))
    store.engine.dispose()

    fresh = Store(f"sqlite:///{db}")  # the file as it is now: trusted again
    assert fresh.backend.health_problem(fresh.engine) is None
    fresh.engine.dispose()
    with db.open("r+b") as f:  # garbage over the middle pages, header intact
        f.seek(8192)
        f.write(b"\xff" * 40000)
    broken = Store(f"sqlite:///{db}")
    assert "corrupt" in (
        broken.backend.health_problem(broken.engine) or ""
    ) or "cannot be read" in (broken.backend.health_problem(broken.engine) or "")
    broken.engine.dispose()


@pytest.mark.sqlite_only(reason="the marker beside SQLite's file")
def test_a_deleted_database_is_never_silently_started_over(tmp_path: Path) -> None:
    """Issue 23 item 11, after a restart: a database that vanished is refused at start,
    not re-created empty (which would lose the watermark, the outbox and every ticket)."""
    from connector.errors import StorageError

    db = tmp_path / "var" / "c.db"
    first = Store(f"sqlite:///{db}")
    first.upgrade()
    first.close()
    assert (tmp_path / "var" / "c.db.created").exists()
    db.unlink()
    again = Store(f"sqlite:///{db}")
    with pytest.raises(StorageError, match="was deleted or lost"):
        again.upgrade()
    assert again.revision()[0] is None  # nothing was created
    again.close()
    (tmp_path / "var" / "c.db.created").unlink()  # the operator's "start afresh"
    fresh = Store(f"sqlite:///{db}")
    fresh.upgrade()
    assert fresh.revision()[0] is not None
    fresh.close()
