"""Intake that never stalls: hostile records, future clocks, late commits, privacy later.

The hostile answers are made by a transport that rewrites what the sandbox sends, so
the connector is tested against answers our own sandbox would never give by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog.testing

from connector.errors import InvalidRecord
from connector.lapor import models as m
from connector.lapor import wire
from connector.sandbox import Faults, World, create_app
from connector.store import state
from connector.store.keys import StateKey
from connector.sync import core
from connector.sync.core import Reason
from connector.timeutil import format_wib
from tests.conftest import PG_URL, FakeTime
from tests.factories import good_record
from tests.harness import Harness

pytestmark = pytest.mark.anyio
Rewrite = Callable[[str, dict[str, Any]], dict[str, Any] | bytes | None]


class Rewriter(httpx.AsyncBaseTransport):
    """Passes requests to the sandbox; ``rewrite(path, doc)`` may change an answer
    (a new document, raw bytes, or None for unchanged)."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.rewrite: Rewrite | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        if self.rewrite is None or resp.status_code != 200:
            return resp
        body = await resp.aread()
        out = self.rewrite(request.url.path, json.loads(body))
        if out is None:
            return httpx.Response(200, headers={"Content-Type": "application/json"}, content=body)
        raw = out if isinstance(out, bytes) else json.dumps(out).encode()
        return httpx.Response(200, headers={"Content-Type": "application/json"}, content=raw)


@pytest.fixture
def world(fake_time: FakeTime) -> World:
    return World(seed=5, complaints=20, faults=Faults(rate_limit_per_minute=0), clock=fake_time)


@pytest.fixture
def rw(world: World) -> Rewriter:
    return Rewriter(httpx.ASGITransport(app=create_app(world)))


@pytest.fixture
def h(tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, rw: Rewriter) -> Harness:
    return Harness(tmp_path / "site", db_url, world, fake_time, transport=rw)


def new_complaints(h: Harness, n: int) -> list[str]:
    out = []
    for _ in range(n):
        h.time.t += 2
        out.append(str(h.world.add_complaints(1)[0]))
    return out


def detail_path(tid: str) -> str:
    return f"/api/v3/laporan/{tid}"


async def test_hostile_records_never_stop_the_rest(h: Harness, rw: Rewriter) -> None:
    await h.sync()
    zero_opt, zero_req, surrogate, nul, cut, deep, too_long = new_complaints(h, 7)
    future = new_complaints(h, 1)[0]
    h.world.records[int(future)]["diperbarui"] = h.world.now() + timedelta(days=1)
    ordinary = new_complaints(h, 5)
    truncated_once: set[str] = set()

    def rewrite(path: str, doc: dict[str, Any]) -> dict[str, Any] | bytes | None:
        data = doc["data"]
        if path == detail_path(zero_opt):
            data["batas_tindak_lanjut"] = "0001-01-01 00:00:00"
        elif path == detail_path(zero_req):
            data["dibuat"] = "0001-01-01 00:00:00"
        elif path == detail_path(surrogate):
            data["judul"] = "Jalan rusak \ud800 di kampung"
        elif path == detail_path(nul):
            data["isi"] = "Air\x00 keruh"
            data["tindak_lanjut"] = [
                {
                    "id": 99001,
                    "oleh": "pelapor",
                    "unit_id": None,
                    "status": None,
                    "isi": "mohon\x00 cepat",
                    "dibuat": data["dibuat"],
                }
            ]
        elif path == detail_path(cut) and cut not in truncated_once:
            truncated_once.add(cut)
            return json.dumps(doc).encode()[:150]
        elif path == detail_path(deep):
            return b'{"status":"ok","data":{"x":' + b"[" * 100000 + b"]" * 100000 + b"}}"
        elif path == detail_path(too_long):
            data["kategori"]["nama"] = "K" * 201
        else:
            return None
        return doc

    rw.rewrite = rewrite
    with structlog.testing.capture_logs() as logs:
        await h.sync()
        await h.sync()
    tickets = {t["tracking_id"]: t for t in h.tickets()}
    held = {q["tracking_id"]: q for q in h.quarantine()}
    for tid in ordinary:
        assert tid in tickets, f"ordinary complaint {tid} after hostile ones is missing"
    # Repaired and kept: a ticket each, the repair noted (fields, never values).
    assert tickets[zero_opt]["due_at"] is not None
    assert "\ufffd" in tickets[surrogate]["title"]
    assert tickets[nul]["body"] == "Air keruh"
    assert any(m["text"] == "mohon cepat" for m in tickets[nul]["messages"])
    notes = [m["text"] for m in tickets[nul]["messages"] if m["direction"] == "internal"]
    assert any("isi: NUL removed" in n for n in notes)
    # The cut-off answer was transient: a ticket on the next sync.
    assert cut in tickets and cut not in held
    # Not repairable: quarantined, the reason naming the field.
    assert held[zero_req]["reason"] == Reason.INVALID_RECORD
    assert "dibuat" in held[zero_req]["detail"]
    assert held[deep]["reason"] == Reason.INVALID_RECORD and "nesting" in held[deep]["detail"]
    assert "kategori.nama" in held[too_long]["detail"]
    # The record from the future is processed, but the watermark stays at the server's clock.
    assert future in tickets
    wm = h.store.run(state.get_watermark)
    assert wm is not None and wm <= h.world.now()
    warned = [e for e in logs if e["event"] == "record_from_the_future"]
    assert len(warned) == 1 and warned[0]["tracking_id"] == future
    assert 86000 < warned[0]["skew_s"] <= 86400
    for e in logs:  # no value in any log line
        assert "keruh" not in json.dumps(e, default=str)
    # Later complaints still arrive.
    later = new_complaints(h, 3)
    await h.sync()
    assert set(later) <= {t["tracking_id"] for t in h.tickets()}


async def test_storage_refusing_one_records_values_quarantines_that_record_alone(
    h: Harness, rw: Rewriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the repairs (as if a new kind of bad value slipped through), the database's
    refusal hits one record: it is quarantined and the rest of the chunk commits."""
    await h.sync()
    bad, *good = new_complaints(h, 4)
    monkeypatch.setattr(wire, "needs_cleaning", lambda body: False)

    def rewrite(path: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        if path == detail_path(bad):
            doc["data"]["judul"] = "Lampu mati \ud800"
            doc["data"]["isi"] = "x\x00y"
            return doc
        return None

    rw.rewrite = rewrite
    pulled, _ = await h.sync()
    tickets = {t["tracking_id"] for t in h.tickets()}
    assert set(good) <= tickets and bad not in tickets
    held = {q["tracking_id"]: q for q in h.quarantine()}
    assert "refused by the database" in held[bad]["detail"]
    assert pulled["quarantined"] >= 1
    wm = h.store.run(state.get_watermark)
    assert wm is not None and wm >= h.world.records[int(good[-1])]["diperbarui"]


async def test_a_404_once_becomes_a_ticket_within_a_few_syncs(h: Harness) -> None:
    await h.sync()
    h.world.set_faults({"not_found_once_rate": 1.0})
    tid = new_complaints(h, 1)[0]
    await h.sync()
    assert [q["reason"] for q in h.quarantine()] == ["not_found"]
    for _ in range(3):  # ordinary syncs, back to back
        h.time.t += 1
        await h.sync()
        if not h.quarantine():
            break
    assert tid in {t["tracking_id"] for t in h.tickets()} and h.quarantine() == []


async def test_transient_quarantine_backs_off(h: Harness, rw: Rewriter) -> None:
    await h.sync()
    tid = new_complaints(h, 1)[0]
    rw.rewrite = lambda path, doc: b"{" if path == detail_path(tid) else None
    for _ in range(8):
        await h.pull()
    (entry,) = h.quarantine()
    assert entry["reason"] == "truncated_response"
    assert entry["attempts"] == 4  # three retries at once, then it waits (a minute, doubling)
    h.time.t += 61
    await h.pull()
    await h.pull()
    assert h.quarantine()[0]["attempts"] == 5
    rw.rewrite = None
    h.time.t += 121
    await h.pull()
    assert h.quarantine() == [] and tid in {t["tracking_id"] for t in h.tickets()}


async def test_sweep_recovers_a_commit_an_hour_late_and_costs_pages_only(h: Harness) -> None:
    await h.sync()
    new_complaints(h, 2)
    h.time.t += 600
    await h.sync()
    h.world.set_faults({"late_commit_s": 3600, "late_commit_rate": 1.0})
    late = new_complaints(h, 1)[0]  # committed "an hour in the past"
    h.world.set_faults({"late_commit_rate": 0.0})
    await h.sync()
    assert late not in {t["tracking_id"] for t in h.tickets()}  # beyond the overlap
    with structlog.testing.capture_logs() as logs:
        swept = await h.sweep()
    assert late in {t["tracking_id"] for t in h.tickets()}
    found = [e for e in logs if e["event"] == "late_record_recovered"]
    assert [e["tracking_id"] for e in found] == [late] and found[0]["lag_s"] >= 2900
    assert swept["late"] == 1 and swept["sweep"] == 1
    assert h.store.run(lambda c: state.get_value(c, StateKey.LAST_SWEEP))
    # A sweep over an unchanged feed: pages only, no detail request.
    details, feeds = h.client.requests["detail"], h.client.requests["feed"]
    again = await h.sweep()
    assert h.client.requests["detail"] == details and h.client.requests["feed"] > feeds
    assert again["late"] == 0 and again["created"] == again["updated"] == 0


async def test_a_sweep_cut_short_by_a_stop_is_not_recorded_as_done(h: Harness) -> None:
    """Otherwise the next sweep would wait a whole interval after a SIGTERM mid-sweep."""
    await h.sync()
    h.ctx.stopping.set()
    swept = await h.sweep()
    assert swept["sweep"] == 1
    assert not h.store.run(lambda c: state.get_value(c, StateKey.LAST_SWEEP))
    h.ctx.stopping.clear()
    await h.sweep()
    assert h.store.run(lambda c: state.get_value(c, StateKey.LAST_SWEEP))


async def test_dedupe_keeps_feed_order_with_a_commit_in_mid_page(
    tmp_path: Path, db_url: str, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(seed=3, complaints=0, faults=Faults(rate_limit_per_minute=0), clock=fake_time)
    rw = Rewriter(httpx.ASGITransport(app=create_app(world)))
    h = Harness(
        tmp_path / "site",
        db_url,
        world,
        fake_time,
        transport=rw,
        extra_settings="\n[sync]\noverlap_s = 0\n",
        settings={"lapor": {"detail_concurrency": 1}},
    )  # two records per batch
    h.ctx.cadence = core.Cadence(records=1)  # a commit after every batch: in mid-page
    ids = new_complaints(h, 6)
    first = ids[0]

    def rewrite(path: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        if path != "/api/v3/laporan":
            return None
        items = doc["data"]
        dup = next((i for i in items if str(i["tracking_id"]) == first), None)
        if dup is not None:
            items.insert(3, dict(dup))  # the same record, same diperbarui, later on the page
        return doc

    rw.rewrite = rewrite
    updated = {t: h.world.records[int(t)]["diperbarui"] for t in ids}
    violations: list[str] = []
    original = state.advance_watermark

    def spy(conn: Any, candidate: datetime, now: datetime | None = None) -> datetime:
        linked = state.get_links(conn, ids)
        violations.extend(t for t, u in updated.items() if u < candidate and t not in linked)
        return original(conn, candidate, now)

    monkeypatch.setattr(state, "advance_watermark", spy)
    await h.pull()
    assert violations == []  # no commit carried the watermark past an uncommitted record
    assert {t["tracking_id"] for t in h.tickets()} == set(ids)


async def test_later_privacy_and_edits_reach_the_ticket(h: Harness) -> None:
    await h.sync()
    rec = next(
        r
        for r in h.world.records.values()
        if r["pelapor"] and h.world.visible(r["tracking_id"]) and r["status"] == "terdisposisi"
    )
    tid, name = rec["tracking_id"], rec["pelapor"]["nama"]
    h.time.t += 5
    h.world.append_follow_up(
        rec, "pelapor", None, None, f"Saya {name}, mohon dibantu.", h.world.now()
    )
    rec["diperbarui"] = h.world.now()
    await h.sync()
    t = h.ticket(tid)
    reporter = t["reporter"]
    assert (
        reporter is not None
        and reporter["name"] == name
        and any(name in m["text"] for m in t["messages"])
    )
    h.time.t += 5
    rec.update(
        anonim=True,
        pelapor=None,
        rahasia=True,
        judul="Judul disunting admin",
        isi="Isi disunting admin.",
        diperbarui=h.world.now(),
    )
    pulled, _ = await h.sync()
    assert pulled["updated"] >= 1
    t = h.ticket(tid)
    assert t["anonymous"] and t["reporter"] is None and t["restricted"]
    assert t["title"] == "Judul disunting admin" and t["body"] == "Isi disunting admin."
    assert not [m for m in t["messages"] if name in m["text"] or name in m["author"]]
    dumped = json.dumps(h.dump(), default=str)
    assert name not in dumped  # nowhere in the local database
    # Unchanged afterwards: nothing more to apply.
    before = h.dump()
    h.time.t += 5
    await h.sync()
    after = h.dump()
    assert all(after[k] == before[k] for k in ("tickets", "messages", "status_history"))


@pytest.mark.skipif(not PG_URL, reason="the PostgreSQL leg needs LAPOR_TEST_PG_URL")
def test_same_length_limits_on_both_backends() -> None:
    # Enforced in the wire models, before any database: 31-digit ids, 200-character names.
    ok = wire.parse_summary(
        {
            "tracking_id": 10**31 - 1,
            "judul": "",
            "status": "selesai",
            "diperbarui": "2026-11-27 10:00:00",
            "unit_ids": [],
        }
    )
    assert not isinstance(ok, m.BadSummary)
    bad = wire.parse_summary(
        {
            "tracking_id": 10**31,
            "judul": "",
            "status": "selesai",
            "diperbarui": "2026-11-27 10:00:00",
            "unit_ids": [],
        }
    )
    assert isinstance(bad, m.BadSummary) and bad.tracking_id == "unknown"


def test_zero_dates_and_overflow_are_named_never_raised() -> None:

    for key in ("dibuat", "diperbarui"):
        for value in ("0001-01-01 00:00:00", "0000-00-00 00:00:00", "0001-01-01 06:59:59"):
            raw = {**good_record(), key: value}
            with pytest.raises(InvalidRecord) as exc:
                wire.parse_complaint(raw, "4100001")
            assert exc.value.fields == [key]
    c = wire.parse_complaint(
        {**good_record(), "batas_tindak_lanjut": "0001-01-01 00:00:00"}, "4100001"
    )
    assert c.deadline is None and c.repairs == ("batas_tindak_lanjut: zero date treated as absent",)
    far = wire.parse_complaint(
        {**good_record(), "batas_tindak_lanjut": "9999-12-31 23:59:59"}, "4100001"
    )
    assert far.deadline == datetime(9999, 12, 31, 16, 59, 59, tzinfo=UTC)
    assert format_wib(far.deadline).startswith("9999")


async def test_one_unsendable_follow_up_does_not_stop_the_others(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await h.sync()
    opened = [t for t in h.tickets() if t["status"] == "new"][:3]
    for t in opened:
        h.officer(t["id"], status="in_progress", reply=f"Ditangani {t['id']}.")
    poisoned = opened[0]["tracking_id"]
    original = wire.follow_up_body

    def body(req: m.FollowUpRequest) -> dict[str, Any]:
        if req.text == f"Ditangani {opened[0]['id']}.":
            raise ValueError("cannot encode")
        return original(req)

    monkeypatch.setattr(wire, "follow_up_body", body)
    _, pushed = await h.sync()
    states = {e["tracking_id"]: e for e in h.outbox()}
    assert states[poisoned]["state"] == "failed"
    assert states[poisoned]["last_error"] == "data_lokal_tidak_valid"
    assert pushed["pushed"] == 2 and all(
        states[t["tracking_id"]]["state"] == "sent" for t in opened[1:]
    )


def test_officer_text_is_repaired_before_storage(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.cli import main
    from tests.conftest import write_config

    cfg = write_config(tmp_path / "site", db_url)
    assert main(["--config", str(cfg), "sync"]) == 0
    # Undecodable bytes in argv arrive as lone surrogates (surrogateescape).
    assert main(["--config", str(cfg), "tickets", "update", "1", "--note", "catatan \udcff"]) == 0
    capsys.readouterr()
    assert main(["--config", str(cfg), "tickets", "show", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert any(msg["text"] == "catatan \ufffd" for msg in shown["messages"])


async def test_raw_control_bytes_and_broken_utf8_are_repaired(h: Harness, rw: Rewriter) -> None:
    await h.sync()
    tid = new_complaints(h, 1)[0]
    feed_tid = new_complaints(h, 1)[0]

    def rewrite(path: str, doc: dict[str, Any]) -> bytes | None:
        raw = json.dumps(doc).encode()
        if path == detail_path(tid):
            # A raw NUL and a raw tab inside strings, and bytes that are not UTF-8.
            return raw.replace(b'"isi": "', b'"isi": "a\x00\tb\xff\xfe ', 1)
        if path == "/api/v3/laporan" and feed_tid.encode() in raw:
            return raw.replace(b'"judul": "', b'"judul": "\xc3\x28\x07', 1)
        return None

    rw.rewrite = rewrite
    await h.sync()
    t = h.ticket(tid)
    assert t["body"].startswith("a\tb\ufffd\ufffd ") and "\x00" not in t["body"]
    assert feed_tid in {x["tracking_id"] for x in h.tickets()}
    assert h.quarantine() == []
