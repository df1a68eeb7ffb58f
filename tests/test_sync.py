"""Two-way sync end to end: the real sandbox (faults on), a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connector.errors import LaporUnavailable
from connector.sandbox import Faults, World
from tests.conftest import FakeTime
from tests.harness import Harness

pytestmark = pytest.mark.anyio


@pytest.fixture
def world(fake_time: FakeTime) -> World:
    return World(seed=21, complaints=80, faults=Faults(rate_limit_per_minute=0), clock=fake_time)


@pytest.fixture
def h(tmp_path: Path, db_url: str, world: World, fake_time: FakeTime) -> Harness:
    return Harness(tmp_path / "site", db_url, world, fake_time)


async def test_every_complaint_becomes_exactly_one_ticket(h: Harness) -> None:
    pulled, _ = await h.sync()
    assert pulled["created"] == len(h.visible())
    h.check_consistent()
    t = h.tickets()
    anon = [x for x in t if x["anonymous"]]
    assert anon and all(x["reporter"] is None for x in anon)
    assert all(x["due_at"] for x in t)


async def test_second_sync_with_nothing_new_changes_nothing(h: Harness) -> None:
    await h.sync()
    before = h.dump()
    details = h.client.requests["detail"]
    pulled, pushed = await h.sync()
    assert h.dump() == before
    assert h.client.requests["detail"] == details  # an idle cycle fetches no detail
    assert pulled["created"] == pulled["updated"] == 0 and pushed["pushed"] == 0


async def test_sync_under_hostile_faults_over_many_cycles(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    # Many pages, so cursors matter.
    h = Harness(tmp_path / "site", db_url, world, fake_time, settings={"lapor": {"page_size": 10}})
    world.set_faults(
        {
            "rate_429": 0.15,
            "rate_5xx": 0.1,
            "move_rate": 0.5,
            "duplicate_rate": 0.3,
            "token_max_uses": 5,
            "late_commit_s": 20,
            "late_commit_rate": 0.3,
            "drop_post_rate": 0.5,
            "cursor_ttl_s": 120,
        }
    )
    for round_ in range(6):
        for _ in range(3):
            world.tick()
            fake_time.t += 7
        try:
            await h.sync()
        except Exception as exc:  # an outage is allowed to fail a cycle, never to lose data
            assert "unavailable" in str(exc).lower(), exc
        t = h.tickets()
        opened = [x for x in t if x["status"] in ("new", "in_progress")]
        if opened:
            h.officer(
                opened[round_ % len(opened)]["id"],
                status="resolved",
                reply=f"Selesai ditangani, putaran {round_}.",
            )
    world.set_faults(
        {
            "rate_429": 0,
            "rate_5xx": 0,
            "move_rate": 0,
            "duplicate_rate": 0,
            "drop_post_rate": 0,
            "late_commit_rate": 0,
        }
    )
    for _ in range(3):
        fake_time.t += 3600  # past any push backoff
        await h.sync()
    h.check_consistent()
    h.check_follow_ups_once()
    assert all(e["state"] in ("sent", "failed") for e in h.outbox())


async def test_upstream_changes_reach_the_tickets(
    h: Harness, world: World, fake_time: FakeTime
) -> None:
    await h.sync()
    recs = world.records
    mine = [t for t in recs if world.visible(t)]
    selesai = next(t for t in mine if recs[t]["status"] == "selesai")
    open_ = [t for t in mine if recs[t]["status"] == "terdisposisi"]
    archive, moved, out, reply = open_[:4]
    fake_time.t += 5
    world.event("objection", selesai)
    world.event("archive", archive)
    world.event("redispose", moved, unit_id=6411007)
    world.event("redispose_out", out)
    world.event("reply", reply)
    pulled, _ = await h.sync()
    assert pulled["updated"] == 5
    assert h.ticket(selesai)["status"] == "in_progress"  # reopened
    assert h.ticket(archive)["status"] == "closed"
    t = h.ticket(moved)
    assert t["agency"] == "DINSOS"
    assert any(m["direction"] == "internal" and "DINSOS" in m["text"] for m in t["messages"])
    assert h.ticket(out)["status"] == "closed"
    inbound = [m for m in h.ticket(reply)["messages"] if m["direction"] == "in"]
    assert inbound and inbound[-1]["author"].startswith("Pelapor")
    h.check_consistent()


async def test_each_officer_change_is_one_follow_up_even_when_responses_are_lost(
    h: Harness, world: World, fake_time: FakeTime
) -> None:
    await h.sync()
    targets = [t for t in h.tickets() if t["status"] == "new"][:5]
    for t in targets:
        h.officer(t["id"], status="in_progress")  # no reply: the template goes
    h.officer(targets[0]["id"], reply="Tim kami berangkat besok pagi.")
    h.officer(targets[0]["id"], note="internal only: never leaves")
    world.set_faults({"drop_post_rate": 1.0})
    _, pushed = await h.sync()
    assert pushed["pushed"] == 6
    world.set_faults({"drop_post_rate": 0.0})
    await h.sync()
    assert world.posts_created == 6
    h.check_follow_ups_once()
    fu = world.records[int(targets[0]["tracking_id"])]["tindak_lanjut"]
    texts = [f["isi"] for f in fu if f["oleh"] == "instansi"]
    assert "Tim kami berangkat besok pagi." in texts
    assert not any(
        "internal only" in x
        for r in world.records.values()
        for x in (f["isi"] for f in r["tindak_lanjut"])
    )
    # Our own follow-ups are recognised on the next pull and never imported back.
    t0 = h.ticket(targets[0]["tracking_id"])
    outs = [m for m in t0["messages"] if m["text"] == "Tim kami berangkat besok pagi."]
    assert len(outs) == 1
    assert t0["lapor_status"] == "ditindaklanjuti" and t0["status"] == "in_progress"


async def test_officer_closing_a_ticket_is_not_undone_by_its_echo(
    h: Harness, world: World, fake_time: FakeTime
) -> None:
    await h.sync()
    t = next(x for x in h.tickets() if x["status"] == "new")
    h.officer(t["id"], status="closed")
    await h.sync()
    fake_time.t += 5
    await h.sync()
    after = h.ticket(t["tracking_id"])
    assert after["lapor_status"] == "selesai" and after["status"] == "closed"
    world.event("objection", int(t["tracking_id"]))
    fake_time.t += 5
    await h.sync()
    assert h.ticket(t["tracking_id"])["status"] == "in_progress"  # the reporter objected


async def test_entries_for_one_complaint_go_in_order(h: Harness, world: World) -> None:
    await h.sync()
    t = next(x for x in h.tickets() if x["status"] == "new")
    h.officer(t["id"], status="in_progress", reply="Pertama.")
    h.officer(t["id"], reply="Kedua.")
    h.officer(t["id"], status="resolved", reply="Ketiga.")
    await h.sync()
    rec = world.records[int(t["tracking_id"])]
    fu = [f for f in rec["tindak_lanjut"] if f["oleh"] == "instansi"]
    assert [f["isi"] for f in fu][-3:] == ["Pertama.", "Kedua.", "Ketiga."]
    assert world.records[int(t["tracking_id"])]["status"] == "selesai"


async def test_upstream_closure_fails_pending_follow_ups_with_laporan_ditutup(
    h: Harness, world: World, fake_time: FakeTime
) -> None:
    await h.sync()
    t = next(x for x in h.tickets() if x["status"] == "new")
    h.officer(t["id"], reply="Akan kami cek.")
    world.event("archive", int(t["tracking_id"]))
    fake_time.t += 2
    await h.pull()  # sees the archive before the push goes
    await h.push()
    [entry] = h.outbox()
    assert (entry["state"], entry["last_error"]) == ("failed", "laporan_ditutup")
    assert world.posts_created == 0
    code, out = await _status(h)
    assert code == 1 and "laporan_ditutup" in out


async def _status(h: Harness) -> tuple[int, str]:
    import json

    from connector.status import report

    rep = h.store.run(lambda c: report(c, h.config, h.tracker, h.ctx.now()).as_dict())
    return (0 if rep["healthy"] else 1), json.dumps(rep)


async def test_refused_follow_up_is_recorded_and_retried_by_hand(h: Harness, world: World) -> None:
    await h.sync()
    t = next(x for x in h.tickets() if x["status"] == "new")
    rec = world.records[int(t["tracking_id"])]
    real_unit = rec["disposisi"][0]["unit_id"]
    h.officer(t["id"], reply="Balasan.")
    # LAPOR! moved the disposition without the connector having seen it yet: 403.
    rec["disposisi"][0]["unit_id"] = 6411099
    await h.push()
    [entry] = h.outbox()
    assert (entry["state"], entry["last_error"]) == ("failed", "bukan_disposisi")
    await h.push()
    assert h.outbox()[0]["attempts"] == 1  # never retried automatically
    rec["disposisi"][0]["unit_id"] = real_unit
    from connector.store import state

    h.store.run(lambda c: state.retry_failed(c, entry["id"], h.ctx.now()))
    await h.push()
    assert h.outbox()[0]["state"] == "sent" and world.posts_created == 1


async def test_transient_push_failure_backs_off_and_keeps_its_key(
    h: Harness, world: World, fake_time: FakeTime
) -> None:
    await h.sync()
    t = next(x for x in h.tickets() if x["status"] == "new")
    h.officer(t["id"], reply="Balasan.")
    world.set_faults({"maintenance_s": 10_000})
    with pytest.raises(LaporUnavailable, match="unavailable"):
        await h.push()
    [entry] = h.outbox()
    assert entry["state"] == "pending" and entry["attempts"] == 1
    world.set_faults({"maintenance_s": 0})
    await h.push()
    assert h.outbox()[0]["state"] == "pending"  # still backing off
    fake_time.t += 3600
    await h.push()
    [after] = h.outbox()
    assert after["state"] == "sent" and after["idempotency_key"] == entry["idempotency_key"]


async def test_unmapped_unit_is_held_then_processed_once_mapped(
    h: Harness, world: World, fake_time: FakeTime
) -> None:
    agencies = h.config.mappings_dir / "agencies.toml"
    text = agencies.read_text()
    agencies.write_text(
        text.replace(
            "lapor_unit_ids = [6411019, 6411021, 6411022, 6411023, 6411024, 6411025]",
            "lapor_unit_ids = [6411019]",
        )
    )
    h.mappings.reload_if_changed()
    pulled, _ = await h.sync()
    held = [q for q in h.quarantine() if q["reason"] == "unmapped_unit"]
    assert held and pulled["held"] == len(held)
    assert all("agencies.toml" in q["detail"] for q in held)
    h.check_consistent()
    again, _ = await h.sync()
    assert again["held"] == 0 and again["details"] == 0  # nothing refetched while unmapped
    agencies.write_text(text)
    assert h.mappings.reload_if_changed()
    pulled, _ = await h.sync()
    assert pulled["created"] == len(held)
    assert h.quarantine() == []
    h.check_consistent()


async def test_invalid_records_are_quarantined_and_retried(
    h: Harness, world: World, fake_time: FakeTime
) -> None:
    world.set_faults({"malformed_rate": 0.3})
    pulled, _ = await h.sync()
    q = h.quarantine()
    assert q and pulled["quarantined"] == len(q)
    assert all(
        x["reason"] == "invalid_record" and x["detail"].startswith("invalid fields:") for x in q
    )
    for x in q:  # names fields, never values
        rec = world.records[int(x["tracking_id"])]
        assert rec["isi"] not in x["detail"] and "keluhan" not in x["detail"]
    assert len(h.tickets()) == len(h.visible()) - len(q)  # the rest of the page went on
    again, _ = await h.sync()
    assert again["quarantined"] == 0 and again["details"] == 0
    world.set_faults({"malformed_rate": 0.0})
    fixed = q[0]["tracking_id"]
    fake_time.t += 3
    world.event("touch", int(fixed))  # LAPOR! changed it: retried by itself
    await h.sync()
    assert fixed not in {x["tracking_id"] for x in h.quarantine()}
    from connector.store import state

    h.store.run(lambda c: state.request_retry(c, None))  # `quarantine retry`
    await h.sync()
    assert h.quarantine() == []
    h.check_consistent()


async def test_due_date_from_working_days_when_lapor_gives_none(h: Harness, world: World) -> None:
    from connector.timeutil import add_working_days

    tid = next(
        t for t, r in world.records.items() if r["batas_tindak_lanjut"] is None and world.visible(t)
    )
    await h.sync()
    t = h.ticket(tid)
    first = world.records[tid]["disposisi"][0]["tanggal"]
    assert t["due_at"] == add_working_days(first, 5).isoformat()
    wita = t["due_at_wita"]
    assert wita is not None and wita.endswith("+08:00") and "T23:59:59" in wita


async def test_confidential_complaints_are_marked_restricted(h: Harness, world: World) -> None:
    await h.sync()
    for tid in h.visible():
        t = h.ticket(tid)
        assert t["confidential"] == t["restricted"] == world.records[int(tid)]["rahasia"]


async def test_attachments_downloaded_when_enabled(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    import os

    h = Harness(
        tmp_path / "site",
        db_url,
        world,
        fake_time,
        extra_settings=(
            '[attachments]\ndownload = true\nallowed_types = ["image/jpeg", "image/png"]\n'
        ),
    )
    await h.sync()
    files = [a for t in h.tickets() for a in t["attachments"]]
    stored = [a for a in files if "stored" in a]
    refused = [a for a in files if a.get("error") == "lampiran_jenis_ditolak"]
    assert stored and refused and len(stored) + len(refused) == len(files)
    assert all(a["mime"] == "application/pdf" for a in refused)
    folder = h.config.attachments_dir
    for a in stored:
        path = Path(a["stored"])
        assert folder in path.parents and path.stat().st_size == a["size"]
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert oct(os.stat(path.parent).st_mode & 0o777) == "0o700"


async def test_attachment_metadata_without_downloads(h: Harness, world: World) -> None:
    await h.sync()
    files = [a for t in h.tickets() for a in t["attachments"]]
    assert files and all(
        "stored" not in a and {"id", "name", "mime", "size"} <= set(a) for a in files
    )
    assert not h.config.attachments_dir.exists()


async def test_attachment_downloads_that_fail_transiently_are_retried(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    import httpx

    from connector.sandbox import create_app

    class FlakyFiles(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(app=create_app(world))
            self.down = True

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if self.down and "/lampiran/" in request.url.path:
                return httpx.Response(
                    503, json={"status": "error", "error": {"kode": "pemeliharaan", "pesan": "x"}}
                )
            return await self.inner.handle_async_request(request)

    flaky = FlakyFiles()
    h = Harness(
        tmp_path / "site",
        db_url,
        world,
        fake_time,
        transport=flaky,
        extra_settings="[attachments]\ndownload = true\n",
    )
    await h.sync()
    files = [a for t in h.tickets() for a in t["attachments"]]
    assert files and all(a.get("retry") is True for a in files)
    flaky.down = False
    for _ in range(20):  # a few tickets per pull
        await h.pull()
    files = [a for t in h.tickets() for a in t["attachments"]]
    assert all("stored" in a and "error" not in a for a in files)


async def test_under_the_budget_tickets_are_committed_before_waiting(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    committed_before_wait: list[int] = []
    h: Harness  # made below, with this sleep

    async def watching_sleep(seconds: float) -> None:  # the budget's waits (no retries here)
        committed_before_wait.append(len(h.tickets()))
        await fake_time.sleep(seconds)

    h = Harness(
        tmp_path / "site", db_url, world, fake_time, requests_per_minute=30, sleep=watching_sleep
    )
    await h.pull()
    assert committed_before_wait and committed_before_wait[0] > 0  # tickets before the wait
    assert len(h.tickets()) == len(h.visible())


async def test_an_outage_during_detail_fetches_is_a_plain_retry_later(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    import httpx

    from connector.errors import LaporUnavailable
    from connector.sandbox import create_app

    class DetailsDown(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(app=create_app(world))

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.count("/") == 4 and "/laporan/" in request.url.path:
                raise httpx.ConnectError("down", request=request)
            return await self.inner.handle_async_request(request)

    h = Harness(
        tmp_path / "site", db_url, world, fake_time, transport=DetailsDown(), call_deadline_s=5
    )
    with pytest.raises(LaporUnavailable):  # not an ExceptionGroup: callers map it to exit 1
        await h.pull()
    assert h.tickets() == []


def _attachments_of(h: Harness) -> list[dict[str, object]]:
    return [dict(a) for t in h.tickets() for a in t["attachments"]]


async def test_an_attachment_that_cannot_be_written_is_retried_never_fails_the_pull(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    """Issue 23 item 10: a write that fails (here the folder is a file) is that file's
    matter: the pull succeeds, the attachment is due again, and lands once writable."""
    h = Harness(
        tmp_path / "site",
        db_url,
        world,
        fake_time,
        extra_settings="[attachments]\ndownload = true\n"
        'allowed_types = ["image/jpeg", "image/png", "application/pdf"]\n',
    )
    folder = h.config.attachments_dir
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("not a folder")
    pulled = await h.pull()
    assert pulled["created"] > 0
    files = _attachments_of(h)
    assert files and all(a["retry"] is True and a["error"] == "penulisan_gagal" for a in files)
    folder.unlink()
    for _ in range(20):
        await h.pull()
    files = _attachments_of(h)
    assert all("stored" in a and "error" not in a for a in files)
    names = [Path(str(a["stored"])).name for a in files]
    assert len(set(names)) == len(names)


async def test_a_trickling_attachment_is_cut_at_the_deadline_and_never_holds_the_pull(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    """Issue 23 item 2: one byte every 0.2 s. Each download is cut at call_deadline_s,
    the pull ends at most one deadline after its last commit, the files stay due."""
    import asyncio
    import time

    import httpx

    from connector.sandbox import create_app

    class Trickle(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for _ in range(10_000):
                await asyncio.sleep(0.2)
                yield b"x"

    class SlowFiles(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(app=create_app(world))
            self.slow = True

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if self.slow and "/lampiran/" in request.url.path:
                return httpx.Response(200, headers={"Content-Type": "image/png"}, stream=Trickle())
            return await self.inner.handle_async_request(request)

    slow = SlowFiles()
    h = Harness(
        tmp_path / "site",
        db_url,
        world,
        fake_time,
        transport=slow,
        call_deadline_s=1.0,
        settings={"lapor": {"call_deadline_s": 1.0}},
        extra_settings="[attachments]\ndownload = true\n"
        'allowed_types = ["image/jpeg", "image/png", "application/pdf"]\n',
    )
    t0 = time.monotonic()
    pulled = await h.pull()
    assert time.monotonic() - t0 < 5
    assert pulled["created"] == len(h.visible())
    files = _attachments_of(h)
    assert files and all(a["retry"] is True and "stored" not in a for a in files)
    assert not [p for p in h.config.attachments_dir.rglob("*") if p.is_file()]  # no part left
    slow.slow = False
    for _ in range(20):
        await h.pull()
    assert all("stored" in a for a in _attachments_of(h))
