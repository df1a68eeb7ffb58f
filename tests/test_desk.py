"""The officer's desk over a real database, fed by the sandbox through the real pull: the
answer flow to LAPOR!, who sees what, CSRF, throttling, and the web face's defences."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connector.desk import accounts
from connector.desk.accounts import Role
from connector.desk.web import create_app
from connector.sandbox import World
from connector.store import schema
from tests.conftest import FakeTime
from tests.factories import (
    HOSTILE_BODY,
    HOSTILE_TITLE,
    PASSWORD,
    Site,
    csrf_of,
    field,
    login,
    password_hash,
)
from tests.harness import Harness

pytestmark = pytest.mark.anyio


@pytest.fixture
async def site(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> AsyncIterator[Site]:
    for rec in list(world.records.values())[:3]:
        rec["judul"], rec["isi"] = HOSTILE_TITLE, HOSTILE_BODY
    h = Harness(tmp_path / "site", db_url, world, fake_time)
    await h.pull()
    s = Site(h)
    yield s
    h.store.close()


def _by_agency(s: Site) -> tuple[Any, Any]:
    """An open, non-confidential ticket of one agency, and one of another agency."""
    rows = [
        t
        for t in s.tickets()
        if t.status != "closed"
        and not t.confidential
        and t.lapor_status not in ("ditutup", "diarsipkan")
    ]
    first = rows[0]
    other = next(t for t in rows if t.agency != first.agency)
    return first, other


async def test_an_officer_answers_from_the_page_and_lapor_gets_exactly_one_follow_up(
    site: Site, world: World, fake_time: FakeTime
) -> None:
    t, _ = _by_agency(site)
    site.add_user("ani", Role.PETUGAS, [t.agency])
    fake_time.t += 10 * 86400  # past the 5 working days: overdue
    async with site.client() as c:
        r = await login(c, "ani")
        assert r.status_code == 303 and r.headers["location"] == "/"
        inbox = await c.get("/")
        assert t.tracking_id in inbox.text and "lewat" in inbox.text
        page = await c.get(f"/tiket/{t.tracking_id}?templat=in_progress")
        assert page.status_code == 200 and "Batas tindak lanjut:" in page.text
        assert "WITA" in page.text
        form = {
            "csrf": csrf_of(page.text),
            "form_id": field(page.text, "form_id"),
            "versi": field(page.text, "versi"),
            "status": "in_progress",
            "balasan": "Petugas kami sedang memeriksa lokasi. Terima kasih.",
            "catatan": "cek ke kampung minggu ini",
            "petugas": "ani",
        }
        r1 = await c.post(f"/tiket/{t.tracking_id}", data=form)
        r2 = await c.post(f"/tiket/{t.tracking_id}", data=form)  # double click / resubmit
        assert r1.status_code == r2.status_code == 303
        assert r2.headers["location"].endswith("tersimpan=2")
        shown = await c.get(r1.headers["location"])
        assert "Menunggu dikirim ke LAPOR!" in shown.text
    entries = site.h.outbox()
    assert len(entries) == 1 and entries[0]["tracking_id"] == t.tracking_id
    await site.h.push()
    posted = [
        fu
        for fu in world.records[int(t.tracking_id)]["tindak_lanjut"]
        if "memeriksa lokasi" in fu["isi"]
    ]
    assert len(posted) == 1 and posted[0]["status"] == "diproses"
    row = next(r for r in site.tickets() if r.id == t.id)
    assert row.status == "in_progress" and row.assignee == "ani"
    async with site.client() as c:
        await login(c, "ani")
        page = await c.get(f"/tiket/{t.tracking_id}")
        assert "Terkirim ke LAPOR! pada" in page.text
        assert "cek ke kampung minggu ini" in page.text  # the internal note, on the desk
    assert "cek ke kampung" not in str(world.records[int(t.tracking_id)])


async def test_another_agencys_ticket_attachment_and_search_answer_404(site: Site) -> None:
    mine, theirs = _by_agency(site)
    site.add_user("budi", Role.PETUGAS, [mine.agency])
    async with site.client() as c:
        await login(c, "budi")
        assert (await c.get(f"/tiket/{theirs.tracking_id}")).status_code == 404
        assert (await c.get(f"/tiket/{theirs.tracking_id}/lampiran/0")).status_code == 404
        assert (await c.get("/tiket/999999999")).status_code == 404  # the same answer
        found = await c.get("/", params={"cari": theirs.tracking_id})
        assert found.status_code == 200 and f"/tiket/{theirs.tracking_id}" not in found.text
        inbox = await c.get("/")
        assert f'/tiket/{theirs.tracking_id}"' not in inbox.text
        page = await c.get(f"/tiket/{mine.tracking_id}")
        r = await c.post(
            f"/tiket/{theirs.tracking_id}",
            data={
                "csrf": csrf_of(page.text),
                "form_id": "x1",
                "versi": "",
                "status": "resolved",
                "balasan": "selesai",
            },
        )
        assert r.status_code == 404
    assert next(r for r in site.tickets() if r.id == theirs.id).status == theirs.status


async def test_confidential_complaints_open_only_for_their_agency_and_admins_and_are_audited(
    site: Site,
) -> None:
    secret = next(t for t in site.tickets() if t.confidential)
    other = next(a.code for a in site.h.mappings().agencies if a.code != secret.agency)
    site.add_user("kepala", Role.PIMPINAN, [secret.agency])
    site.add_user("lain", Role.PETUGAS, [other])
    site.add_user("petugas1", Role.PETUGAS, [secret.agency])
    site.add_user("admin1", Role.ADMIN, [])
    expected = {"kepala": 404, "lain": 404, "petugas1": 200, "admin1": 200}
    for who, code in expected.items():
        async with site.client() as c:
            await login(c, who)
            r = await c.get(f"/tiket/{secret.tracking_id}")
            assert r.status_code == code, who
            if code == 200:
                assert "Rahasia" in r.text
    opened = [(a.login, a.action) for a in site.audit() if a.tracking_id == secret.tracking_id]
    assert opened == [("petugas1", "buka_rahasia"), ("admin1", "buka_rahasia")]


async def test_a_post_without_its_csrf_token_changes_nothing(site: Site) -> None:
    t, _ = _by_agency(site)
    site.add_user("citra", Role.PETUGAS, [t.agency])
    before = site.h.dump()
    async with site.client() as c:
        await login(c, "citra")
        page = await c.get(f"/tiket/{t.tracking_id}")
        form = {
            "form_id": field(page.text, "form_id"),
            "versi": field(page.text, "versi"),
            "status": "resolved",
            "balasan": "Sudah selesai kami tangani.",
        }
        assert (await c.post(f"/tiket/{t.tracking_id}", data=form)).status_code == 403
        assert (
            await c.post(f"/tiket/{t.tracking_id}", data={**form, "csrf": "wrong"})
        ).status_code == 403
        assert (await c.post("/keluar", data={"x": "1"})).status_code == 403
    after = site.h.dump()
    for table in ("tickets", "messages", "tracker_changes", "outbox", "status_history"):
        assert before[table] == after[table], table


async def test_wrong_passwords_lock_out_the_attacker_not_the_officer_nor_other_accounts(
    site: Site,
) -> None:
    site.add_user("dewi", Role.PETUGAS, ["DISHUB"])
    site.add_user("eka", Role.PETUGAS, ["DISHUB"])
    async with site.client("203.0.113.9") as attacker:
        for _ in range(accounts.MAX_FAILURES_PER_ADDRESS):
            r = await login(attacker, "dewi", "salah-salah-salah")
            assert r.status_code == 422
        r = await login(attacker, "dewi")  # even the right password now
        assert r.status_code == 429 and "Terlalu banyak percobaan" in r.text
        assert (await login(attacker, "eka")).status_code == 303
    async with site.client("10.1.1.1") as officer:
        assert (await login(officer, "dewi")).status_code == 303


async def test_a_requires_reply_status_without_a_reply_is_refused_and_the_text_kept(
    site: Site,
) -> None:
    t, _ = _by_agency(site)
    site.add_user("fajar", Role.PETUGAS, [t.agency])
    async with site.client() as c:
        await login(c, "fajar")
        page = await c.get(f"/tiket/{t.tracking_id}")
        form = {
            "csrf": csrf_of(page.text),
            "form_id": field(page.text, "form_id"),
            "versi": field(page.text, "versi"),
            "status": "resolved",
            "balasan": "",
            "catatan": "catatan saya <b>tebal</b>",
        }
        r = await c.post(f"/tiket/{t.tracking_id}", data=form)
        assert r.status_code == 422
        assert "perlu balasan publik" in r.text and 'id="ringkasan-kesalahan"' in r.text
        assert "catatan saya &lt;b&gt;tebal&lt;/b&gt;" in r.text
        long = {**form, "form_id": "f-long", "status": "", "balasan": "x" * 5001}
        r = await c.post(f"/tiket/{t.tracking_id}", data=long)
        assert r.status_code == 422 and "5001 karakter" in r.text
    assert site.h.outbox() == []


async def test_a_status_change_from_a_stale_page_is_refused(site: Site) -> None:
    t, _ = _by_agency(site)
    site.add_user("gita", Role.PETUGAS, [t.agency])
    site.add_user("hadi", Role.PETUGAS, [t.agency])
    async with site.client() as g, site.client() as hd:
        await login(g, "gita")
        await login(hd, "hadi")
        old = await g.get(f"/tiket/{t.tracking_id}")
        fresh = await hd.get(f"/tiket/{t.tracking_id}")
        r = await hd.post(
            f"/tiket/{t.tracking_id}",
            data={
                "csrf": csrf_of(fresh.text),
                "form_id": field(fresh.text, "form_id"),
                "versi": field(fresh.text, "versi"),
                "status": "in_progress",
                "balasan": "",
            },
        )
        assert r.status_code == 303
        r = await g.post(
            f"/tiket/{t.tracking_id}",
            data={
                "csrf": csrf_of(old.text),
                "form_id": field(old.text, "form_id"),
                "versi": field(old.text, "versi"),
                "status": "resolved",
                "balasan": "Sudah kami selesaikan di lapangan.",
            },
        )
        assert r.status_code == 422 and "sudah diubah orang lain" in r.text
        assert "Sudah kami selesaikan di lapangan." in r.text  # kept in the form
    assert next(r for r in site.tickets() if r.id == t.id).status == "in_progress"


async def test_hostile_text_from_lapor_is_escaped_everywhere(site: Site) -> None:
    hostile = next(t for t in site.tickets() if t.title == HOSTILE_TITLE)
    site.add_user("indah", Role.PETUGAS, [hostile.agency])
    async with site.client() as c:
        await login(c, "indah")
        for url in ("/", f"/tiket/{hostile.tracking_id}"):
            html = (await c.get(url)).text
            assert "<script>alert" not in html and "<img src=x" not in html, url
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url
        page = (await c.get(f"/tiket/{hostile.tracking_id}")).text
        assert 'href="javascript:' not in page
        headers = (await c.get("/")).headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-content-type-options"] == "nosniff"


async def test_pimpinan_reads_but_cannot_act(site: Site) -> None:
    t, _ = _by_agency(site)
    site.add_user("kadis", Role.PIMPINAN, [t.agency])
    async with site.client() as c:
        await login(c, "kadis")
        page = await c.get(f"/tiket/{t.tracking_id}")
        assert page.status_code == 200 and 'id="form-jawab"' not in page.text
        r = await c.post(
            f"/tiket/{t.tracking_id}",
            data={
                "csrf": csrf_of(page.text),
                "form_id": "p1",
                "versi": "",
                "status": "resolved",
                "balasan": "selesai",
            },
        )
        assert r.status_code == 403
        assert (await c.get("/pengguna")).status_code == 404
        assert (await c.get("/laporan")).status_code == 200


async def test_every_route_asks_for_a_login_but_the_public_report(site: Site) -> None:
    t, _ = _by_agency(site)
    async with site.client() as c:
        for url in (
            "/",
            f"/tiket/{t.tracking_id}",
            "/pengguna",
            "/laporan",
            "/sandi",
            f"/tiket/{t.tracking_id}/lampiran/0",
        ):
            r = await c.get(url)
            assert r.status_code == 303 and r.headers["location"].startswith("/masuk"), url
        pub = await c.get("/publik")
        assert pub.status_code == 200 and "Tindak lanjut pengaduan" in pub.text
        for ticket in site.tickets():
            assert ticket.title not in pub.text and ticket.tracking_id not in pub.text
        csv = await c.get("/publik.csv", params={"periode": "bulan-ini"})
        assert csv.status_code == 200 and csv.text.startswith("agency,")


async def test_first_login_with_an_admin_set_password_must_change_it(site: Site) -> None:
    site.add_user("joko", Role.PETUGAS, ["DISHUB"], must_change=True)
    async with site.client() as c:
        r = await login(c, "joko")
        assert r.headers["location"] == "/sandi"
        assert (await c.get("/")).headers["location"] == "/sandi"
        page = await c.get("/sandi")
        r = await c.post(
            "/sandi",
            data={
                "csrf": csrf_of(page.text),
                "lama": PASSWORD,
                "baru": "pendek",
                "ulang": "pendek",
            },
        )
        assert r.status_code == 422 and "paling sedikit 10" in r.text
        r = await c.post(
            "/sandi",
            data={
                "csrf": csrf_of(page.text),
                "lama": PASSWORD,
                "baru": "sandi-baru-joko-1",
                "ulang": "sandi-baru-joko-1",
            },
        )
        assert r.status_code == 303
        assert (await c.get("/")).status_code == 200


async def test_disable_and_password_change_end_every_session(site: Site) -> None:
    site.add_user("kiki", Role.PETUGAS, ["DISHUB"])
    async with site.client() as c1, site.client() as c2:
        await login(c1, "kiki")
        await login(c2, "kiki")
        assert (await c1.get("/")).status_code == 200
        new = accounts.hash_new("baru-sekali-1234")
        site.h.store.run(lambda c: accounts.set_password(c, "kiki", new, site.h.ctx.now(), False))
        assert (await c1.get("/")).status_code == 303
        assert (await c2.get("/")).status_code == 303
        await login(c1, "kiki", "baru-sekali-1234")
        site.h.store.run(lambda c: accounts.set_disabled(c, "kiki", True, site.h.ctx.now()))
        assert (await c1.get("/")).status_code == 303
        assert (await login(c1, "kiki", "baru-sekali-1234")).status_code == 422


async def test_sessions_end_after_twelve_idle_hours(site: Site, fake_time: FakeTime) -> None:
    site.add_user("lina", Role.PETUGAS, ["DISHUB"])
    async with site.client() as c:
        await login(c, "lina")
        fake_time.t += 11 * 3600
        assert (await c.get("/")).status_code == 200
        fake_time.t += 11 * 3600  # touched 11 h ago: still alive
        assert (await c.get("/")).status_code == 200
        fake_time.t += 12 * 3600 + 60
        assert (await c.get("/")).status_code == 303
    stored = site.h.store.run(lambda c: list(c.execute(select(schema.desk_sessions))))
    assert all(len(s.token_hash) == 64 for s in stored)


async def test_bodies_over_64_kib_and_malformed_forms_are_refused(site: Site) -> None:
    t, _ = _by_agency(site)
    site.add_user("maya", Role.PETUGAS, [t.agency])
    async with site.client() as c:
        await login(c, "maya")
        page = await c.get(f"/tiket/{t.tracking_id}")
        r = await c.post(
            f"/tiket/{t.tracking_id}", data={"csrf": csrf_of(page.text), "balasan": "x" * 70000}
        )
        assert r.status_code == 413
        r = await c.post(
            f"/tiket/{t.tracking_id}",
            content=b"\xff\xfe{not a form",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400


async def test_the_inbox_of_50_rows_transfers_under_60_kib(site: Site, world: World) -> None:
    world.add_complaints(80)
    await site.h.pull()
    site.add_user("admin2", Role.ADMIN, [])
    async with site.client() as c:
        await login(c, "admin2")
        r = await c.get("/", headers={"accept-encoding": "gzip"})
        assert r.status_code == 200 and r.text.count("<tr class=") == 50
        css = await c.get("/aset/desk.css", headers={"accept-encoding": "gzip"})
    # httpx decodes: measure what went over the wire by compressing the same way.
    wire = len(gzip.compress(r.content)) + len(gzip.compress(css.content))
    assert r.headers.get("content-encoding") == "gzip"
    assert wire <= 60 * 1024, wire


async def test_admins_add_and_disable_users_in_the_browser(site: Site) -> None:
    site.add_user("root1", Role.ADMIN, [])
    async with site.client() as c:
        await login(c, "root1")
        page = await c.get("/pengguna")
        token = csrf_of(page.text)
        r = await c.post(
            "/pengguna",
            data={
                "csrf": token,
                "login": "nina",
                "nama": "Nina",
                "peran": "petugas",
                "opd": "TIDAKADA",
                "sandi": "sandi-awal-nina",
            },
        )
        assert r.status_code == 422 and "OPD tidak dikenal" in r.text
        r = await c.post(
            "/pengguna",
            data={
                "csrf": token,
                "login": "nina",
                "nama": "Nina",
                "peran": "petugas",
                "opd": "DISHUB",
                "sandi": "sandi-awal-nina",
            },
        )
        assert r.status_code == 303
        r = await c.post("/pengguna/nina", data={"csrf": token, "aksi": "nonaktifkan"})
        assert r.status_code == 303
    user = site.h.store.run(lambda c: accounts.get_user(c, "nina"))
    assert user is not None and user.disabled and user.must_change


async def test_the_desk_refuses_a_database_that_is_not_migrated(
    tmp_path: Path, db_url: str
) -> None:
    from tests.conftest import write_config

    cfg = write_config(tmp_path / "fresh", db_url)
    r = subprocess.run(
        [sys.executable, "-m", "connector", "--config", str(cfg), "web"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "lapor-connector db upgrade" in r.stderr


def _cli(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


async def test_users_commands_and_their_exit_codes(tmp_path: Path, db_url: str) -> None:
    from tests.conftest import write_config

    cfg = write_config(tmp_path / "cli", db_url)
    assert _cli(cfg, "db", "upgrade").returncode == 0
    ok = _cli(
        cfg,
        "users",
        "add",
        "ani",
        "--name",
        "Ani",
        "--role",
        "petugas",
        "--agency",
        "DISHUB",
        "--email",
        "ani@example.go.id",
        "--password-stdin",
        stdin="sandi-panjang-ani\n",
    )
    assert ok.returncode == 0, ok.stderr
    cases = [
        (
            [
                "users",
                "add",
                "ani",
                "--name",
                "Ani",
                "--role",
                "petugas",
                "--agency",
                "DISHUB",
                "--password-stdin",
            ],
            "sandi-panjang-ani\n",
            1,
            "exists",
        ),
        (
            [
                "users",
                "add",
                "budi",
                "--name",
                "B",
                "--role",
                "petugas",
                "--agency",
                "NOPE",
                "--password-stdin",
            ],
            "sandi-panjang-budi\n",
            2,
            "unknown agency",
        ),
        (
            ["users", "add", "budi", "--name", "B", "--role", "pimpinan", "--password-stdin"],
            "sandi-panjang-budi\n",
            2,
            "--agency",
        ),
        (
            ["users", "add", "budi", "--name", "B", "--role", "admin", "--password-stdin"],
            "pendek\n",
            2,
            "at least 10",
        ),
        (["users", "disable", "tidakada"], "", 1, "no user"),
        (["users", "password", "ani", "--password-stdin"], "pendek\n", 2, "at least 10"),
    ]
    for args, stdin, code, words in cases:
        r = _cli(cfg, *args, stdin=stdin)
        assert r.returncode == code and words in r.stderr, (args, r.returncode, r.stderr)
    assert _cli(cfg, "users", "disable", "ani").returncode == 0
    listed = _cli(cfg, "users", "list", "--json")
    import json

    rows = json.loads(listed.stdout)
    assert rows == [
        {
            "login": "ani",
            "name": "Ani",
            "role": "petugas",
            "agencies": ["DISHUB"],
            "email": "ani@example.go.id",
            "disabled": True,
            "must_change_password": True,
        }
    ]
    assert "sandi-panjang" not in listed.stdout + listed.stderr
    assert _cli(cfg, "users", "enable", "ani").returncode == 0
    assert (
        _cli(
            cfg, "users", "password", "ani", "--password-stdin", stdin="sandi-baru-ani-99\n"
        ).returncode
        == 0
    )


def test_due_words_count_working_days() -> None:
    from datetime import UTC, datetime

    from connector.desk.views import Due, due_state
    from connector.domain import Facts, Period

    def facts(due: datetime) -> Facts:
        p = Period(
            seq=1,
            agency="A",
            start="received",
            started_at=due - timedelta(days=7),
            due_at=due,
            due_source="computed",
            lapor_deadline=None,
            first_follow_up_at=None,
            first_follow_up_id=None,
            on_time=None,
            ended_at=None,
        )
        return Facts(
            "1",
            "A",
            ("A",),
            due - timedelta(days=7),
            due + timedelta(days=60),
            "terdisposisi",
            False,
            (p,),
        )

    # Monday 7 December 2026, 15.00 WITA = 07.00 UTC.
    due = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    thursday = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    s = due_state(facts(due), False, thursday)
    assert (s.kind, s.words) == (Due.LATER, "2 hari kerja lagi")
    later = datetime(2026, 12, 10, 2, 0, tzinfo=UTC)  # Thursday after
    s = due_state(facts(due), False, later)
    assert (s.kind, s.words) == (Due.OVERDUE, "lewat 3 hari kerja")
    from connector.desk.views import due_sentence

    assert due_sentence(due_state(facts(due), False, thursday)) == (
        "Batas tindak lanjut: Senin, 7 Desember 2026 pukul 15.00 WITA (2 hari kerja lagi)"
    )


@pytest.fixture
async def files_site(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> AsyncIterator[Site]:
    h = Harness(
        tmp_path / "site",
        db_url,
        world,
        fake_time,
        extra_settings=(
            '[attachments]\ndownload = true\nallowed_types = ["image/jpeg", "image/png"]\n'
        ),
    )
    await h.pull()
    yield Site(h)
    h.store.close()


async def test_attachments_stream_only_to_who_may_see_them_with_safe_headers(
    files_site: Site,
) -> None:
    import json

    s = files_site
    with_files = [
        t
        for t in s.tickets()
        if any("stored" in a for a in json.loads(t.attachments)) and not t.confidential
    ]
    t = with_files[0]
    other = next(a.code for a in s.h.mappings().agencies if a.code != t.agency)
    s.add_user("ovi", Role.PETUGAS, [t.agency])
    s.add_user("putu", Role.PETUGAS, [other])
    index = next(i for i, a in enumerate(json.loads(t.attachments)) if "stored" in a)
    url = f"/tiket/{t.tracking_id}/lampiran/{index}"
    async with s.client() as c:
        await login(c, "ovi")
        r = await c.get(url)
        assert r.status_code == 200 and r.content
        assert r.headers["content-disposition"].startswith("attachment")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in r.headers["content-security-policy"]
        assert r.headers["content-type"].split(";")[0] in ("image/jpeg", "image/png")
        shown = await c.get(url, params={"lihat": "1"})
        assert shown.headers["content-disposition"].startswith("inline")
        refused = [i for i, a in enumerate(json.loads(t.attachments)) if "stored" not in a]
        for i in refused:  # refused types or not downloaded: never served
            assert (await c.get(f"/tiket/{t.tracking_id}/lampiran/{i}")).status_code == 404
        assert (await c.get(f"/tiket/{t.tracking_id}/lampiran/99")).status_code == 404
    async with s.client() as c:
        await login(c, "putu")
        assert (await c.get(url)).status_code == 404
    anonymous = [x for x in with_files if x.anonymous]
    if anonymous:
        a = anonymous[0]
        s.add_user("rina", Role.PETUGAS, [a.agency])
        async with s.client() as c:
            await login(c, "rina")
            i = next(i for i, m in enumerate(json.loads(a.attachments)) if "stored" in m)
            r = await c.get(f"/tiket/{a.tracking_id}/lampiran/{i}")
            assert f'filename="lampiran-{i + 1}.' in r.headers["content-disposition"]


async def test_anonim_shows_no_identity_and_contact_only_to_the_agencys_officers(
    site: Site,
) -> None:
    named = next(
        t for t in site.tickets() if not t.anonymous and t.reporter_email and not t.confidential
    )
    anon = next(t for t in site.tickets() if t.anonymous and not t.confidential)
    site.add_user("sari", Role.PETUGAS, [named.agency, anon.agency])
    site.add_user("kepala2", Role.PIMPINAN, [named.agency])
    site.add_user("admin3", Role.ADMIN, [])
    async with site.client() as c:
        await login(c, "sari")
        page = (await c.get(f"/tiket/{named.tracking_id}")).text
        assert named.reporter_name in page and named.reporter_email in page
        page = (await c.get(f"/tiket/{anon.tracking_id}")).text
        assert "Anonim" in page
    for who in ("kepala2", "admin3"):
        async with site.client() as c:
            await login(c, who)
            page = (await c.get(f"/tiket/{named.tracking_id}")).text
            assert named.reporter_name in page, who
            assert named.reporter_email not in page, who
            if named.reporter_phone:
                assert named.reporter_phone not in page, who


async def test_cookies_are_secure_behind_a_trusted_https_proxy_only(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    h = Harness(
        tmp_path / "site",
        db_url,
        world,
        fake_time,
        extra_settings='[web]\ntrusted_proxies = ["127.0.0.1"]\n',
    )
    s = Site(h)
    s.add_user("tono", Role.PETUGAS, ["DISHUB"])
    proxied = {"x-forwarded-proto": "https", "x-forwarded-for": "198.51.100.7"}
    async with s.client("127.0.0.1") as c:
        page = await c.get("/masuk", headers=proxied)
        assert "__Host-desk_csrf=" in page.headers["set-cookie"]
        assert "Secure" in page.headers["set-cookie"]
        # The client speaks plain http to the proxy's side: hand the Secure cookie back.
        token = csrf_of(page.text)
        r = await c.post(
            "/masuk",
            headers={**proxied, "cookie": f"__Host-desk_csrf={token}"},
            data={"login": "tono", "password": PASSWORD, "csrf": token},
        )
        cookie = r.headers["set-cookie"]
        assert "__Host-sesi=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
        assert "samesite=lax" in cookie.lower()
    async with s.client("192.0.2.50") as c:  # not a trusted proxy: its header is ignored
        page = await c.get("/masuk", headers=proxied)
        r = await c.post(
            "/masuk",
            headers=proxied,
            data={"login": "tono", "password": PASSWORD, "csrf": csrf_of(page.text)},
        )
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("sesi=") and "Secure" not in cookie
    h.store.close()


def test_the_per_account_ceiling_slows_guessing_from_many_addresses(
    db_url: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from connector.runtime import open_store
    from connector.settings import load_config
    from tests.conftest import write_config

    store = open_store(load_config(write_config(tmp_path / "c", db_url), environ={}))
    now = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
    try:

        def spray(conn: Any) -> None:
            for i in range(accounts.ACCOUNT_CEILING):
                accounts.record_failure(conn, "umar", f"198.51.100.{i}", now)

        store.run(spray)
        # A fresh address may still try once (the officer elsewhere), then waits a minute.
        assert store.run(lambda c: accounts.throttled(c, "umar", "10.9.9.9", now)) is None
        store.run(lambda c: accounts.record_failure(c, "umar", "10.9.9.9", now))
        wait = store.run(
            lambda c: accounts.throttled(c, "umar", "10.9.9.9", now + timedelta(seconds=10))
        )
        assert wait is not None and wait <= timedelta(minutes=1)
        assert store.run(lambda c: accounts.throttled(c, "lain", "10.9.9.9", now)) is None
        later = now + accounts.THROTTLE_WINDOW + timedelta(seconds=1)
        assert store.run(lambda c: accounts.throttled(c, "umar", "10.9.9.9", later)) is None
    finally:
        store.close()


async def test_the_desk_works_beside_a_daemon_holding_the_instance_lock(
    site: Site, db_url: str
) -> None:
    from connector.desk.serve import open_desk_store

    site.h.store.lock_instance()  # as the daemon does
    desk_store = open_desk_store(site.h.config)  # no lock, no migration: it opens
    try:
        app = create_app(
            site.h.config, desk_store, site.h.mappings, site.h.tracker, clock=site.h.ctx.now
        )
        site.add_user("vina", Role.PETUGAS, ["DISHUB"])
        transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://d") as c:
            assert (await login(c, "vina")).status_code == 303
            assert (await c.get("/")).status_code == 200
    finally:
        desk_store.close()


async def test_desk_logs_name_user_action_and_ticket_never_text(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    t, _ = _by_agency(site)
    site.add_user("wati", Role.PETUGAS, [t.agency])
    reply = "Balasan rahasia-kata-unik untuk pelapor"
    async with site.client() as c:
        await login(c, "wati")
        page = await c.get(f"/tiket/{t.tracking_id}")
        await c.post(
            f"/tiket/{t.tracking_id}",
            data={
                "csrf": csrf_of(page.text),
                "form_id": field(page.text, "form_id"),
                "versi": field(page.text, "versi"),
                "status": "in_progress",
                "balasan": reply,
                "catatan": "catatan-kata-unik",
            },
        )
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "desk_answer" in logged and "wati" in logged and t.tracking_id in logged
    for secret in ("rahasia-kata-unik", "catatan-kata-unik", t.title[:20], PASSWORD):
        assert secret not in logged, secret
    actions = [(a.login, a.action, a.tracking_id) for a in site.audit()]
    assert ("wati", "jawab", t.tracking_id) in actions


async def test_search_tabs_and_filters(site: Site, fake_time: FakeTime) -> None:
    site.add_user("admin4", Role.ADMIN, [])
    rows = [t for t in site.tickets() if t.status != "closed"]
    word = next(w for t in rows for w in t.title.split() if len(w) > 6 and "<" not in w)
    async with site.client() as c:
        await login(c, "admin4")
        everything = (await c.get("/")).text
        found = (await c.get("/", params={"cari": word})).text
        assert found.count("<tr class=") == sum(
            1 for t in rows if word.casefold() in t.title.casefold()
        )
        t = rows[0]
        exact = await c.get("/", params={"cari": t.tracking_id})
        assert f"/tiket/{t.tracking_id}" in exact.text
        assert everything.count("<tr class=") == len(rows)
        fake_time.t += 20 * 86400
        await login(c, "admin4")  # the session ended meanwhile (12 h idle)
        late = (await c.get("/", params={"tab": "lewat"})).text
        assert late.count("<tr class=") > 0
        assert late.count('<tr class="due-lewat"') == late.count("<tr class=")
        unassigned = (await c.get("/", params={"petugas": "-"})).text
        assert unassigned.count("<tr class=") == len(rows)


async def test_with_redmine_the_desk_lists_due_states_and_links_each_issue(site: Site) -> None:
    from connector.settings import load_config
    from connector.tracker.registry import open_tracker
    from tests.conftest import write_config

    h = site.h
    cfg = load_config(
        write_config(
            h.root / "rm",
            str(h.config.settings.storage.url),
            extra=(
                '[tracker]\nkind = "redmine"\n[tracker.redmine]\nurl = "https://redmine.test"\n'
                'project = "pengaduan"\ntracking_field_id = 7\n'
            ),
        ),
        environ={},
    )
    tracker = open_tracker(cfg, h.mappings, environ={"REDMINE_API_KEY": "k"})
    tids = [t.tracking_id for t in site.tickets() if t.status != "closed"]
    now = h.ctx.now()
    h.store.run(
        lambda c: c.execute(
            schema.tracker_issues.insert(),
            [
                {
                    "tracking_id": tid,
                    "kind": "redmine",
                    "issue_ref": str(100 + i),
                    "officer_status": None,
                    "updated_at": now,
                }
                for i, tid in enumerate(tids)
            ],
        )
    )
    app = create_app(cfg, h.store, h.mappings, tracker, clock=h.ctx.now)
    site.add_user("xena", Role.ADMIN, [])
    transport = httpx.ASGITransport(app=app, client=("10.0.0.3", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://d") as c:
        await login(c, "xena")
        inbox = (await c.get("/")).text
        assert 'href="https://redmine.test/issues/100"' in inbox
        assert "ditangani di Redmine" in inbox
        for t in site.tickets()[:3]:
            assert t.title not in inbox  # the text lives in Redmine
        assert (await c.get(f"/tiket/{tids[0]}")).status_code == 404
        assert (await c.get("/laporan")).status_code == 200


async def test_a_desk_read_never_waits_for_the_daemons_write_transaction(site: Site) -> None:
    import threading
    import time

    store = site.h.store
    holding, release = threading.Event(), threading.Event()

    def daemon_pull() -> None:
        def tx(conn: Any) -> None:
            conn.execute(schema.kv.insert().values(key="probe", value="1"))
            holding.set()
            release.wait(30)

        store.run(tx)

    writer = threading.Thread(target=daemon_pull)
    writer.start()
    try:
        assert holding.wait(30)
        started = time.monotonic()
        count = store.read(lambda c: len(list(c.execute(select(schema.tickets.c.id)))))
        waited = time.monotonic() - started
    finally:
        release.set()
        writer.join()
    assert count == len(site.tickets())
    # The busy timeout is 10 s: a read that queued behind the writer would take that long.
    assert waited < 5, waited


async def test_a_complaint_closed_on_lapor_is_read_only(site: Site) -> None:
    from sqlalchemy import update

    t, _ = _by_agency(site)
    site.add_user("yuni", Role.PETUGAS, [t.agency])
    async with site.client() as c:
        await login(c, "yuni")
        page = await c.get(f"/tiket/{t.tracking_id}")
        site.h.store.run(
            lambda conn: conn.execute(
                update(schema.tickets)
                .where(schema.tickets.c.id == t.id)
                .values(lapor_status="diarsipkan")
            )
        )
        r = await c.post(
            f"/tiket/{t.tracking_id}",
            data={
                "csrf": csrf_of(page.text),
                "form_id": field(page.text, "form_id"),
                "versi": field(page.text, "versi"),
                "status": "",
                "balasan": "Masih kami cek.",
                "catatan": "",
            },
        )
        assert r.status_code == 422 and "diarsipkan di LAPOR!" in r.text
        again = await c.get(f"/tiket/{t.tracking_id}")
        assert 'id="form-jawab"' not in again.text and "hanya dapat dibaca" in again.text
    assert site.h.outbox() == []


async def test_an_answer_from_an_old_page_never_undoes_anothers_assignment(site: Site) -> None:
    t, _ = _by_agency(site)
    for who in ("asep", "bayu", "cici"):
        site.add_user(who, Role.PETUGAS, [t.agency])
    async with site.client() as a, site.client() as b:
        await login(a, "asep")
        await login(b, "bayu")
        old = await a.get(f"/tiket/{t.tracking_id}")  # drawn unassigned
        fresh = await b.get(f"/tiket/{t.tracking_id}")
        r = await b.post(
            f"/tiket/{t.tracking_id}",
            data={
                "csrf": csrf_of(fresh.text),
                "form_id": field(fresh.text, "form_id"),
                "versi": field(fresh.text, "versi"),
                "petugas_asal": "",
                "petugas": "bayu",
                "status": "",
                "balasan": "",
                "catatan": "",
            },
        )
        assert r.status_code == 303
        base = {
            "csrf": csrf_of(old.text),
            "versi": field(old.text, "versi"),
            "petugas_asal": field(old.text, "petugas_asal"),
            "status": "",
            "balasan": "",
        }
        r = await a.post(
            f"/tiket/{t.tracking_id}",
            data={**base, "form_id": "note-only", "petugas": "", "catatan": "hanya catatan"},
        )
        assert r.status_code == 303
        assert next(x for x in site.tickets() if x.id == t.id).assignee == "bayu"
        r = await a.post(
            f"/tiket/{t.tracking_id}",
            data={**base, "form_id": "reassign", "petugas": "cici", "catatan": ""},
        )
        assert r.status_code == 422 and "sudah diubah orang lain" in r.text
    assert next(x for x in site.tickets() if x.id == t.id).assignee == "bayu"
    # A disabled assignee stays listed and assigned when someone else answers.
    site.h.store.run(lambda c: accounts.set_disabled(c, "bayu", True, site.h.ctx.now()))
    async with site.client() as c:
        await login(c, "cici")
        page = await c.get(f"/tiket/{t.tracking_id}")
        assert 'value="bayu" selected' in page.text
        r = await c.post(
            f"/tiket/{t.tracking_id}",
            data={
                "csrf": csrf_of(page.text),
                "form_id": field(page.text, "form_id"),
                "versi": field(page.text, "versi"),
                "petugas_asal": field(page.text, "petugas_asal"),
                "petugas": "bayu",
                "status": "",
                "balasan": "",
                "catatan": "dicek",
            },
        )
        assert r.status_code == 303
    assert next(x for x in site.tickets() if x.id == t.id).assignee == "bayu"


async def test_a_refused_answer_on_a_rahasia_complaint_is_audited_too(site: Site) -> None:
    secret = next(
        t
        for t in site.tickets()
        if t.confidential and t.lapor_status not in ("ditutup", "diarsipkan")
    )
    site.add_user("dodi", Role.PETUGAS, [secret.agency])
    async with site.client() as c:
        await login(c, "dodi")
        inbox = await c.get("/")
        r = await c.post(
            f"/tiket/{secret.tracking_id}",
            data={
                "csrf": csrf_of(inbox.text),
                "form_id": "abc",
                "versi": "x",
                "status": "",
                "balasan": "",
                "catatan": "",
            },
        )
        assert r.status_code == 422
    assert [(a.login, a.action) for a in site.audit() if a.tracking_id == secret.tracking_id] == [
        ("dodi", "buka_rahasia")
    ]


async def test_guessing_the_current_password_on_the_change_page_is_throttled(site: Site) -> None:
    site.add_user("erna", Role.PETUGAS, ["DISHUB"])
    async with site.client() as c:
        await login(c, "erna")
        page = await c.get("/sandi")
        token = csrf_of(page.text)
        for i in range(accounts.MAX_FAILURES_PER_ADDRESS):
            r = await c.post(
                "/sandi",
                data={
                    "csrf": token,
                    "lama": f"tebakan-{i:04}",
                    "baru": "sandi-baru-erna-1",
                    "ulang": "sandi-baru-erna-1",
                },
            )
            assert r.status_code == 422
        r = await c.post(
            "/sandi",
            data={
                "csrf": token,
                "lama": PASSWORD,
                "baru": "sandi-baru-erna-1",
                "ulang": "sandi-baru-erna-1",
            },
        )
        assert r.status_code == 429


async def test_a_pimpinan_sees_no_detail_of_a_rahasia_complaint_in_the_inbox(site: Site) -> None:
    secret = next(t for t in site.tickets() if t.confidential and t.status != "closed")
    site.add_user("kabid", Role.PIMPINAN, [secret.agency])
    async with site.client() as c:
        await login(c, "kabid")
        inbox = (await c.get("/")).text
    row = re.search(
        rf"<tr[^>]*>\s*<td data-label=\"Nomor\">{secret.tracking_id}</td>"
        r"(.*?)</tr>",
        inbox,
        re.S,
    )
    assert row, "the rahasia row is listed, not linked"
    assert "Laporan rahasia" in row.group(1)
    if secret.category:
        assert secret.category not in row.group(1)
    assert secret.title not in inbox


def test_agency_codes_match_exactly_never_as_like_patterns(db_url: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from connector.runtime import open_store
    from connector.settings import load_config
    from tests.conftest import write_config

    store = open_store(load_config(write_config(tmp_path / "c", db_url), environ={}))
    try:
        now = datetime(2026, 12, 3, tzinfo=UTC)
        store.run(
            lambda c: accounts.add_user(
                c,
                "fani",
                "Fani",
                Role.PETUGAS,
                ["DKPXKB"],
                None,
                password_hash(),
                now,
                must_change=False,
            )
        )
        assert store.run(lambda c: accounts.officers_of(c, "DKP_KB")) == []
        assert [u.login for u in store.run(lambda c: accounts.officers_of(c, "DKPXKB"))] == ["fani"]
    finally:
        store.close()


async def test_password_verification_holds_no_write_lock(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    import anyio

    site.add_user("gani", Role.PETUGAS, ["DISHUB"])
    verifying, go_on = threading.Event(), threading.Event()
    real = accounts.password_matches

    def slow(stored: str, password: str) -> bool:
        verifying.set()
        go_on.wait(30)
        return real(stored, password)

    monkeypatch.setattr(accounts, "password_matches", slow)

    async def daemon_write() -> float:
        await anyio.to_thread.run_sync(verifying.wait, 30)
        started = time.monotonic()
        await anyio.to_thread.run_sync(
            site.h.store.run,
            lambda c: c.execute(schema.kv.insert().values(key="probe2", value="1")),
        )
        go_on.set()
        return time.monotonic() - started

    async with site.client() as c, anyio.create_task_group() as tg:
        waited: list[float] = []

        async def writer() -> None:
            waited.append(await daemon_write())

        tg.start_soon(writer)
        r = await login(c, "gani")
    assert r.status_code == 303
    assert waited and waited[0] < 5, waited


async def test_every_route_as_each_role(site: Site) -> None:
    """The scoping matrix: every route, as nobody, an officer of the complaint's agency,
    an officer of another, a pimpinan of the agency, and an admin."""
    t, other = _by_agency(site)
    site.add_user("m-petugas", Role.PETUGAS, [t.agency])
    site.add_user("m-lain", Role.PETUGAS, [other.agency])
    site.add_user("m-kepala", Role.PIMPINAN, [t.agency])
    site.add_user("m-admin", Role.ADMIN, [])
    tid = t.tracking_id
    gets = {  # route: expected status per role
        "/": {"m-petugas": 200, "m-lain": 200, "m-kepala": 200, "m-admin": 200},
        f"/tiket/{tid}": {"m-petugas": 200, "m-lain": 404, "m-kepala": 200, "m-admin": 200},
        f"/tiket/{tid}/lampiran/0": {
            "m-petugas": 404,
            "m-lain": 404,
            "m-kepala": 404,
            "m-admin": 404,
        },  # nothing downloaded here
        "/pengguna": {"m-petugas": 404, "m-lain": 404, "m-kepala": 404, "m-admin": 200},
        "/laporan": {"m-petugas": 200, "m-lain": 200, "m-kepala": 200, "m-admin": 200},
        "/sandi": {"m-petugas": 200, "m-lain": 200, "m-kepala": 200, "m-admin": 200},
        "/publik": {"m-petugas": 200, "m-lain": 200, "m-kepala": 200, "m-admin": 200},
    }
    posts = {  # route: (form, expected status per role)
        f"/tiket/{tid}": (
            {"status": "", "balasan": "", "catatan": "matriks", "versi": "x", "form_id": "m"},
            {"m-petugas": 303, "m-lain": 404, "m-kepala": 403, "m-admin": 403},
        ),
        "/pengguna": (
            {"login": "baru-x", "nama": "Baru", "peran": "admin", "sandi": "sandi-baru-sekali"},
            {"m-petugas": 404, "m-lain": 404, "m-kepala": 404, "m-admin": 303},
        ),
        "/pengguna/m-lain": (
            {"aksi": "aktifkan"},
            {"m-petugas": 404, "m-lain": 404, "m-kepala": 404, "m-admin": 303},
        ),
    }
    async with site.client() as anon:
        for url in gets:
            r = await anon.get(url)
            assert (
                r.status_code == 200
                if url == "/publik"
                else r.status_code == 303 and r.headers["location"].startswith("/masuk")
            ), url
        for url, (form, _) in posts.items():
            assert (await anon.post(url, data=form)).status_code in (303, 403), url
    for who in ("m-petugas", "m-lain", "m-kepala", "m-admin"):
        async with site.client() as c:
            assert (await login(c, who)).status_code == 303
            for url, expected in gets.items():
                assert (await c.get(url)).status_code == expected[who], (who, url)
            token = csrf_of((await c.get("/")).text)
            for url, (form, expected) in posts.items():
                data = {**form, "csrf": token}
                if "form_id" in data:
                    data["form_id"] = f"m-{who}"
                r = await c.post(url, data=data)
                assert r.status_code == expected[who], (who, url, r.status_code)
    assert [a.login for a in site.audit() if a.action == "jawab"] == ["m-petugas"]
