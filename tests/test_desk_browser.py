"""The officer's desk in a real browser: Debian's Chromium driven by Playwright against the
desk served by uvicorn on a loopback port, over a database the sandbox pull filled.

One browser for the module, one site per storage backend. Covered: the whole answer flow
by keyboard alone (with JavaScript) and with JavaScript off, down to the one follow-up in
the sandbox; hostile text from LAPOR! staying inert; a 360-px phone screen; and axe-core
(bundled by the axe-playwright-python package) with zero violations on every page type.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from playwright.sync_api import Browser, Dialog, Page, sync_playwright

from connector.desk.accounts import Role
from connector.desk.web import create_app
from connector.sandbox import Faults, World
from tests.conftest import _BACKEND, BACKENDS, FakeTime, database
from tests.factories import HOSTILE_BODY, HOSTILE_TITLE, PASSWORD, add_user, free_port
from tests.harness import Harness

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
T = TypeVar("T")


# -- the site: sandbox, pull and push in a loop thread; the desk in uvicorn's thread ----------


class Loop:
    """One event loop in its own thread for the harness (the sync Playwright API owns the
    test's thread), so the sandbox client lives on one loop throughout."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class LiveSite:
    backend: str
    h: Harness
    world: World
    time: FakeTime
    loop: Loop
    base: str
    browser: Browser
    agencies: list[str] = field(default_factory=list)  # with two or more open tickets
    sessions: dict[str, Any] = field(default_factory=dict)  # login -> storage state

    def add_user(self, login: str, role: Role, agencies: list[str]) -> None:
        add_user(self.h, login, role, agencies)

    @contextlib.contextmanager
    def page(self, login: str | None = None, **options: Any) -> Iterator[Page]:
        """A fresh browser context (``options``: viewport, JavaScript...), logged in as
        ``login`` with a session opened once per module: logging in costs an argon2 hash."""
        state = None
        if login is not None:
            state = self.sessions.get(login)
            if state is None:
                with self.page() as first:
                    _login(first, login)
                    state = self.sessions[login] = first.context.storage_state()
        ctx = self.browser.new_context(base_url=self.base, storage_state=state, **options)
        ctx.set_default_timeout(10_000)
        try:
            yield ctx.new_page()
        finally:
            ctx.close()

    def push(self) -> None:
        self.loop.run(self.h.push())

    def follow_ups_with(self, text: str) -> list[tuple[int, dict[str, Any]]]:
        return [
            (tid, fu)
            for tid, rec in self.world.records.items()
            for fu in rec["tindak_lanjut"]
            if fu["isi"] == text
        ]

    def open_tickets(self, agency: str) -> list[Any]:
        return [
            t
            for t in self.h.tickets()
            if t["agency"] == agency
            and t["status"] in ("new", "in_progress")
            and t["lapor_status"] not in ("ditutup", "diarsipkan")
        ]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module", params=BACKENDS)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, browser: Browser
) -> Iterator[LiveSite]:
    tmp = tmp_path_factory.mktemp(f"desk-{request.param}")
    with database(request.param, tmp, request.node) as url:
        fake_time = FakeTime()
        world = World(
            seed=7, complaints=60, faults=Faults(rate_limit_per_minute=0), clock=fake_time
        )
        for rec in list(world.records.values())[:3]:
            rec["judul"], rec["isi"] = HOSTILE_TITLE, HOSTILE_BODY
        loop = Loop()
        h = Harness(tmp / "site", url, world, fake_time)
        loop.run(h.pull())
        fake_time.t += 10 * 86400  # past the 5 working days: the open ones are overdue
        app = create_app(h.config, h.store, h.mappings, h.tracker, clock=h.ctx.now)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
                server_header=False,
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the desk did not start"
            time.sleep(0.02)
        s = LiveSite(request.param, h, world, fake_time, loop, f"http://127.0.0.1:{port}", browser)
        counts: dict[str, int] = {}
        for t in h.tickets():
            if (
                t["status"] in ("new", "in_progress")
                and not t["confidential"]
                and t["title"] != HOSTILE_TITLE
                and t["lapor_status"] not in ("ditutup", "diarsipkan")
            ):
                counts[t["agency"]] = counts.get(t["agency"], 0) + 1
        s.agencies = sorted((a for a, n in counts.items() if n >= 2), key=lambda a: -counts[a])
        s.add_user("admin", Role.ADMIN, [])
        s.add_user("petugas", Role.PETUGAS, [s.agencies[0]])
        try:
            yield s
        finally:
            server.should_exit = True
            thread.join(10)
            loop.close()
            h.store.close()


@pytest.fixture(autouse=True)
def _on_backend(request: pytest.FixtureRequest, site: LiveSite) -> None:
    # The module's site is on this backend (conftest's every-backend check reads it).
    request.node.stash[_BACKEND] = site.backend


def _login(page: Page, login: str) -> None:
    page.goto("/masuk")
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]:has-text('Masuk')")
    page.wait_for_url("**/")


# -- the answer flow ---------------------------------------------------------------------------


def _focus_next(page: Page, matches: str, limit: int = 300) -> None:
    """Tab until the focused element matches the JS predicate ``matches`` (on ``el``)."""
    test = f"(() => {{ const el = document.activeElement; return !!({matches}); }})()"
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(test):
            return
    raise AssertionError(f"Tab never reached an element where {matches}")


def test_an_officer_answers_an_overdue_complaint_with_the_keyboard_alone(site: LiveSite) -> None:
    site.add_user("kibor", Role.PETUGAS, [site.agencies[0]])
    with site.page() as page:
        page.goto("/masuk")
        _focus_next(page, "el.id === 'login'")
        page.keyboard.type("kibor")
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url("**/")
        # The inbox lists the most overdue first: that is the one to answer.
        first = page.locator("table.inbox tbody tr").first
        assert "lewat" in first.locator("td[data-label=Batas]").inner_text()
        tid = first.locator("td[data-label=Nomor]").inner_text().strip()
        _focus_next(page, f"el.getAttribute('href') === '/tiket/{tid}'")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/tiket/{tid}")
        assert "lewat" in page.inner_text(".due-line")
        _focus_next(page, "el.id === 'templat'")
        page.keyboard.press("Home")  # the first template: in_progress (diproses)
        assert page.eval_on_selector("#templat", "s => s.value") == "in_progress"
        _focus_next(page, "el.textContent.trim() === 'Pakai templat'")
        page.keyboard.press("Space")
        # desk.js filled the form in place and moved the focus to the reply.
        page.wait_for_function("document.activeElement.id === 'balasan'")
        assert page.url.endswith(f"/tiket/{tid}")
        assert page.eval_on_selector("#status", "s => s.value") == "in_progress"
        page.keyboard.press("Control+End")
        page.keyboard.type(" Petugas kami ke lokasi hari Kamis.")
        text = page.input_value("#balasan")
        assert text.startswith("Terima kasih, Bapak/Ibu.") and text.endswith("hari Kamis.")
        assert "Sisa" in page.inner_text("#hitung")
        _focus_next(page, "el.textContent.trim() === 'Simpan jawaban'")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/tiket/{tid}?tersimpan=1")
        assert "Jawaban tersimpan" in page.inner_text("[role=status]")
        assert "Menunggu dikirim ke LAPOR!" in page.inner_text(".timeline")
        assert site.follow_ups_with(text) == []  # the desk never calls LAPOR! itself
        site.push()
        sent = site.follow_ups_with(text)
        assert len(sent) == 1 and str(sent[0][0]) == tid
        assert sent[0][1]["status"] == "diproses"
        page.reload()
        assert "Terkirim ke LAPOR! pada" in page.inner_text(".timeline")
    assert site.h.ticket(tid)["status"] == "in_progress"


def test_without_javascript_the_template_comes_from_the_server(site: LiveSite) -> None:
    agency = site.agencies[1] if len(site.agencies) > 1 else site.agencies[0]
    site.add_user("tanpajs", Role.PETUGAS, [agency])
    with site.page("tanpajs", java_script_enabled=False) as page:
        page.goto("/")
        row = page.locator("table.inbox tbody tr").first
        assert "lewat" in row.locator("td[data-label=Batas]").inner_text()
        tid = row.locator("td[data-label=Nomor]").inner_text().strip()
        row.locator("a").first.click()
        page.wait_for_url(f"**/tiket/{tid}")
        page.select_option("#templat", "resolved")
        page.click("text=Pakai templat")
        page.wait_for_url(f"**/tiket/{tid}?templat=resolved#jawab")
        assert page.eval_on_selector("#status", "s => s.value") == "resolved"
        template = page.input_value("#balasan")
        assert template.startswith("Bapak/Ibu, laporan Bapak/Ibu telah selesai")
        text = "Jalan di depan sekolah sudah kami tambal pada hari Selasa. " + template
        page.fill("#balasan", text)
        page.click("text=Simpan jawaban")
        page.wait_for_url(f"**/tiket/{tid}?tersimpan=1")
        assert "Jawaban tersimpan" in page.inner_text("[role=status]")
    site.push()
    sent = site.follow_ups_with(text)
    assert len(sent) == 1 and str(sent[0][0]) == tid and sent[0][1]["status"] == "selesai"
    assert site.h.ticket(tid)["status"] == "resolved"


def test_another_agencys_complaint_is_not_found_and_a_forged_form_changes_nothing(
    site: LiveSite,
) -> None:
    theirs = next(
        t for t in site.h.tickets() if t["agency"] != site.agencies[0] and not t["confidential"]
    )
    mine = site.open_tickets(site.agencies[0])[-1]
    with site.page("petugas") as page:
        r = page.goto(f"/tiket/{theirs['tracking_id']}")
        assert r is not None and r.status == 404
        assert page.inner_text("h1") == "Halaman tidak ditemukan"
        page.goto(f"/?cari={theirs['tracking_id']}")
        assert page.locator(f"a[href='/tiket/{theirs['tracking_id']}']").count() == 0
        page.goto(f"/tiket/{mine['tracking_id']}")
        page.evaluate("document.querySelector('#form-jawab input[name=csrf]').value = 'x'")
        page.select_option("#status", "resolved")
        page.fill("#balasan", "Balasan dengan token palsu.")
        with page.expect_navigation() as nav:
            page.click("text=Simpan jawaban")
        assert nav.value is not None and nav.value.status == 403
    assert site.h.ticket(mine["tracking_id"])["status"] == mine["status"]
    assert site.follow_ups_with("Balasan dengan token palsu.") == []


# -- hostile text, small screens -------------------------------------------------------------


def test_hostile_text_from_lapor_stays_inert_and_reads_back_literally(site: LiveSite) -> None:
    hostile = [t for t in site.h.tickets() if t["title"] == HOSTILE_TITLE]
    assert hostile
    dialogs: list[str] = []
    errors: list[str] = []
    with site.page("admin") as page:

        def dismiss(d: Dialog) -> None:
            dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dismiss)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto("/")
        cells = page.locator("td[data-label=Judul]").all_inner_texts()
        assert any(c.endswith(HOSTILE_TITLE) for c in cells)
        for t in hostile:
            page.goto(f"/tiket/{t['tracking_id']}")
            heading = page.inner_text("h1")
            assert heading.endswith(HOSTILE_TITLE), heading
            assert page.inner_text(".body") == HOSTILE_BODY
            assert page.locator("img").count() == 0
            assert page.locator("a[href^='javascript']").count() == 0
            assert page.locator("main script").count() == 0
        page.wait_for_timeout(100)  # an onerror would have fired by now
    assert dialogs == [] and errors == []


def _ordinary(site: LiveSite) -> str:
    return str(site.open_tickets(site.agencies[0])[-1]["tracking_id"])


def _hostile(site: LiveSite) -> str:
    return next(str(t["tracking_id"]) for t in site.h.tickets() if t["title"] == HOSTILE_TITLE)


PHONE = {"width": 360, "height": 740}


@pytest.mark.parametrize("where", ["login", "inbox", "ticket", "hostile ticket"])
def test_a_360_px_phone_screen_needs_no_sideways_scrolling(site: LiveSite, where: str) -> None:
    with site.page(None if where == "login" else "admin", viewport=PHONE) as page:
        target = {
            "login": "/masuk",
            "inbox": "/",
            "ticket": f"/tiket/{_ordinary(site)}",
            "hostile ticket": f"/tiket/{_hostile(site)}",
        }[where]
        page.goto(target)
        scroll, client = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert scroll <= client, (target, scroll, client)


# -- axe-core -------------------------------------------------------------------------------

AXE = resources.files("axe_playwright_python").joinpath("axe.min.js").read_text("utf-8")


def _axe(page: Page) -> list[str]:
    """axe-core's violations on the page: every rule axe runs by default (WCAG 2.1 A and
    AA and axe's best practices)."""
    page.evaluate(AXE)  # evaluated by the DevTools protocol: the page's CSP does not apply
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert len(result["passes"]) > 10, "axe-core checked next to nothing"
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(", ".join(n["target"]) for n in v["nodes"][:5])
        for v in result["violations"]
    ]


# page type -> (who opens it, its HTTP status)
PAGES: dict[str, tuple[str | None, int]] = {
    "login": (None, 200),
    "login with errors": (None, 422),
    "inbox": ("petugas", 200),
    "ticket": ("petugas", 200),
    "ticket with errors": ("petugas", 422),
    "password": ("petugas", 200),
    "users": ("admin", 200),
    "report": ("admin", 200),
    "public report": (None, 200),
    "404": ("petugas", 404),
    "404 without login": (None, 404),
    "403": ("petugas", 403),
}


def _reach(site: LiveSite, page: Page, kind: str) -> int:
    """Open one page type; its HTTP status."""
    url = {
        "login": "/masuk",
        "login with errors": "/masuk",
        "inbox": "/",
        "password": "/sandi",
        "users": "/pengguna",
        "report": "/laporan",
        "public report": "/publik",
        "404": "/tiket/999999999",
        "404 without login": "/tidak-ada",
    }.get(kind, f"/tiket/{_ordinary(site)}")
    r = page.goto(url)
    assert r is not None
    if kind not in ("login with errors", "ticket with errors", "403"):
        return r.status
    if kind == "ticket with errors":
        page.select_option("#status", "resolved")
        page.fill("#catatan", "catatan yang tetap ada")
    elif kind == "403":
        page.evaluate("document.querySelector('#form-jawab input[name=csrf]').value = 'x'")
    with page.expect_navigation() as nav:
        page.click("main button[type=submit]:not(.secondary)")
    if kind == "ticket with errors":
        assert page.input_value("#catatan") == "catatan yang tetap ada"
        assert "perlu balasan publik" in page.inner_text("#ringkasan-kesalahan")
    if kind != "403":
        # desk.js moves the focus to the summary, so a screen reader reads it first.
        assert page.evaluate("document.activeElement.id") == "ringkasan-kesalahan"
    assert nav.value is not None
    return nav.value.status


@pytest.mark.parametrize("kind", list(PAGES))
def test_axe_core_finds_no_violations(site: LiveSite, kind: str) -> None:
    who, status = PAGES[kind]
    with site.page(who) as page:
        assert _reach(site, page, kind) == status
        assert _axe(page) == []


@pytest.mark.parametrize("kind", ["inbox", "ticket with errors"])
def test_axe_core_finds_no_violations_on_a_phone(site: LiveSite, kind: str) -> None:
    who, status = PAGES[kind]
    with site.page(who, viewport=PHONE) as page:
        assert _reach(site, page, kind) == status
        assert _axe(page) == []
