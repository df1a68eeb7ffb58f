"""The LAPOR! client against the real sandbox in-process, faults switched on."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from connector.errors import (
    AttachmentRefused,
    AuthRefused,
    InvalidRecord,
    LaporUnavailable,
    Rejected,
    SkipRecord,
)
from connector.lapor import models as m
from connector.sandbox import World, create_app
from connector.settings import Credentials
from tests.conftest import FakeTime, make_client

pytestmark = pytest.mark.anyio


async def all_items(client: Any, since: Any = None) -> list[Any]:
    out = []
    async for page in client.feed(lambda: since, 10):
        out.extend(page.items)
    return out


async def test_feed_pages_through_everything_in_order(client: Any, world: World) -> None:
    items = await all_items(client)
    visible = [t for t in world.records if world.visible(t)]
    assert sorted(int(i.tracking_id) for i in items) == sorted(visible)
    keys = [(i.updated_at, int(i.tracking_id)) for i in items]
    assert keys == sorted(keys)
    assert all(i.updated_at.tzinfo is not None for i in items)
    assert all(isinstance(i.tracking_id, str) for i in items)


async def test_token_is_fetched_once_and_reused(client: Any) -> None:
    await all_items(client)
    await client.units()
    assert client.tokens.fetched == 1


async def test_token_expiring_mid_feed_is_refreshed_and_the_call_repeated(
    client: Any, world: World
) -> None:
    world.set_faults({"token_max_uses": 2})
    items = await all_items(client)
    assert len(items) == len([t for t in world.records if world.visible(t)])
    assert client.tokens.fetched >= 2


async def test_token_refreshed_before_expiry(world: World, fake_time: FakeTime) -> None:
    world.token_ttl_s = 120
    client = make_client(world, fake_time, token_refresh_margin_s=30)
    await client.units()
    fake_time.t += 100  # inside the margin: refresh before use, never see the 401
    await client.units()
    assert client.tokens.fetched == 2


async def test_concurrent_callers_share_one_refresh(client: Any, world: World) -> None:
    await client.units()
    world.tokens.clear()  # every held token is now unknown: token_tidak_valid
    ids = [str(t) for t in list(world.records)[:8] if world.visible(t)]
    await asyncio.gather(*(client.complaint(t) for t in ids))
    assert client.tokens.fetched == 2


async def test_wrong_credentials_are_fatal_with_a_clear_message(
    world: World, fake_time: FakeTime
) -> None:
    bad = make_client(world, fake_time, creds=Credentials("mahulu-demo", "salah"))
    with pytest.raises(AuthRefused, match="LAPOR_CLIENT_SECRET"):
        await bad.units()


async def test_429_storm_honours_retry_after(
    client: Any, world: World, fake_time: FakeTime
) -> None:
    world.set_faults({"rate_429": 0.6, "retry_after_s": 7})
    items = await all_items(client)
    assert len(items) > 0
    assert 7 in fake_time.slept
    assert client.retries > 0


async def test_server_rate_limit_is_retried_after_its_window(
    client: Any, world: World, fake_time: FakeTime
) -> None:
    world.set_faults({"rate_limit_per_minute": 5})
    for _ in range(12):
        await client.units()
    assert any(s > 1 for s in fake_time.slept)


async def test_client_budget_keeps_under_the_limit(world: World, fake_time: FakeTime) -> None:
    world.set_faults({"rate_limit_per_minute": 10})
    client = make_client(world, fake_time, requests_per_minute=10)
    for _ in range(25):
        await client.units()
    assert client.retries == 0  # never provoked a 429
    assert client.budget.waited_s > 0


async def test_maintenance_longer_than_the_deadline_gives_up(
    world: World, fake_time: FakeTime
) -> None:
    client = make_client(world, fake_time, call_deadline_s=60)
    world.set_faults({"maintenance_s": 600})
    with pytest.raises(LaporUnavailable, match="503"):
        await client.units()


async def test_short_maintenance_is_waited_out(
    client: Any, world: World, fake_time: FakeTime
) -> None:
    world.set_faults({"maintenance_s": 20})
    assert len(await client.units()) > 5
    assert sum(fake_time.slept) >= 19


async def test_5xx_are_retried(client: Any, world: World) -> None:
    world.set_faults({"rate_5xx": 0.3})
    assert len(await all_items(client)) > 0
    assert client.retries > 0


class Flaky(httpx.AsyncBaseTransport):
    """Times out or refuses the first ``n`` requests, then passes through."""

    def __init__(self, inner: httpx.AsyncBaseTransport, n: int, exc: type[httpx.TransportError]):
        self.inner, self.n, self.exc = inner, n, exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.n > 0:
            self.n -= 1
            raise self.exc("simulated", request=request)
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.ConnectError])
async def test_timeouts_and_connection_errors_are_retried(
    world: World, fake_time: FakeTime, exc: type[httpx.TransportError]
) -> None:
    transport = Flaky(httpx.ASGITransport(app=create_app(world)), 3, exc)
    client = make_client(world, fake_time, transport=transport)
    assert len(await client.units()) > 5
    assert client.retries == 3


async def test_connection_refused_for_good_raises_unavailable(
    world: World, fake_time: FakeTime
) -> None:
    transport = Flaky(httpx.ASGITransport(app=create_app(world)), 10_000, httpx.ConnectError)
    client = make_client(world, fake_time, transport=transport, call_deadline_s=30)
    with pytest.raises(LaporUnavailable, match="ConnectError"):
        await client.units()


async def test_dropped_post_response_then_replay_creates_one_follow_up(
    client: Any, world: World
) -> None:
    tid = next(t for t, r in world.records.items() if r["status"] == "terdisposisi")
    unit = world.records[tid]["disposisi"][0]["unit_id"]
    world.set_faults({"drop_post_rate": 1.0})
    req = m.FollowUpRequest(unit, "diproses", "Sedang kami tangani.")
    # The 201 is lost (504); the retry with the same key gets the recorded answer (200).
    receipt = await client.post_follow_up(str(tid), req, "key-1")
    assert receipt.replayed
    again = await client.post_follow_up(str(tid), req, "key-1")  # e.g. after a crash
    assert again.id == receipt.id
    ours = [
        f
        for f in world.records[tid]["tindak_lanjut"]
        if f["oleh"] == "instansi" and f["isi"] == "Sedang kami tangani."
    ]
    assert len(ours) == 1 and str(ours[0]["id"]) == receipt.id
    assert world.posts_created == 1 and world.posts_replayed == 2


async def test_dropped_post_with_retries_inside_one_call(client: Any, world: World) -> None:
    tid = next(t for t, r in world.records.items() if r["status"] == "terdisposisi")
    unit = world.records[tid]["disposisi"][0]["unit_id"]
    world.set_faults({"drop_post_rate": 0.7})
    receipt = await client.post_follow_up(
        str(tid), m.FollowUpRequest(unit, "selesai", "Selesai."), "key-2"
    )
    assert world.posts_created == 1
    assert world.records[tid]["status"] == "selesai"
    assert receipt.tracking_id == str(tid)


@pytest.mark.parametrize(
    ("setup", "kode"),
    [
        ("closed", "laporan_ditutup"),
        ("wrong_unit", "bukan_disposisi"),
        ("empty_text", "validasi_gagal"),
    ],
)
async def test_post_refusals_are_typed_and_not_retried(
    client: Any, world: World, setup: str, kode: str
) -> None:
    tid = next(t for t, r in world.records.items() if r["status"] == "terdisposisi")
    unit = world.records[tid]["disposisi"][0]["unit_id"]
    text = "Teks."
    if setup == "closed":
        world.event("archive", tid)
    elif setup == "wrong_unit":
        unit = 6411099 if unit != 6411099 else 6411001
    else:
        text = ""
    with pytest.raises(Rejected) as info:
        await client.post_follow_up(str(tid), m.FollowUpRequest(unit, "diproses", text), "k")
    assert info.value.kode == kode
    assert client.retries == 0
    if kode == "validasi_gagal":
        assert info.value.rincian_fields == ["isi"]


async def test_cursor_expiry_restarts_from_the_callers_watermark(
    client: Any, world: World, fake_time: FakeTime
) -> None:
    world.set_faults({"cursor_ttl_s": 5})
    starts: list[Any] = []
    first = min(r["diperbarui"] for r in world.records.values())

    def since() -> Any:
        starts.append(first)
        return first

    seen = []
    async for page in client.feed(since, 10):
        seen.extend(page.items)
        if len(starts) == 1 and len(seen) >= 10:
            fake_time.t += 60  # the cursor just handed out is now expired
    assert len(starts) >= 2 and set(starts) == {first}  # restarted from the caller's value
    assert {i.tracking_id for i in seen} >= {str(t) for t in world.records if world.visible(t)}


async def test_records_moving_while_paging_are_not_missed(client: Any, world: World) -> None:
    world.set_faults({"move_rate": 1.0})
    items = await all_items(client)
    ids = [i.tracking_id for i in items]
    assert set(ids) == {str(t) for t in world.records if world.visible(t)}
    assert len(ids) > len(set(ids))  # duplicates surfaced for the caller to dedupe


async def test_late_commits_are_found_by_an_overlap_reread(
    client: Any, world: World, fake_time: FakeTime
) -> None:
    world.add_complaints(1)
    watermark = max(i.updated_at for i in await all_items(client))
    fake_time.t += 5
    world.set_faults({"late_commit_s": 20, "late_commit_rate": 1.0})
    tid = world.add_complaints(1)[0]
    assert world.records[tid]["diperbarui"] < watermark  # committed "in the past"
    exact = await all_items(client, watermark)
    assert str(tid) not in {i.tracking_id for i in exact}
    overlap = await all_items(client, watermark - timedelta(seconds=300))
    assert str(tid) in {i.tracking_id for i in overlap}


async def test_extra_keys_are_ignored(client: Any, world: World) -> None:
    assert world.faults.extra_keys
    tid = str(next(t for t in world.records if world.visible(t)))
    c = await client.complaint(tid)
    assert c.tracking_id == tid


async def test_malformed_records_become_record_level_errors(client: Any, world: World) -> None:
    world.set_faults({"malformed_rate": 1.0})
    items = await all_items(client)
    bad = [i for i in items if isinstance(i, m.BadSummary)]
    assert bad and all(i.tracking_id != "unknown" for i in bad)
    assert all("diperbarui" in i.fields or "unit_ids" in i.fields for i in bad)
    odd = next(t for t in world.records if t % 2 == 1 and world.visible(t))
    with pytest.raises(InvalidRecord) as info:
        await client.complaint(str(odd))
    message = str(info.value)
    assert "klasifikasi" in message and "dibuat" in message
    assert "keluhan" not in message and world.records[odd]["isi"] not in message


async def test_detail_of_a_foreign_complaint_is_a_skip(client: Any, world: World) -> None:
    foreign = next(t for t in world.records if not world.visible(t))
    with pytest.raises(SkipRecord) as info:
        await client.complaint(str(foreign))
    assert info.value.reason == "not_disposed"
    with pytest.raises(SkipRecord) as info:
        await client.complaint("999999999")
    assert info.value.reason == "not_found"


async def test_anonymous_complaint_never_carries_identity(client: Any, world: World) -> None:
    tid = next(t for t, r in world.records.items() if not r["anonim"])
    world.records[tid]["anonim"] = True  # the wire still sends pelapor: the client drops it
    c = await client.complaint(str(tid))
    assert c.anonymous and c.reporter is None


async def test_response_size_cap(world: World, fake_time: FakeTime) -> None:
    client = make_client(world, fake_time, max_response_bytes=1024)
    assert await client.ping()
    tid = str(next(t for t in world.records if world.visible(t)))
    with pytest.raises(SkipRecord) as info:
        await client.complaint(tid)
    assert info.value.reason == "response_too_large"


async def test_repeated_cursor_is_refused(world: World, fake_time: FakeTime) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(
                200,
                json={
                    "status": "ok",
                    "data": {"access_token": "t", "token_type": "Bearer", "expires_in": 3600},
                },
            )
        return httpx.Response(
            200,
            json={
                "status": "ok",
                "data": [],
                "meta": {"kursor_berikutnya": "same", "waktu_server": "2026-11-27 10:00:00"},
            },
        )

    client = make_client(world, fake_time, transport=httpx.MockTransport(handler))
    with pytest.raises(LaporUnavailable, match="repeated a cursor"):
        await all_items(client)


async def test_attachment_download_only_from_the_api_host(
    client: Any, world: World, tmp_path: Any
) -> None:
    tid = next(t for t, r in world.records.items() if r["lampiran"] and world.visible(t))
    c = await client.complaint(str(tid))
    att = c.attachments[0]
    path = await client.download(att, tmp_path / "att", max_bytes=10**6, allowed_types=(att.mime,))
    assert path.stat().st_size == att.size
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "att").stat().st_mode & 0o777) == "0o700"
    evil = m.Attachment("x", "x", att.mime, 1, "http://evil.example/api/v3/lampiran/x")
    with pytest.raises(AttachmentRefused, match="lampiran_host_asing"):
        await client.download(evil, tmp_path / "att", max_bytes=10**6, allowed_types=(att.mime,))
    with pytest.raises(AttachmentRefused, match="lampiran_jenis_ditolak"):
        await client.download(att, tmp_path / "att", max_bytes=10**6, allowed_types=("x/y",))
    with pytest.raises(Rejected, match="lampiran_terlalu_besar"):
        await client.download(att, tmp_path / "att", max_bytes=10, allowed_types=(att.mime,))
    assert sorted(p.name for p in (tmp_path / "att").iterdir()) == [path.name]


async def test_budget_room_counts_the_last_minute(world: World, fake_time: FakeTime) -> None:
    client = make_client(world, fake_time, requests_per_minute=5)
    assert client.budget.room() == 5
    for _ in range(3):
        await client.units()
    assert client.budget.room() == 5 - 3 - 1  # three calls and the token request
    fake_time.t += 61
    assert client.budget.room() == 5


async def test_attachment_file_names_are_unique_and_bounded(
    client: Any, world: World, tmp_path: Any
) -> None:
    """Issue 23 item 10: ids that sanitise alike get different files, and a long
    multibyte id fits a file system's 255-byte name."""
    from connector.lapor.client import attachment_file_name

    tid = next(t for t, r in world.records.items() if r["lampiran"] and world.visible(t))
    att = (await client.complaint(str(tid))).attachments[0]
    paths = []
    for odd in ("a/b", "a.b", "a_b", "ü" * 100, "../../etc/passwd", ""):
        renamed = m.Attachment(odd, att.name, att.mime, att.size, att.url)
        paths.append(
            await client.download(renamed, tmp_path, max_bytes=10**6, allowed_types=(att.mime,))
        )
    assert len({p.name for p in paths}) == len(paths)
    assert all(p.parent == tmp_path and len(p.name.encode()) <= 80 for p in paths)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".part-")]
    assert attachment_file_name("a/b", "image/png").endswith(".png")
