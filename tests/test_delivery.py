"""Delivery that never doubles: forgotten keys, unreadable answers, strict order, keys.

The sandbox forgets Idempotency-Keys after ``idempotency_ttl_s`` and can stay down after
a dropped answer; the connector runs with the same short key lifetime on a fake clock.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.domain import LinkState
from connector.errors import LaporUnavailable, VerifyFirst
from connector.lapor import models as m
from connector.lapor import reasons
from connector.sandbox import Faults, World, create_app
from connector.store import state
from connector.store.keys import StateKey
from connector.sync import core
from connector.tracker.base import OfficerChange
from connector.tracker.rows import TicketJSON
from tests.conftest import FakeTime
from tests.factories import narrow
from tests.harness import Harness

pytestmark = pytest.mark.anyio
TTL = {"LAPOR_CONNECTOR_LAPOR__IDEMPOTENCY_TTL_S": "3"}


@pytest.fixture
def world(fake_time: FakeTime) -> World:
    return World(seed=23, complaints=12, faults=Faults(rate_limit_per_minute=0), clock=fake_time)


@pytest.fixture
def h(tmp_path: Path, db_url: str, world: World, fake_time: FakeTime) -> Harness:
    return Harness(tmp_path / "site", db_url, world, fake_time)


def short_ttl(tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, **kw: Any) -> Harness:
    world.set_faults({"idempotency_ttl_s": 3})
    return Harness(tmp_path / "site", db_url, world, fake_time, environ=TTL, **kw)


def posts_with(world: World, text: str) -> list[dict[str, Any]]:
    return [
        fu for rec in world.records.values() for fu in rec["tindak_lanjut"] if fu["isi"] == text
    ]


async def reply_on_open_ticket(h: Harness, text: str) -> TicketJSON:
    await h.sync()
    t = next(x for x in h.tickets() if x["status"] == "new")
    h.officer(t["id"], reply=text)
    return t


@pytest.mark.parametrize("skew_s", [0, -3600, 700])
async def test_done_when_lost_answer_then_outage_past_the_key_lifetime(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, skew_s: int
) -> None:
    """The issue's check: keys forgotten after 3 s, the answer to a committed follow-up
    dropped, then 503 for 8 s. Exactly one follow-up, and the entry ends sent; also when
    LAPOR!'s clock runs an hour behind ours, or ahead of it."""
    world.set_faults({"clock_offset_s": skew_s})
    h = short_ttl(tmp_path, db_url, world, fake_time)
    text = "Petugas kami sudah meninjau lokasi pada hari ini."
    await reply_on_open_ticket(h, text)
    world.set_faults({"drop_post_rate": 1.0, "down_after_drop_s": 8})
    with pytest.raises(VerifyFirst):
        await h.push()  # retries inside the call stop before the key may be forgotten
    assert len(posts_with(world, text)) == 1
    [entry] = h.outbox()
    assert entry["state"] == "pending" and entry["first_attempt_at"] is not None
    world.set_faults({"drop_post_rate": 0.0})
    for _ in range(6):  # cycles during and after the outage
        fake_time.t += 30
        with contextlib.suppress(LaporUnavailable):
            await h.push()
    [entry] = h.outbox()
    [post] = posts_with(world, text)
    assert entry["state"] == "sent" and entry["remote_id"] == str(post["id"])
    assert entry["key_changes"] == 0 and world.posts_created == 1
    h.check_follow_ups_once()


async def test_outage_before_any_post_got_through_posts_once_with_a_fresh_key(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    h = short_ttl(tmp_path, db_url, world, fake_time)
    text = "Balasan yang tertahan oleh pemeliharaan."
    await reply_on_open_ticket(h, text)
    world.set_faults({"maintenance_s": 20})
    with pytest.raises((LaporUnavailable, VerifyFirst)):
        await h.push()
    [before] = h.outbox()
    fake_time.t += 3600
    await h.push()
    [after] = h.outbox()
    assert after["state"] == "sent" and after["key_changes"] == 1
    assert after["idempotency_key"] != before["idempotency_key"]
    assert after["idempotency_key"].endswith("-k1")
    assert len(posts_with(world, text)) == 1


async def posted_then_died(h: Harness, world: World, fake_time: FakeTime, text: str) -> None:
    """A reply whose POST reached LAPOR! but whose process died before the commit; a day
    later, so LAPOR! has forgotten the key."""
    t = await reply_on_open_ticket(h, text)
    [entry] = h.outbox()
    now = h.ctx.now()
    h.store.run(lambda c: state.start_attempt(c, entry["id"], now))
    unit = h.store.run(
        lambda c: core.posting_unit(
            narrow(LinkState, state.get_link(c, t["tracking_id"])), h.mappings()
        )
    )
    assert unit is not None
    world.post_follow_up(
        int(t["tracking_id"]),
        6411,
        entry["idempotency_key"],
        {"unit_id": unit, "status": "diproses", "isi": text},
    )
    fake_time.t += 86400


async def test_a_restart_after_the_key_lifetime_finds_the_post_instead_of_reposting(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    """A process died between its POST and the commit; it comes back a day later."""
    h = short_ttl(tmp_path, db_url, world, fake_time)
    text = "Dikirim sebelum proses mati."
    await posted_then_died(h, world, fake_time, text)
    stats = await h.push()
    [after] = h.outbox()
    assert after["state"] == "sent" and stats["verified"] == 1
    assert len(posts_with(world, text)) == 1 and world.posts_created == 1


async def test_an_unreadable_answer_while_verifying_waits_never_fails_or_reposts(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    h = short_ttl(tmp_path, db_url, world, fake_time)
    text = "Dikirim, lalu jawaban detail terpotong saat diperiksa."
    await posted_then_died(h, world, fake_time, text)
    world.set_faults({"truncated_rate": 1.0})
    await h.push()
    [waiting] = h.outbox()
    assert waiting["state"] == "pending" and waiting["key_changes"] == 0
    world.set_faults({"truncated_rate": 0.0})
    fake_time.t += 3600
    stats = await h.push()
    [after] = h.outbox()
    assert after["state"] == "sent" and stats["verified"] == 1
    assert len(posts_with(world, text)) == 1


async def test_an_older_identical_post_is_not_taken_for_ours(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    h = short_ttl(tmp_path, db_url, world, fake_time)
    text = "Terima kasih, laporan sedang kami proses."
    t = await reply_on_open_ticket(h, text)
    rec = world.records[int(t["tracking_id"])]
    unit = rec["disposisi"][0]["unit_id"]
    long_ago = world.now() - timedelta(days=3)
    # An officer, days ago:
    world.append_follow_up(rec, "instansi", unit, "diproses", text, long_ago)
    [entry] = h.outbox()
    now = h.ctx.now()
    h.store.run(lambda c: state.start_attempt(c, entry["id"], now))
    fake_time.t += 60
    await h.push()
    [after] = h.outbox()
    assert after["state"] == "sent" and after["key_changes"] == 1
    assert len(posts_with(world, text)) == 2  # the old one and ours


class Garble(httpx.AsyncBaseTransport):
    """Passes through to the sandbox, but a follow-up POST's success answer arrives broken;
    with ``swallow``, the POST never reaches LAPOR! at all."""

    def __init__(self, world: World, swallow: bool = False):
        self.inner = httpx.ASGITransport(app=create_app(world))
        self.swallow = swallow
        self.posts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/tindak-lanjut"):
            self.posts += 1
            if self.swallow:
                return httpx.Response(201, json={"status": "ok", "data": {"id": "?"}})
            resp = await self.inner.handle_async_request(request)
            await resp.aread()
            if resp.status_code in (200, 201):
                return httpx.Response(resp.status_code, content=b'{"status": "ok", "data": ')
            return resp
        return await self.inner.handle_async_request(request)


async def test_unreadable_success_answer_is_confirmed_by_reading_never_reposted(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    garble = Garble(world)
    h = Harness(tmp_path / "site", db_url, world, fake_time, transport=garble)
    text = "Jawaban ini sampai, tetapi tanda terimanya rusak."
    await reply_on_open_ticket(h, text)
    stats = await h.push()
    [entry] = h.outbox()
    assert stats["unconfirmed"] == 1 and entry["state"] == "unconfirmed"
    assert entry["last_error"] == "answer_unreadable"
    await h.pull()  # the pull recognises the post as ours while it is unconfirmed
    t = h.ticket(entry["tracking_id"])
    assert sum(1 for msg in t["messages"] if msg["text"] == text) == 1
    fake_time.t += 120
    stats = await h.push()
    [entry] = h.outbox()
    [post] = posts_with(world, text)
    assert entry["state"] == "sent" and entry["remote_id"] == str(post["id"])
    assert stats["verified"] == 1 and garble.posts == 1


async def test_unconfirmed_entry_is_confirmed_even_after_the_complaint_closes(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    garble = Garble(world)
    h = Harness(tmp_path / "site", db_url, world, fake_time, transport=garble)
    text = "Dikirim tepat sebelum laporan diarsipkan."
    await reply_on_open_ticket(h, text)
    await h.push()
    [entry] = h.outbox()
    assert entry["state"] == "unconfirmed"
    world.event("archive", int(entry["tracking_id"]))
    fake_time.t += 120
    await h.pull()
    assert h.outbox()[0]["state"] == "unconfirmed"  # delivered: not failed by the closure
    await h.push()
    [entry] = h.outbox()
    assert entry["state"] == "sent" and garble.posts == 1 and len(posts_with(world, text)) == 1


async def test_unreadable_answer_never_found_goes_to_the_operator_not_a_loop(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    garble = Garble(world, swallow=True)
    h = Harness(tmp_path / "site", db_url, world, fake_time, transport=garble)
    await reply_on_open_ticket(h, "Tidak pernah sampai.")
    for _ in range(10):
        await h.push()
        fake_time.t += 3600
    [entry] = h.outbox()
    assert entry["state"] == "failed" and entry["last_error"] == "tidak_terkonfirmasi"
    assert garble.posts == 1


async def test_a_failed_entry_holds_back_later_ones_until_dismissed(
    h: Harness, world: World
) -> None:
    await h.sync()
    t = next(x for x in h.tickets() if x["status"] == "new")
    h.officer(t["id"], status="resolved", reply="Selesai dikerjakan.")
    h.officer(t["id"], status="in_progress", reply="Dibuka lagi.")
    first, second = h.outbox()
    h.store.run(lambda c: state.mark_failed(c, first["id"], "validasi_gagal"))
    stats = await h.push()
    assert stats["pushed"] == 0 and world.posts_created == 0
    assert h.store.run(state.held_back) == 1
    assert h.store.run(lambda c: state.dismiss(c, second["id"], "x", h.ctx.now())) == 0
    assert h.store.run(lambda c: state.dismiss(c, first["id"], "dikirim manual", h.ctx.now())) == 1
    await h.push()
    first, second = h.outbox()
    assert first["state"] == "dismissed" and first["dismiss_reason"] == "dikirim manual"
    assert second["state"] == "sent" and world.posts_created == 1


async def test_a_late_retry_goes_before_later_entries(h: Harness, world: World) -> None:
    """Otherwise a retried `diproses` lands after `selesai` and reads as an objection."""
    await h.sync()
    t = next(x for x in h.tickets() if x["status"] == "new")
    h.officer(t["id"], status="in_progress", reply="Sedang dikerjakan.")
    h.officer(t["id"], status="resolved", reply="Sudah selesai.")
    first, _ = h.outbox()
    h.store.run(lambda c: state.mark_failed(c, first["id"], "unavailable"))
    await h.push()
    h.store.run(lambda c: state.retry_failed(c, first["id"], h.ctx.now()))
    await h.push()
    assert [e["state"] for e in h.outbox()] == ["sent", "sent"]
    rec = world.records[int(t["tracking_id"])]
    assert [fu["status"] for fu in rec["tindak_lanjut"] if fu["oleh"] == "instansi"][-2:] == [
        "diproses",
        "selesai",
    ]
    assert rec["status"] == "selesai"


async def test_posting_unit_is_fixed_when_the_entry_is_made(h: Harness, world: World) -> None:
    await h.sync()
    t = next(x for x in h.tickets() if x["status"] == "new")
    h.officer(t["id"], reply="Unit tetap.")
    [entry] = h.outbox()
    rec = world.records[int(t["tracking_id"])]
    assert entry["unit_id"] == rec["disposisi"][0]["unit_id"]
    # The mapping changes before the send: the body (and so the key's meaning) does not.
    h.store.run(
        lambda c: state.save_link(
            c,
            replace(narrow(LinkState, state.get_link(c, t["tracking_id"])), agency="ELSEWHERE"),
            h.ctx.now(),
        )
    )
    await h.push()
    [fu] = [f for f in rec["tindak_lanjut"] if f["isi"] == "Unit tetap."]
    assert fu["unit_id"] == entry["unit_id"] and h.outbox()[0]["state"] == "sent"


async def test_keys_carry_a_per_database_nonce(
    tmp_path: Path, db_url: str, another_db: Callable[[], str], world: World, fake_time: FakeTime
) -> None:
    a = Harness(tmp_path / "a", db_url, world, fake_time)
    b = Harness(tmp_path / "b", another_db(), world, fake_time)
    na, nb = a.store.run(state.db_nonce), b.store.run(state.db_nonce)
    assert na != nb and re.fullmatch(r"[0-9a-f]{10}", na)
    await a.sync()
    t = next(x for x in a.tickets() if x["status"] == "new")
    change = narrow(OfficerChange, a.officer(t["id"], reply="Kunci."))
    [entry] = a.outbox()
    assert entry["idempotency_key"] == f"mahulu-{na}-{t['tracking_id']}-{change.change_id}"
    # b is a fresh database: the same tracking id and change id make another key.
    await b.sync()
    change_b = narrow(OfficerChange, b.officer(t["id"], reply="Kunci."))
    assert change_b.change_id == change.change_id
    assert b.outbox()[0]["idempotency_key"] != entry["idempotency_key"]


def test_key_format_limits() -> None:
    assert reasons.idempotency_key("abc", "4511", "builtin:7") == "mahulu-abc-4511-7"
    assert reasons.idempotency_key("abc", "4511", "builtin:7", 2) == "mahulu-abc-4511-7-k2"
    long = reasons.idempotency_key("abc", "4511", "x" * 300)
    assert len(long) <= 128 and long.startswith("mahulu-abc-")
    assert all(0x21 <= ord(c) <= 0x7E for c in long)


def test_must_verify_and_find_own_post() -> None:
    t0 = datetime(2026, 11, 27, 3, 0, 0, tzinfo=UTC)
    ttl = 86400.0
    assert not core.must_verify("pending", None, t0, ttl)
    assert not core.must_verify("pending", t0, t0 + timedelta(hours=22), ttl)
    assert core.must_verify("pending", t0, t0 + timedelta(hours=23), ttl)  # 1 h margin
    assert core.must_verify("unconfirmed", t0, t0, ttl)
    ours = m.FollowUp("9", "instansi", 6411003, "diproses", "Teks", t0 - timedelta(seconds=1))
    other_unit = m.FollowUp("8", "instansi", 6411004, "diproses", "Teks", t0)
    reporter = m.FollowUp("7", "pelapor", None, None, "Teks", t0)
    fus = (other_unit, reporter, ours)
    assert core.find_own_post(fus, {6411003}, "diproses", "Teks", t0) == ours
    assert core.find_own_post(fus, {6411003}, "selesai", "Teks", t0) is None
    assert core.find_own_post(fus, {6411003}, "diproses", "Teks", t0, frozenset({"9"})) is None
    assert core.find_own_post(fus, {6411003}, "diproses", "Teks", t0 + timedelta(hours=1)) is None


async def test_a_restored_backup_never_reuses_a_key_for_a_different_follow_up(
    tmp_path: Path, db_url: str, another_db: Callable[[], str], world: World, fake_time: FakeTime
) -> None:
    live = Harness(tmp_path / "live", db_url, world, fake_time)
    await live.sync()
    t = next(x for x in live.tickets() if x["status"] == "new")
    nonce = live.store.run(state.db_nonce)
    # The backup: taken now, before the officer's reply below.
    backup = Harness(tmp_path / "restored", another_db(), world, fake_time)
    backup.store.run(lambda c: state.set_value(c, StateKey.DB_NONCE, nonce))
    await backup.sync()
    live.officer(t["id"], reply="Dikirim sebelum server rusak.")
    await live.push()
    # The live database is lost; the restored one gets another reply with the same change id.
    change = narrow(OfficerChange, backup.officer(t["id"], reply="Balasan baru setelah pemulihan."))
    [entry] = backup.outbox()
    assert entry["idempotency_key"] == live.outbox()[0]["idempotency_key"]  # the collision
    stats = await backup.push()
    await backup.push()
    [entry] = backup.outbox()
    assert stats["key_changes"] == 1 and entry["state"] == "sent"
    assert backup.store.run(state.db_nonce) != nonce
    assert entry["idempotency_key"].endswith(f"-{change.change_id}-k1")
    assert len(posts_with(world, "Dikirim sebelum server rusak.")) == 1
    assert len(posts_with(world, "Balasan baru setelah pemulihan.")) == 1


async def test_the_guard_runs_before_every_post_attempt_and_ends_the_call(
    world: World, fake_time: FakeTime
) -> None:
    from tests.conftest import make_client

    client = make_client(world, fake_time)
    tid = next(
        t for t, r in world.records.items() if world.visible(t) and r["status"] == "terdisposisi"
    )
    unit = world.records[tid]["disposisi"][0]["unit_id"]
    await client.tokens.get()
    world.set_faults({"rate_5xx": 1.0})
    calls: list[float] = []

    async def guard() -> None:
        calls.append(fake_time.t)
        if len(calls) == 3:
            raise VerifyFirst("key may be forgotten")

    with pytest.raises(VerifyFirst):
        await client.post_follow_up(
            str(tid), m.FollowUpRequest(unit, "diproses", "Teks."), "k-guard", guard=guard
        )
    assert len(calls) == 3 and world.posts_created == 0
    await client.aclose()


@pytest.mark.slow
def test_done_when_against_a_sandbox_process_in_real_time(tmp_path: Path, db_url: str) -> None:
    """The issue's check with real clocks and processes: keys forgotten after 3 s, every
    POST answer lost after the commit, then 503 for 8 s; `sync` run now and then."""
    import time

    from connector.reliability import Connector, Sandbox

    sandbox = Sandbox(tmp_path, complaints=20, seed=5, faults={})
    try:
        conn = Connector(tmp_path, sandbox, db_url=db_url)
        conn.env["LAPOR_CONNECTOR_LAPOR__IDEMPOTENCY_TTL_S"] = "3"
        conn.sync_to_completion()
        t = next(x for x in conn.tickets() if x["status"] == "new")
        text = f"Tim sudah turun ke lapangan untuk tiket {t['id']}."
        assert conn.run("tickets", "update", t["id"], "--reply", text).returncode == 0
        sandbox.faults(idempotency_ttl_s=3, drop_post_rate=1.0, down_after_drop_s=8)
        deadline = time.monotonic() + 60
        while True:
            conn.run("sync")
            [entry] = conn.outbox()
            if entry["state"] == "sent" or time.monotonic() > deadline:
                break
            time.sleep(2)
        posts = [
            fu for fu in sandbox.inspect(t["tracking_id"])["tindak_lanjut"] if fu["isi"] == text
        ]
        assert len(posts) == 1
        assert entry["state"] == "sent" and entry["remote_id"] == str(posts[0]["id"])
        assert sandbox.stats()["posts_created"] == 1
    finally:
        sandbox.stop()


_T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
_follow_up = st.builds(
    m.FollowUp,
    id=st.integers(1, 40).map(str),
    by=st.sampled_from(["instansi", "pelapor"]),
    unit_id=st.sampled_from([None, 1, 2]),
    status=st.sampled_from([None, "diproses", "selesai"]),
    text=st.sampled_from(["a", "b"]),
    at=st.integers(-2000, 2000).map(lambda s: _T0 + timedelta(seconds=s)),
)


@settings(max_examples=300, deadline=None)
@given(fus=st.lists(_follow_up, max_size=8), taken=st.sets(st.integers(1, 40).map(str)))
def test_find_own_post_finds_exactly_what_may_be_ours(
    fus: list[m.FollowUp], taken: set[str]
) -> None:
    def ours(fu: m.FollowUp) -> bool:
        return (
            fu.id not in taken
            and fu.by == "instansi"
            and fu.text == "a"
            and fu.unit_id in (None, 1)
            and fu.status in (None, "diproses")
            and fu.at >= _T0 - core.VERIFY_SKEW
        )

    found = core.find_own_post(tuple(fus), {1}, "diproses", "a", _T0, frozenset(taken))
    if found is None:
        assert not any(ours(fu) for fu in fus)
    else:
        assert ours(found)
