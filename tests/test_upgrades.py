"""Upgrades of databases that hold data: from every earlier schema revision to head.

The revisions come from the Alembic script directory (``store.base.revisions``), so a
migration added later is covered without touching this file. Each old database is built by
``alembic`` itself, filled with the rows below (those the revision can hold), upgraded by
the connector, and checked row by row and through the connector's own reads.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from connector.errors import SchemaTooNew, StorageError
from connector.store import Store, base, followups, intents, state
from connector.store.base import _alembic_config, revisions
from connector.timeutil import as_utc
from connector.tracker.builtin import BuiltinTracker, OfficerAction

T0 = datetime(2026, 10, 5, 1, 30, tzinfo=UTC)
WATERMARK = T0 + timedelta(days=20, hours=3)
STATUSES = ("new", "in_progress", "resolved", "closed")
OLD = revisions()[:-1]  # every revision before head


def _at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def _ticket(i: int, tid: str, agency: str, status: str, lapor: str, **kw: Any) -> dict[str, Any]:
    row = {
        "id": i,
        "tracking_id": tid,
        "agency": agency,
        "status": status,
        "lapor_status": lapor,
        "title": f"Pengaduan {tid}",
        "body": "Isi laporan warga.",
        "classification": "pengaduan",
        "category": "Administrasi Kependudukan",
        "channel": "web",
        "anonymous": False,
        "confidential": False,
        "reporter_name": "Warga Long Bagun",
        "reporter_email": "warga@example.id",
        "reporter_phone": "0812000000",
        "location": None,
        "attachments": "[]",
        "submitted_at": _at(i),
        "due_at": _at(i + 7),
        "created_at": _at(i),
        "updated_at": _at(i + 1),
    }
    return {**row, **kw}


def _outbox(i: int, tid: str, ref: str, st: str, **kw: Any) -> dict[str, Any]:
    row = {
        "id": i,
        "change_id": f"builtin:{i}",
        "tracking_id": tid,
        "ticket_ref": ref,
        "idempotency_key": f"mahulu-a1b2c3d4e5-{tid}-{i}",
        "lapor_status": "diproses",
        "text": f"Tindak lanjut {i}.",
        "state": st,
        "attempts": 0,
        "next_attempt_at": _at(3),
        "last_error": None,
        "remote_id": None,
        "created_at": _at(3),
        "sent_at": None,
    }
    return {**row, **kw}


def _link(tid: str, ref: str, agency: str, lapor: str, closed: bool = False) -> dict[str, Any]:
    return {
        "tracking_id": tid,
        "ticket_ref": ref,
        "agency": agency,
        "lapor_status": lapor,
        "lapor_updated_at": _at(4),
        "unit_ids": "[6411001]",
        "seen_followups": '["901"]',
        "closed": closed,
        "created_at": _at(1),
        "updated_at": _at(4),
        "content_hash": "ab" * 32,
    }


# Rows in today's column names. A column the revision lacks is left out of the row; a row
# whose ``_needs`` columns the revision lacks (a state that did not exist yet) is left out.
ROWS: dict[str, list[dict[str, Any]]] = {
    "tickets": [
        _ticket(1, "4100001", "DISDUKCAPIL", "in_progress", "diproses"),
        _ticket(
            2,
            "4100002",
            "DISDIKBUD",
            "new",
            "terdisposisi",
            anonymous=True,
            confidential=True,
            reporter_name=None,
            reporter_email=None,
            reporter_phone=None,
            due_at=None,
            location='{"kecamatan": "Long Apari"}',
        ),
        _ticket(3, "4100003", "DKP2KB", "closed", "selesai"),
    ],
    "messages": [
        {
            "id": 1,
            "ticket_id": 1,
            "direction": "in",
            "author": "Pelapor (LAPOR!)",
            "text": "Mohon dibantu.",
            "at": _at(1),
            "source": "lapor",
            "lapor_followup_id": "900",
        },
        {
            "id": 2,
            "ticket_id": 1,
            "direction": "out",
            "author": "Instansi (LAPOR!)",
            "text": "Diterima.",
            "at": _at(2),
            "source": "lapor",
            "lapor_followup_id": "901",
        },
        {
            "id": 3,
            "ticket_id": 1,
            "direction": "internal",
            "author": "petugas",
            "text": "Cek arsip.",
            "at": _at(2.5),
            "source": "officer",
            "lapor_followup_id": None,
        },
        {
            "id": 4,
            "ticket_id": 3,
            "direction": "out",
            "author": "petugas",
            "text": "Selesai ditangani.",
            "at": _at(5),
            "source": "officer",
            "lapor_followup_id": None,
        },
    ],
    "status_history": [
        {
            "id": 1,
            "ticket_id": 1,
            "from_status": None,
            "to_status": "new",
            "source": "lapor",
            "reason": None,
            "at": _at(1),
        },
        {
            "id": 2,
            "ticket_id": 1,
            "from_status": "new",
            "to_status": "in_progress",
            "source": "officer",
            "reason": None,
            "at": _at(2.5),
        },
        {
            "id": 3,
            "ticket_id": 3,
            "from_status": "resolved",
            "to_status": "closed",
            "source": "lapor",
            "reason": "selesai di LAPOR!",
            "at": _at(6),
        },
    ],
    # One officer change behind each outbox entry (the entry's change id names it).
    "tracker_changes": [
        {
            "id": i,
            "ticket_id": ref,
            "status": st,
            "ticket_status": now,
            "reply": reply,
            "at": _at(2.5),
        }
        for i, ref, st, now, reply in (
            (1, 1, "in_progress", "in_progress", None),
            (2, 1, None, "in_progress", "Tindak lanjut 2."),
            (3, 3, "resolved", "resolved", "Selesai ditangani."),
            (4, 2, None, "new", "Tindak lanjut 4."),
            (5, 3, None, "resolved", "Lagi."),
            (6, 3, None, "resolved", "Sekali lagi."),
        )
    ],
    "links": [
        _link("4100001", "1", "DISDUKCAPIL", "diproses"),
        _link("4100002", "2", "DISDIKBUD", "terdisposisi"),
        _link("4100003", "3", "DKP2KB", "selesai", closed=True),
    ],
    "connector_state": [
        {"key": "pull_watermark", "value": WATERMARK.isoformat()},
        {"key": "pull_progress_at", "value": WATERMARK.isoformat()},
        {"key": "tracker_cursor", "value": "6"},
        {"key": "mapping_version", "value": "0123abcd"},
    ],
    "outbox": [
        _outbox(1, "4100001", "1", "sent", attempts=1, remote_id="905", sent_at=_at(3)),
        _outbox(2, "4100001", "1", "pending", attempts=2, last_error="server_error"),
        _outbox(
            3,
            "4100003",
            "3",
            "failed",
            lapor_status="selesai",
            last_error="laporan_ditutup",
            attempts=1,
        ),
        _outbox(4, "4100002", "2", "pending"),
        _outbox(
            5,
            "4100003",
            "3",
            "unconfirmed",
            attempts=1,
            first_attempt_at=_at(3),
            key_first_used_at=_at(3),
            unit_id=6411003,
            _needs={"key_first_used_at"},
        ),
        _outbox(
            6,
            "4100003",
            "3",
            "dismissed",
            last_error="laporan_ditutup",
            attempts=1,
            dismiss_reason="sudah dijawab langsung di LAPOR!",
            dismissed_at=_at(6),
            _needs={"dismiss_reason"},
        ),
    ],
    "quarantine": [
        {
            "tracking_id": "4100009",
            "reason": "unmapped_unit",
            "detail": "unit 6411999",
            "lapor_updated_at": _at(4),
            "unit_ids": "[6411999]",
            "attempts": 3,
            "retry_requested": False,
            "first_seen": _at(4),
            "last_seen": _at(5),
        },
    ],
    "runs": [
        {
            "id": 1,
            "kind": "pull",
            "started_at": _at(20),
            "finished_at": _at(20.01),
            "ok": True,
            "summary": json.dumps({"fetched": 3}),
            "error": None,
        },
    ],
    "followup_complaints": [
        {
            "tracking_id": tid,
            "agency": ag,
            "agencies": f",{ag},",
            "received_at": _at(i),
            "settle_by": _at(i + 60),
            "lapor_status": st,
            "closed": tid == "4100003",
            "updated_at": _at(4),
        }
        for i, tid, ag, st in (
            (1, "4100001", "DISDUKCAPIL", "diproses"),
            (2, "4100002", "DISDIKBUD", "terdisposisi"),
            (3, "4100003", "DKP2KB", "selesai"),
        )
    ],
    "followup_periods": [
        {
            "id": i,
            "tracking_id": tid,
            "seq": 1,
            "agency": ag,
            "start": "received",
            "started_at": _at(i),
            "due_at": _at(i + 7),
            "due_source": "computed",
            "lapor_deadline": None,
            "first_follow_up_at": fu,
            "first_follow_up_id": None,
            "on_time": None if fu is None else True,
            "ended_at": None,
        }
        for i, tid, ag, fu in (
            (1, "4100001", "DISDUKCAPIL", _at(2)),
            (2, "4100002", "DISDIKBUD", None),
            (3, "4100003", "DKP2KB", _at(5)),
        )
    ],
    "tracker_intents": [
        {
            "id": 1,
            "tracking_id": "4100001",
            "kind": "create",
            "payload": None,
            "state": "done",
            "attempts": 1,
            "next_attempt_at": _at(1),
            "last_error": None,
            "issue_ref": "17",
            "created_at": _at(1),
            "done_at": _at(1),
        },
        {
            "id": 2,
            "tracking_id": "4100001",
            "kind": "message",
            "payload": json.dumps({"text": "Diterima."}),
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": _at(2),
            "last_error": None,
            "issue_ref": "17",
            "created_at": _at(2),
            "done_at": None,
        },
        {
            "id": 3,
            "tracking_id": "4100002",
            "kind": "create",
            "payload": "{}",
            "state": "failed",
            "attempts": 4,
            "next_attempt_at": _at(2),
            "last_error": "tracker_refused: project",
            "issue_ref": None,
            "created_at": _at(2),
            "done_at": None,
        },
    ],
    "tracker_issues": [
        {
            "tracking_id": "4100001",
            "kind": "redmine",
            "issue_ref": "17",
            "officer_status": "in_progress",
            "updated_at": _at(3),
        },
    ],
}


def _fill(conn: sa.Connection) -> dict[str, list[dict[str, Any]]]:
    """Insert the rows the schema at the current revision can hold; returns them."""
    db = sa.inspect(conn)
    meta = sa.MetaData()
    written: dict[str, list[dict[str, Any]]] = {}
    names = set(db.get_table_names())
    for name, rows in ROWS.items():
        if name not in names:
            continue
        table = sa.Table(name, meta, autoload_with=conn)
        have = set(table.c.keys())
        fit = []
        for row in rows:
            if not row.get("_needs", set()) <= have:
                continue
            fit.append({k: v for k, v in row.items() if k in have})
        missing = {
            c.name
            for c in table.c
            if not c.nullable and c.server_default is None and not c.primary_key
        } - set().union(*(r.keys() for r in fit))
        assert not fit or not missing, f"{name}: the test rows lack {missing}"
        if fit:
            for row in fit:  # one by one: the rows do not all name the same columns
                conn.execute(sa.insert(table).values(row))
            written[name] = fit
        if conn.dialect.name == "postgresql" and "id" in have:
            # Explicit ids do not move the sequence; a real database's has moved.
            conn.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                    f"(SELECT coalesce(max(id), 1) FROM {name}))"
                )
            )
    return written


def _norm(v: Any) -> Any:
    return as_utc(v) if isinstance(v, datetime) else v


def _build(db_url: str, rev: str) -> tuple[Store, dict[str, list[dict[str, Any]]]]:
    store = Store(db_url)
    with store.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), rev)
    with store.engine.begin() as conn:
        written = _fill(conn)
    assert store.revision()[0] == rev
    return store, written


@pytest.mark.parametrize("rev", OLD)
def test_a_filled_database_upgrades_from_every_earlier_revision(
    db_url: str, rev: str, tmp_path: Path
) -> None:
    store, written = _build(db_url, rev)
    store.upgrade()
    current, head = store.revision()
    assert current == head == revisions()[-1]

    # Row by row: every value written at the old revision reads the same at head.
    with store.engine.connect() as conn:
        meta = sa.MetaData()
        for name, rows in written.items():
            table = sa.Table(name, meta, autoload_with=conn)
            pk = [c for c in table.primary_key.columns]
            for row in rows:
                got = (
                    conn.execute(sa.select(table).where(*(c == row[c.name] for c in pk)))
                    .mappings()
                    .one()
                )
                assert {k: _norm(got[k]) for k in row} == {k: _norm(v) for k, v in row.items()}, (
                    name,
                    row,
                )

    # Through the connector's own reads: the same tickets, outbox, watermark, quarantine.
    tracker = BuiltinTracker(STATUSES)
    with store.begin() as conn:
        tickets = {t["tracking_id"]: t for t in tracker.list_tickets(conn)}
        outbox = {e["id"]: e for e in state.list_outbox(conn)}
        watermark = state.get_watermark(conn)
        quarantined = [q["tracking_id"] for q in state.list_quarantine(conn)]
        facts = followups.get_facts(conn, list(tickets))
        nonce = state.db_nonce(conn)
        intent_health = intents.health(conn)
    assert {t: (v["status"], len(v["messages"])) for t, v in tickets.items()} == {
        "4100001": ("in_progress", 3),
        "4100002": ("new", 0),
        "4100003": ("closed", 1),
    }
    assert tickets["4100002"]["reporter"] is None and tickets["4100002"]["location"]
    assert {i: (e["state"], e["idempotency_key"]) for i, e in outbox.items()} == {
        r["id"]: (r["state"], r["idempotency_key"]) for r in written["outbox"]
    }
    assert watermark == WATERMARK
    assert quarantined == ["4100009"]
    # Due periods: kept, or made by the migration that brought them, for every ticket.
    assert set(facts) == set(tickets)
    assert facts["4100001"].current.first_follow_up_at is not None
    assert len(nonce) == 10
    if "tracker_intents" in written:
        assert (intent_health["pending"], intent_health["failed"]) == (1, 1)

    # And it goes on working: an officer's reply becomes a new outbox entry.
    from connector.mapping_reload import MappingHolder
    from connector.sync.push import ingest
    from tests.conftest import ROOT

    holder = MappingHolder(ROOT / "mappings")
    holder.load_initial()
    now = WATERMARK + timedelta(hours=1)

    def reply(conn: sa.Connection) -> int:
        tracker.officer_update(
            conn,
            tickets["4100002"]["id"],
            OfficerAction("in_progress", "Sedang kami cek.", None, "petugas"),
            now,
        )
        return ingest(conn, tracker, holder(), now)

    assert store.run(reply) == 1
    assert len(store.run(state.list_outbox)) == len(outbox) + 1
    store.close()


def test_every_earlier_revision_is_covered() -> None:
    """The list is the script directory's: head is last, and nothing is left out."""
    assert OLD and revisions()[0] == "0001" and len(set(revisions())) == len(OLD) + 1


# -- a migration that fails half-way ----------------------------------------------------------

BOOM = '''"""A migration forced to fail half-way (tests only).

Revision ID: 9999_boom
"""
import sqlalchemy as sa
from alembic import op

revision = "9999_boom"
down_revision = {head!r}


def upgrade() -> None:
    op.create_table("boom", sa.Column("id", sa.Integer, primary_key=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("boom", sa.Integer))
    op.execute(sa.text("UPDATE outbox SET state = 'boom'"))
    raise RuntimeError("forced failure in the middle of a migration")


def downgrade() -> None:
    pass
'''


@pytest.fixture
def failing_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped migrations plus one at the end that fails after doing some work."""
    where = tmp_path / "migrations"
    shutil.copytree(base.migrations_dir(), where, ignore=shutil.ignore_patterns("__pycache__"))
    (where / "versions" / "9999_boom.py").write_text(BOOM.format(head=revisions()[-1]))
    monkeypatch.setattr(base, "migrations_dir", lambda: str(where))
    return where


def _schema(store: Store) -> dict[str, list[str]]:
    db = sa.inspect(store.engine)
    # Not the PostgreSQL lease: the instance lock makes it before any migration.
    return {
        t: sorted(c["name"] for c in db.get_columns(t))
        for t in db.get_table_names()
        if t != "connector_lease"
    }


def test_a_migration_that_fails_half_way_changes_nothing(
    db_url: str, failing_migrations: Path
) -> None:
    # From an old revision: every pending migration (the real ones too) is rolled back.
    old = OLD[1]
    store = Store(db_url)
    with store.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), old)
        written = _fill(conn)
    before = _schema(store)
    with pytest.raises(
        StorageError,
        match=r"migration '9999_boom' failed .*RuntimeError"
        r".*still at revision '" + old,
    ):
        store.upgrade()
    assert _schema(store) == before
    assert store.revision()[0] == old
    with store.engine.connect() as conn:
        states = sorted(r.state for r in conn.execute(sa.text("SELECT state FROM outbox")))
    assert states == sorted(r["state"] for r in written["outbox"])
    store.close()


def test_the_daemon_says_a_migration_failed_and_the_old_schema_stays_usable(
    tmp_path: Path, db_url: str, failing_migrations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.service import run
    from connector.settings import load_config
    from tests.conftest import write_config

    head = revisions()[-2]  # the shipped head: the copy's last is the failing one
    store = Store(db_url)
    with store.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), head)
        _fill(conn)
    before = _schema(store)
    store.close()
    config = load_config(write_config(tmp_path / "site", db_url), environ={})
    assert run(config) == 1
    err = capsys.readouterr().err
    assert "migration '9999_boom' failed" in err and f"still at revision '{head}'" in err
    store = Store(db_url)
    assert _schema(store) == before and store.revision()[0] == head
    # The version before (without the failing migration) runs on it as it was.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            base,
            "migrations_dir",
            lambda: str(
                Path(__file__).resolve().parent.parent / "connector" / "store" / "migrations"
            ),
        )
        store.upgrade()
        assert store.run(state.get_watermark) == WATERMARK
    store.close()


# -- a database newer than the code ---------------------------------------------------------


def _newer(db_url: str) -> None:
    store = Store(db_url)
    store.upgrade()
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099_future'"))
    store.close()


def test_a_database_newer_than_the_code_is_refused(db_url: str) -> None:
    _newer(db_url)
    store = Store(db_url)
    with pytest.raises(SchemaTooNew, match="'0099_future', newer than this version") as exc:
        store.upgrade()
    assert exc.value.exit_code == 2
    assert store.revision()[0] == "0099_future"  # untouched
    store.close()


def test_the_daemon_refuses_a_newer_database_with_exit_2(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.cli import main

    _newer(db_url)
    from tests.conftest import write_config

    cfg = write_config(tmp_path / "site", db_url)
    assert main(["--config", str(cfg), "run"]) == 2
    err = capsys.readouterr().err
    assert "newer than this version of the connector" in err and "Traceback" not in err
    assert main(["--config", str(cfg), "status"]) == 2
