"""The sandbox's own semantics, spoken to on the raw wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from connector.sandbox import World, create_app
from connector.timeutil import format_wib, parse_wib
from tests.conftest import FakeTime

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(world)), base_url="http://sb"
    ) as c:
        token = (
            await c.post(
                "/api/v3/auth/token",
                json={"client_id": "mahulu-demo", "client_secret": "rahasia-demo-6411"},
            )
        ).json()
        c.headers["Authorization"] = "Bearer " + token["data"]["access_token"]
        yield c


def err(resp: httpx.Response) -> str:
    body = resp.json()
    assert body["status"] == "error"
    return str(body["error"]["kode"])


async def test_ping_needs_no_token(world: World) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(world)), base_url="http://sb"
    ) as c:
        r = await c.get("/api/v3/ping")
    assert r.status_code == 200 and parse_wib(r.json()["data"]["waktu_server"])


async def test_token_errors(world: World) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(world)), base_url="http://sb"
    ) as c:
        r = await c.post("/api/v3/auth/token", json={"client_id": "x", "client_secret": "y"})
        assert (r.status_code, err(r)) == (401, "kredensial_tidak_valid")
        r = await c.get("/api/v3/laporan")
        assert (r.status_code, err(r)) == (401, "token_tidak_valid")
        r = await c.get("/api/v3/laporan", headers={"Authorization": "Bearer nope"})
        assert (r.status_code, err(r)) == (401, "token_tidak_valid")


async def test_tokens_expire(http: httpx.AsyncClient, world: World, fake_time: FakeTime) -> None:
    assert (await http.get("/api/v3/unit-kerja")).status_code == 200
    fake_time.t += world.token_ttl_s + 1
    r = await http.get("/api/v3/unit-kerja")
    assert (r.status_code, err(r)) == (401, "token_kedaluwarsa")


async def test_feed_since_is_inclusive_and_ordered(http: httpx.AsyncClient, world: World) -> None:
    target = sorted(world.records.values(), key=lambda r: r["diperbarui"])[10]
    since = format_wib(target["diperbarui"])
    r = await http.get("/api/v3/laporan", params={"diperbarui_sejak": since, "batas": 100})
    data = r.json()["data"]
    assert target["tracking_id"] in [d["tracking_id"] for d in data]
    assert all(d["diperbarui"] >= since for d in data)
    keys = [(d["diperbarui"], d["tracking_id"]) for d in data]
    assert keys == sorted(keys)
    assert "x_versi_skema" in data[0]  # extra keys, on by default


@pytest.mark.parametrize("batas", ["0", "101", "abc"])
async def test_page_size_bounds(http: httpx.AsyncClient, batas: str) -> None:
    r = await http.get("/api/v3/laporan", params={"batas": batas})
    assert (r.status_code, err(r)) == (400, "parameter_tidak_valid")


async def test_cursor_paging_and_expiry(
    http: httpx.AsyncClient, world: World, fake_time: FakeTime
) -> None:
    first = (await http.get("/api/v3/laporan", params={"batas": 5})).json()
    assert len(first["data"]) == 5
    cursor = first["meta"]["kursor_berikutnya"]
    second = (await http.get("/api/v3/laporan", params={"kursor": cursor, "batas": 99})).json()
    assert len(second["data"]) == 5  # batas from the cursor; other params ignored
    assert second["data"][0]["tracking_id"] not in [d["tracking_id"] for d in first["data"]]
    fake_time.t += 601
    r = await http.get("/api/v3/laporan", params={"kursor": cursor})
    assert (r.status_code, err(r)) == (410, "kursor_kedaluwarsa")


async def test_last_page_has_null_cursor(http: httpx.AsyncClient) -> None:
    r = (await http.get("/api/v3/laporan", params={"batas": 100})).json()
    assert r["meta"]["kursor_berikutnya"] is None


async def test_detail_and_reference_data(http: httpx.AsyncClient, world: World) -> None:
    tid = next(t for t in world.records if world.visible(t))
    d = (await http.get(f"/api/v3/laporan/{tid}")).json()["data"]
    assert d["tracking_id"] == tid and (d["pelapor"] is None) == d["anonim"]
    assert (await http.get("/api/v3/laporan/1")).status_code == 404
    foreign = next(t for t in world.records if not world.visible(t))
    r = await http.get(f"/api/v3/laporan/{foreign}")
    assert (r.status_code, err(r)) == (403, "bukan_disposisi")
    units = (await http.get("/api/v3/unit-kerja")).json()["data"]
    assert {u["instansi_id"] for u in units} == {6411} and any(not u["aktif"] for u in units)
    cats = (await http.get("/api/v3/kategori")).json()["data"]
    assert any(c["induk_id"] is None for c in cats) and any(c["induk_id"] for c in cats)


async def test_attachment_bytes(http: httpx.AsyncClient, world: World) -> None:
    tid = next(t for t, r in world.records.items() if r["lampiran"] and world.visible(t))
    att = (await http.get(f"/api/v3/laporan/{tid}")).json()["data"]["lampiran"][0]
    assert att["url"].startswith("http://sb/api/v3/lampiran/")
    r = await http.get(att["url"])
    assert r.status_code == 200 and len(r.content) == att["ukuran"]
    assert r.headers["content-type"].startswith(att["mime"])


def open_complaint(world: World) -> tuple[int, int]:
    tid = next(
        t for t, r in world.records.items() if r["status"] == "terdisposisi" and world.visible(t)
    )
    return tid, world.records[tid]["disposisi"][0]["unit_id"]


async def test_follow_up_idempotency(http: httpx.AsyncClient, world: World) -> None:
    tid, unit = open_complaint(world)
    url = f"/api/v3/laporan/{tid}/tindak-lanjut"
    body = {"unit_id": unit, "status": "diproses", "isi": "Sedang kami proses."}
    r1 = await http.post(url, json=body, headers={"Idempotency-Key": "abc-1"})
    assert r1.status_code == 201
    assert world.records[tid]["status"] == "ditindaklanjuti"
    r2 = await http.post(url, json=body, headers={"Idempotency-Key": "abc-1"})
    assert r2.status_code == 200 and r2.json()["data"] == r1.json()["data"]
    r3 = await http.post(url, json={**body, "isi": "lain"}, headers={"Idempotency-Key": "abc-1"})
    assert (r3.status_code, err(r3)) == (422, "kunci_idempotensi_dipakai")
    r4 = await http.post(url, json=body)
    assert (r4.status_code, err(r4)) == (400, "kunci_idempotensi_wajib")
    r5 = await http.post(url, json=body, headers={"Idempotency-Key": "a b"})
    assert (r5.status_code, err(r5)) == (400, "kunci_idempotensi_wajib")
    assert world.posts_created == 1


async def test_follow_up_transitions_and_refusals(http: httpx.AsyncClient, world: World) -> None:
    tid, unit = open_complaint(world)
    url = f"/api/v3/laporan/{tid}/tindak-lanjut"

    async def post(key: str, **body: Any) -> httpx.Response:
        return await http.post(
            url,
            json={"unit_id": unit, "status": "diproses", "isi": "x", **body},
            headers={"Idempotency-Key": key},
        )

    assert (await post("k1", status="selesai")).status_code == 201
    assert world.records[tid]["status"] == "selesai"
    assert (await post("k2")).status_code == 201
    assert world.records[tid]["status"] == "ditindaklanjuti"
    r = await post("k3", unit_id=6411099 if unit != 6411099 else 6411001)
    assert (r.status_code, err(r)) == (403, "bukan_disposisi")
    r = await post("k4", status="ditutup", isi="")
    assert (r.status_code, err(r)) == (422, "validasi_gagal")
    assert set(r.json()["error"]["rincian"]) == {"status", "isi"}
    r = await post("k5", isi="x" * 5001)
    assert set(r.json()["error"]["rincian"]) == {"isi"}
    world.event("archive", tid)
    r = await post("k6")
    assert (r.status_code, err(r)) == (409, "laporan_ditutup")
    r = await http.post(
        "/api/v3/laporan/123/tindak-lanjut", json={}, headers={"Idempotency-Key": "k7"}
    )
    assert (r.status_code, err(r)) == (404, "laporan_tidak_ditemukan")


async def test_rate_limit_answers_429_with_retry_after(
    http: httpx.AsyncClient, world: World
) -> None:
    world.set_faults({"rate_limit_per_minute": 3})
    codes = [(await http.get("/api/v3/kategori")).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    r = await http.get("/api/v3/kategori")
    assert int(r.headers["Retry-After"]) >= 1 and err(r) == "batas_permintaan"


async def test_maintenance_and_clock_offset(http: httpx.AsyncClient, world: World) -> None:
    world.set_faults({"clock_offset_s": 600})
    t = parse_wib((await http.get("/api/v3/ping")).json()["data"]["waktu_server"])
    assert (t - world.now()).total_seconds() == 0
    world.set_faults({"maintenance_s": 30})
    r = await http.get("/api/v3/kategori")
    assert (r.status_code, err(r)) == (503, "pemeliharaan") and r.headers["Retry-After"]


async def test_control_surface(http: httpx.AsyncClient, world: World) -> None:
    r = await http.put("/_sandbox/faults", json={"rate_429": 0.5})
    assert r.json()["rate_429"] == 0.5
    assert (await http.put("/_sandbox/faults", json={"nope": 1})).status_code == 400
    assert (await http.put("/_sandbox/faults", json={"rate_5xx": 2})).status_code == 400
    await http.put("/_sandbox/faults", json={"rate_429": 0})
    n = len(world.records)
    await http.post("/_sandbox/complaints", params={"n": 3})
    assert len(world.records) == n + 3
    tid, _ = open_complaint(world)
    r = await http.post("/_sandbox/event", json={"type": "archive", "tracking_id": tid})
    assert r.json()["tracking_id"] == tid and world.records[tid]["status"] == "diarsipkan"
    assert (await http.post("/_sandbox/event", json={"type": "boom"})).status_code == 400


def test_same_seed_same_world(fake_time: FakeTime) -> None:
    a = World(seed=11, complaints=30, clock=fake_time)
    b = World(seed=11, complaints=30, clock=fake_time)
    assert a.records == b.records
    c = World(seed=12, complaints=30, clock=fake_time)
    assert a.records != c.records


def test_realistic_mix(fake_time: FakeTime) -> None:
    w = World(seed=3, complaints=400, clock=fake_time)
    recs = list(w.records.values())
    assert 0.1 < sum(r["anonim"] for r in recs) / len(recs) < 0.35
    assert any(r["rahasia"] for r in recs) and any(r["lampiran"] for r in recs)
    assert {r["klasifikasi"] for r in recs} == {"pengaduan", "aspirasi", "permintaan_informasi"}
    assert {r["sumber"] for r in recs} >= {"web", "sms", "android"}
    assert {r["lokasi"]["kecamatan"] for r in recs if r["lokasi"]} == {
        "Long Bagun",
        "Long Hubung",
        "Laham",
        "Long Apari",
        "Long Pahangai",
    }
    assert all(r["diperbarui"] <= w.now() for r in recs)


def test_generator_brings_life(fake_time: FakeTime) -> None:
    w = World(seed=5, complaints=80, clock=fake_time)
    kinds = {k for _ in range(200) for k, tid in w.tick() if tid is not None}
    assert kinds >= {"new", "reply", "objection", "redispose", "archive", "close"}


async def test_the_world_counts_each_fault_it_injects(
    http: httpx.AsyncClient, world: World
) -> None:
    """``World.fired``: how the fault matrix knows a row's fault really happened."""
    world.set_faults({"rate_5xx": 1.0})
    assert (await http.get("/api/v3/laporan", params={"batas": 5})).status_code >= 500
    world.set_faults({"rate_5xx": 0.0, "duplicate_rate": 1.0})
    assert (await http.get("/api/v3/laporan", params={"batas": 5})).status_code == 200
    assert world.fired == {"rate_5xx": 1, "duplicate_rate": 1}
    world.set_faults({"duplicate_rate": 0.0})
    await http.get("/api/v3/laporan", params={"batas": 5})
    assert world.fired == {"rate_5xx": 1, "duplicate_rate": 1}  # nothing set: nothing counted
