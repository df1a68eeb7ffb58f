"""The tracker contract: one suite, every tracker behind the port.

Parametrised like ``db_url``: the built-in tracker always, Redmine where one runs
(``eval "$(.ci/redmine-start)"``; in CI it must). A new tracker joins by adding its
``Harness`` below.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from connector.runtime import open_store
from connector.settings import load_config
from connector.store import Store
from connector.tracker import redmine_mapping
from connector.tracker.base import Direction, NewMessage, NewTicket, TicketUpdate
from connector.tracker.builtin import BuiltinTracker, OfficerAction, TrackerRefusal
from connector.tracker.port import (
    CREATE,
    MESSAGE,
    UPDATE,
    Intent,
    Payload,
    TrackerPort,
    message_payload,
    ticket_payload,
    update_payload,
)
from connector.tracker.redmine import RedmineTracker
from connector.tracker.redmine_api import RedmineClient, RedmineRefused
from tests.conftest import (
    BACKENDS,
    REDMINE_URL,
    database,
    needs_redmine,
    redmine_clients,
    write_config,
)

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
STATUSES = ("new", "in_progress", "resolved", "closed")
REPORTER = {
    "name": "Budi Santoso Kontrak",
    "email": "budi.kontrak@example.org",
    "phone": "081234567890",
}
PROJECTS = {"DINKES": "dinkes", "DISDUKCAPIL": "disdukcapil"}


def _tid() -> str:
    return str(10**11 + uuid.uuid4().int % 10**11)


def ticket(tid: str, **kw: Any) -> NewTicket:
    now = datetime.now(UTC).replace(microsecond=0)
    base: dict[str, Any] = dict(
        tracking_id=tid,
        agency="DISDUKCAPIL",
        status="new",
        lapor_status="diproses",
        title="Jalan rusak di Long Bagun",
        body="Jalan <b>rusak</b> *parah*.",
        classification="pengaduan",
        category="Infrastruktur",
        channel="web",
        anonymous=False,
        confidential=False,
        reporter=REPORTER,
        location={"village": "Ujoh Bilang"},
        attachments=(),
        submitted_at=now,
        due_at=now + timedelta(days=5),
    )
    return NewTicket(**{**base, **kw})


_ids = iter(range(10**6, 10**7))


def intent(
    tid: str,
    kind: str,
    payload: Payload,
    attempts: int = 1,
    ref: str | None = None,
    intent_id: int | None = None,
) -> Intent:
    return Intent(intent_id or next(_ids), tid, kind, payload, attempts, ref)


@dataclass
class View:
    status: str
    agency: str | None  # by project, for Redmine
    private: bool
    text: str  # everything a reader of the ticket sees: description/body and notes
    notes: list[str]


class Harness:
    """A tracker plus what the test needs that the port does not offer: an officer's
    hands and a reader's eyes."""

    tracker: TrackerPort
    kind: str

    async def officer(
        self,
        ref: str,
        *,
        status: str | None = None,
        reply: str | None = None,
        note: str | None = None,
    ) -> None:
        raise NotImplementedError

    async def view(self, ref: str) -> View:
        raise NotImplementedError


class BuiltinHarness(Harness):
    kind = "builtin"

    def __init__(self, store: Store):
        self.store = store
        self.tracker = BuiltinTracker(STATUSES, store)

    async def officer(
        self,
        ref: str,
        *,
        status: str | None = None,
        reply: str | None = None,
        note: str | None = None,
    ) -> None:
        desk = self.tracker.desk()
        assert desk is not None
        self.store.run(
            lambda c: desk.officer_update(
                c, ref, OfficerAction(status, reply, note), datetime.now(UTC)
            )
        )

    async def view(self, ref: str) -> View:
        desk = self.tracker.desk()
        assert desk is not None
        t = self.store.run(lambda c: desk.show(c, ref))
        assert t is not None, ref
        notes = [m["text"] for m in t["messages"]]
        text = "\n".join([t["title"], t["body"], str(t["reporter"]), *notes])
        return View(t["status"], t["agency"], t["confidential"], text, notes)


class RedmineHarness(Harness):
    kind = "redmine"

    def __init__(self, connector: RedmineClient, officer: RedmineClient):
        self.rm = connector
        self.hands = officer
        mapping = redmine_mapping.load(ROOT / "mappings")

        class _M:
            def agency(self, code: str) -> Any:
                return SimpleNamespace(redmine_project=PROJECTS.get(code))

        self.mapping = mapping
        self.tracker = RedmineTracker(
            lambda: connector,
            mapping,
            "pengaduan",
            lambda: _M(),  # type: ignore[arg-type,return-value]
            str(connector.base_url),
        )

    async def officer(
        self,
        ref: str,
        *,
        status: str | None = None,
        reply: str | None = None,
        note: str | None = None,
    ) -> None:
        if note:
            await self.hands.update_issue(int(ref), notes=note, private_notes=True)
        if status or reply:
            await self.hands.update_issue(
                int(ref), status=self.mapping.to_redmine[status] if status else None, notes=reply
            )

    async def view(self, ref: str) -> View:
        issue = await self.rm.issue(int(ref), journals=True)
        assert issue is not None
        names = {s.id: s.name for s in await self.rm.statuses()}
        by_id = {}
        for code, ident in [*PROJECTS.items(), ("DEFAULT", "pengaduan")]:
            p = await self.rm.project(ident)
            assert p is not None
            by_id[p.id] = code
        notes = [j.notes for j in issue.journals if j.notes]
        local = self.mapping.local_status(names[issue.status_id]) or "?"
        # What a reader sees: the entities that keep LAPOR!'s fields inert Textile shown as
        # the characters they stand for, and not the zero-width spaces that keep a "<", "#"
        # or "@" from starting markup (tests/test_redmine_render.py renders them).
        seen = html.unescape("\n".join([issue.subject, issue.description or "", *notes])).replace(
            "\u200b", ""
        )
        return View(local, by_id.get(issue.project_id), issue.is_private, seen, notes)


# The built-in tracker on every backend; Redmine keeps nothing in the connector's database.
@pytest.fixture(
    params=[*(f"builtin-{b}" for b in BACKENDS), pytest.param("redmine", marks=needs_redmine)]
)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param.startswith("builtin-"):
        with database(request.param.removeprefix("builtin-"), tmp_path, request.node) as url:
            store = open_store(load_config(write_config(tmp_path, url), environ={}))
            try:
                yield BuiltinHarness(store)
            finally:
                store.close()
        return
    async with redmine_clients() as (connector, officer):
        yield RedmineHarness(connector, officer)


async def _create(h: Harness, t: NewTicket) -> str:
    return await h.tracker.apply(intent(t.tracking_id, CREATE, ticket_payload(t)))


async def test_create_is_find_or_create(harness: Harness) -> None:
    t = ticket(_tid())
    assert await harness.tracker.find(t.tracking_id) is None
    ref = await _create(harness, t)
    assert await harness.tracker.find(t.tracking_id) == ref
    # The worker was killed after the create, before recording it: the repeat finds it.
    again = await harness.tracker.apply(
        intent(t.tracking_id, CREATE, ticket_payload(t), attempts=2)
    )
    assert again == ref
    v = await harness.view(ref)
    assert v.status == "new" and not v.private
    assert REPORTER["phone"] in v.text and "rusak" in v.text


async def test_rahasia_is_restricted_and_anonim_carries_no_reporter(harness: Harness) -> None:
    secret = await _create(harness, ticket(_tid(), confidential=True))
    assert (await harness.view(secret)).private
    anon = await _create(harness, ticket(_tid(), anonymous=True, reporter=None))
    assert REPORTER["name"] not in (await harness.view(anon)).text


async def test_update_moves_and_closes(harness: Harness) -> None:
    t = ticket(_tid())
    ref = await _create(harness, t)
    tid = t.tracking_id
    up = TicketUpdate("diproses", status="in_progress", agency="DINKES")
    for attempts in (1, 2):  # a repeat changes nothing
        assert (
            await harness.tracker.apply(intent(tid, UPDATE, update_payload(up), attempts, ref))
            == ref
        )
    v = await harness.view(ref)
    assert (v.status, v.agency) == ("in_progress", "DINKES")
    close = TicketUpdate("ditutup", status="closed", reason="ditutup di LAPOR!")
    await harness.tracker.apply(intent(tid, UPDATE, update_payload(close), 1, ref))
    assert (await harness.view(ref)).status == "closed"


async def test_later_anonim_and_rahasia_reach_the_ticket(harness: Harness) -> None:
    t = ticket(_tid())
    ref = await _create(harness, t)
    assert REPORTER["email"] in (await harness.view(ref)).text
    up = TicketUpdate(
        "diproses",
        title=t.title,
        body="Teks yang sudah disunting admin.",
        anonymous=True,
        confidential=True,
    )
    await harness.tracker.apply(intent(t.tracking_id, UPDATE, update_payload(up), 1, ref))
    v = await harness.view(ref)
    assert v.private and "disunting admin" in v.text
    for value in REPORTER.values():
        assert value not in v.text


async def test_a_message_is_written_once(harness: Harness) -> None:
    t = ticket(_tid())
    ref = await _create(harness, t)
    msg = NewMessage(
        Direction.IN,
        "Pelapor (LAPOR!)",
        "Mohon segera ditangani.",
        datetime.now(UTC).replace(microsecond=0),
        "tl-" + t.tracking_id,
    )
    iid = next(_ids)
    for attempts in (1, 2, 3):  # killed after the write, before it was recorded: twice more
        await harness.tracker.apply(
            intent(t.tracking_id, MESSAGE, message_payload(msg), attempts, ref, iid)
        )
    v = await harness.view(ref)
    assert sum("Mohon segera ditangani." in n for n in v.notes) == 1


async def test_officer_changes_come_back_and_echoes_do_not(harness: Harness) -> None:
    t = ticket(_tid())
    tr = harness.tracker
    _, cursor = await tr.changes_since(None)
    ref = await _create(harness, t)
    # The connector's own writes: never officer changes.
    up = TicketUpdate("diproses", status="in_progress", reason="status LAPOR! berubah")
    await tr.apply(intent(t.tracking_id, UPDATE, update_payload(up), 1, ref))
    msg = NewMessage(Direction.IN, "Pelapor (LAPOR!)", "Balasan pelapor.", datetime.now(UTC), "f1")
    await tr.apply(intent(t.tracking_id, MESSAGE, message_payload(msg), 1, ref))
    changes, cursor = await tr.changes_since(cursor)
    assert [c for c in changes if c.tracking_id == t.tracking_id] == []
    # An officer: a public note with a status, a private note, then resolved.
    await harness.officer(ref, status="in_progress", reply="Sedang kami periksa.")
    await harness.officer(ref, note="catatan internal")
    await harness.officer(ref, status="resolved", reply="Sudah diperbaiki.")
    changes, cursor2 = await tr.changes_since(cursor)
    mine = [c for c in changes if c.tracking_id == t.tracking_id]
    assert [(c.status, c.reply) for c in mine] == [
        (None, "Sedang kami periksa."),
        ("resolved", "Sudah diperbaiki."),
    ] or [(c.status, c.reply) for c in mine] == [
        ("in_progress", "Sedang kami periksa."),
        ("resolved", "Sudah diperbaiki."),
    ]
    assert all(c.change_id.startswith(f"{tr.kind}:") and c.ticket_ref == ref for c in mine)
    assert mine[-1].ticket_status == "resolved"
    assert len({c.change_id for c in mine}) == 2
    # Read again from the same cursor: the same ids (the outbox is idempotent by them).
    again, _ = await tr.changes_since(cursor)
    assert [c.change_id for c in again if c.tracking_id == t.tracking_id] == [
        c.change_id for c in mine
    ]
    assert "catatan internal" not in {c.reply for c in mine}
    assert cursor2 is not None


async def test_apply_before_create_is_a_visible_refusal(harness: Harness) -> None:
    up = TicketUpdate("diproses", status="in_progress")
    with pytest.raises((TrackerRefusal, RedmineRefused)):  # what each tracker refuses with
        await harness.tracker.apply(intent(_tid(), UPDATE, update_payload(up)))


def test_payloads_round_trip() -> None:
    from connector.tracker.port import message_from, ticket_from, update_from

    t = ticket("123")
    assert ticket_from(ticket_payload(t)) == t
    u = TicketUpdate("diproses", status="closed", due_at=t.due_at, reason="x", title="a")
    assert update_from(update_payload(u)) == u
    m = NewMessage(Direction.IN, "a", "b", t.submitted_at, "9")
    from connector.tracker.port import message_from as mf

    assert mf(message_payload(m)) == m and message_from is mf
    assert replace(t, messages=()) == ticket_from(ticket_payload(t))
    _ = REDMINE_URL
