"""The domain's words as types: statuses as StrEnums and the change-id namespace
(``connector/domain.py``). They must store, send and key exactly what the bare strings did."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, select

from connector.domain import (
    CLOSED_STATUSES,
    POSTED_RESULT,
    ChangeId,
    LaporStatus,
    LocalStatus,
    PostStatus,
)
from connector.lapor import models as m
from connector.lapor import reasons
from connector.mappings import LOCAL_STATUSES, load
from connector.store import Store, schema, state
from connector.sync import core
from connector.tracker.base import OfficerChange

MAPPINGS = load(Path(__file__).resolve().parent.parent / "mappings")
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def test_statuses_keep_their_words() -> None:
    # LAPOR!'s words, in LAPOR!'s order (the mappings' error messages list them so).
    assert m.LAPOR_STATUSES == (
        "terdisposisi",
        "ditindaklanjuti",
        "selesai",
        "ditutup",
        "diarsipkan",
    )
    assert m.PUSH_STATUSES == ("diproses", "selesai")
    assert tuple(LocalStatus) == LOCAL_STATUSES == ("new", "in_progress", "resolved", "closed")
    assert sorted(CLOSED_STATUSES) == ["diarsipkan", "ditutup"]
    assert dict(POSTED_RESULT) == {"diproses": "ditindaklanjuti", "selesai": "selesai"}
    # As text they are their values, never their names, wherever they are written out.
    for word in (*LaporStatus, *PostStatus, *LocalStatus):
        assert str(word) == f"{word}" == word.value
        assert json.dumps(word) == json.dumps(word.value)
    assert (
        ", ".join(m.LAPOR_STATUSES) == "terdisposisi, ditindaklanjuti, selesai, ditutup, diarsipkan"
    )


def test_change_ids_are_namespaced_by_tracker_kind() -> None:
    # The built-in tracker reads its changes in the pull's transaction without a kind.
    assert ChangeId.of("5") == ChangeId.builtin(5) == "builtin:5"
    assert ChangeId.of("builtin:5") == "builtin:5"
    assert ChangeId.of("redmine:7") == ChangeId.make("redmine", 7) == "redmine:7"
    assert ChangeId.of("redmine:7").kind == "redmine"
    assert ChangeId.builtin(5).kind == ChangeId("5").kind == "builtin"
    # Built-in keys carry the bare id (they predate kinds); others keep their kind.
    assert ChangeId("builtin:5").key_part == ChangeId("5").key_part == "5"
    assert ChangeId("redmine:7").key_part == "redmine:7"
    assert reasons.idempotency_key("n1", "41", "builtin:5") == "mahulu-n1-41-5"
    assert reasons.idempotency_key("n1", "41", "5") == "mahulu-n1-41-5"
    assert reasons.idempotency_key("n1", "41", "redmine:7", 2) == "mahulu-n1-41-redmine:7-k2"
    assert reasons.idempotency_key("", "41", "builtin:5") == "mahulu-41-5"


def test_plans_store_plain_text(db_url: str) -> None:
    """A plan's change id and status are stored as the plain text they were before."""
    c = m.Complaint(
        tracking_id="41",
        title="t",
        body="b",
        classification="pengaduan",
        category=m.Category(101, "Pelayanan Puskesmas", 1),
        status="terdisposisi",
        anonymous=False,
        confidential=False,
        reporter=None,
        channel="web",
        location=None,
        dispositions=(m.Disposition(6411003, "u", 6411, T0),),
        attachments=(),
        follow_ups=(),
        submitted_at=T0,
        updated_at=T0,
        deadline=None,
    )
    created = core.decide(c, None, MAPPINGS, 6411)
    assert isinstance(created, core.Create)
    link = created.link
    plans = [
        core.plan_outbox(
            OfficerChange("5", "9", "41", None, "in_progress", "Halo", T0), link, MAPPINGS
        ),
        core.plan_outbox(
            OfficerChange("redmine:7", "9", "41", "resolved", "resolved", None, T0), link, MAPPINGS
        ),
    ]
    store = Store(db_url)
    store.upgrade()
    for p in plans:
        assert p is not None
        key = reasons.idempotency_key("n1", p.tracking_id, p.change_id)
        store.run(functools.partial(state.enqueue, plan=p, key=key, failed_with=None, now=T0))
    cols = (
        schema.outbox.c.change_id,
        schema.outbox.c.lapor_status,
        schema.outbox.c.idempotency_key,
    )

    def read(conn: Connection) -> list[tuple[str, ...]]:
        return [tuple(r) for r in conn.execute(select(*cols).order_by(schema.outbox.c.id))]

    rows = store.run(read)
    store.close()
    assert rows == [
        ("builtin:5", "diproses", "mahulu-n1-41-5"),
        ("redmine:7", "selesai", "mahulu-n1-41-redmine:7"),
    ]
    assert all(type(v) is str for r in rows for v in r)
