"""Hostile LAPOR! text as the real Redmine renders it (issue 23 item 7).

The tracker writes a complaint (text, title, category, location, reporter) and a reporter's
follow-up full of Textile, Markdown, Redmine links and macros, and HTML; the issue page is
then fetched as HTML (the API key works for ``/issues/N``) under Textile, Redmine's
default, and CommonMark. No link or image to the hostile host, no script, no macro output,
no heading, no Redmine link or mention: and every text reads back as typed (less the
zero-width spaces that keep a ``<`` or ``&`` from starting a tag or an entity).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html.parser import HTMLParser

import httpx
import pytest

from connector.tracker.base import Direction, NewMessage
from connector.tracker.port import CREATE, MESSAGE, message_payload, ticket_payload
from tests.conftest import needs_redmine, redmine_clients
from tests.test_tracker_contract import RedmineHarness, _tid, intent, ticket

pytestmark = [pytest.mark.anyio, needs_redmine]
ZWSP = "\u200b"
EVIL = "evil.example"
TIMEOUT_S = 60.0  # WEBrick, one request at a time, on a busy machine
URL_ATTRS = {"href", "src", "srcset", "action", "formaction", "data", "poster", "background"}


def hostile(ref: str) -> list[str]:
    """One markup trick per line; ``ref`` is an issue a ``#N`` would link to."""
    return [
        'Textile: "klik di sini":http://evil.example/a !http://evil.example/i.png!',
        "Markdown: [tautan](http://evil.example/m) ![gambar](http://evil.example/n.png)"
        " <http://evil.example/o> http://evil.example/p",
        f"Redmine: [[Wiki]] [[pengaduan:Rahasia]] #{ref} @petugas r1 attachment:x.png",
        "Makro: {{hello_world}} {{include(Rahasia)}} {{child_pages}} {{toc}}",
        '<script>alert("lapor-xss")</script> <img src="http://evil.example/j.png" '
        'onerror="alert(1)"> <a href="http://evil.example/q">q</a>',
        "</pre><b>tebal</b> <notextile>x</notextile> <code>y</code> <PRE>z</PRE>",
        "RT 05 & RW 02, harga > 50% &amp; &lt;naik&gt; &#33;",
        "h1. Judul palsu",
    ]


class Page(HTMLParser):
    """What a browser makes of the page: URL attributes, scripts, headings, pre blocks,
    the classes of links, and the text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.handlers: list[str] = []
        self.link_classes: list[str] = []
        self.scripts: list[str] = []
        self.headings: list[str] = []
        self.pres: list[str] = []
        self.text: list[str] = []
        self._open: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in URL_ATTRS:
                self.urls.append(value or "")
            elif name.startswith("on"):
                self.handlers.append(value or "")
        if tag == "a":
            self.link_classes.append(dict(attrs).get("class") or "")
        if tag in ("script", "pre", "h1", "h2", "h3", "h4", "h5", "h6"):
            self._open.append(tag)
            {"script": self.scripts, "pre": self.pres}.get(tag, self.headings).append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._open:
            tag = self._open[-1]
            where = {"script": self.scripts, "pre": self.pres}.get(tag, self.headings)
            where[-1] += data

    def reads(self) -> str:
        return "".join(self.text).replace(ZWSP, "")


@contextlib.asynccontextmanager
async def admin_session() -> AsyncIterator[httpx.AsyncClient]:
    """A browser session of an admin of our own (the settings page has no API)."""
    url, key = os.environ["LAPOR_TEST_REDMINE_URL"], os.environ["LAPOR_TEST_REDMINE_KEY"]
    login, password = "lapor-render", secrets.token_hex(12)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-Redmine-API-Key": key}, timeout=TIMEOUT_S
    ) as api:
        found = (await api.get("/users.json", params={"name": login})).json()["users"]
        user = {
            "login": login,
            "firstname": "Render",
            "lastname": "CI",
            "admin": True,
            "mail": f"{login}@example.invalid",
            "password": password,
        }
        if found:
            r = await api.put(f"/users/{found[0]['id']}.json", json={"user": user})
        else:
            r = await api.post("/users.json", json={"user": user})
        r.raise_for_status()
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as web:
        await _form(web, "/login", "/login", {"username": login, "password": password})
        yield web


async def _form(web: httpx.AsyncClient, page: str, action: str, data: dict[str, str]) -> None:
    html_ = (await web.get(page)).text
    token = re.search(r'name="authenticity_token" value="([^"]+)"', html_)
    assert token is not None, page
    r = await web.post(action, data={"authenticity_token": token.group(1), **data})
    assert r.status_code == 302 and "/login" not in r.headers.get("location", ""), (
        action,
        r.status_code,
    )


async def issue_page(url: str) -> httpx.Response:
    """The issue page as HTML; again after a 5xx (Redmine's SQLite is busy now and then)."""
    async with httpx.AsyncClient(
        timeout=TIMEOUT_S, headers={"X-Redmine-API-Key": os.environ["LAPOR_TEST_REDMINE_KEY"]}
    ) as web:
        for _ in range(3):
            r = await web.get(url)
            if r.status_code < 500:
                break
    r.raise_for_status()
    return r


@pytest.fixture(params=["textile", "common_mark"])
async def formatting(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async with admin_session() as web:

        async def use(name: str) -> None:
            await _form(
                web,
                "/settings?tab=general",
                "/settings/edit?tab=general",
                {"settings[text_formatting]": name},
            )

        await use(request.param)
        try:
            yield request.param
        finally:
            await use("textile")  # Redmine's default, what the other tests expect


async def test_hostile_text_renders_inert_and_reads_as_typed(formatting: str) -> None:
    async with redmine_clients() as (connector, officer):
        h = RedmineHarness(connector, officer)
        other = ticket(_tid())
        other_ref = await h.tracker.apply(intent(other.tracking_id, CREATE, ticket_payload(other)))
        lines = hostile(other_ref)
        body, one_line = "\n".join(lines), " ".join(lines)
        t = ticket(
            _tid(),
            title=one_line[:250],
            body=body,
            category=one_line,
            location={"village": one_line},
            reporter={"name": one_line, "email": "x@evil.example", "phone": "0812"},
        )
        ref = await h.tracker.apply(intent(t.tracking_id, CREATE, ticket_payload(t)))
        reply = NewMessage(Direction.IN, one_line, body, datetime.now(UTC), "9001")
        await h.tracker.apply(intent(t.tracking_id, MESSAGE, message_payload(reply), 1, ref))
        r = await issue_page(h.tracker.issue_url(ref) or "")
    page = Page(r.text)
    assert "Logged in as" in page.reads()  # the page as a signed-in admin sees it

    # Inert: nothing of ours became a link, an image, a script, a macro or a heading.
    assert [u for u in page.urls if EVIL in u] == []
    assert [x for x in page.handlers if "alert(1)" in x] == []
    assert [s for s in page.scripts if "lapor-xss" in s] == []
    rendered = {"issue", "user-mention", "wiki-page", "external"}  # Redmine's link classes
    assert [c for c in page.link_classes if rendered & set(c.split())] == [], formatting
    assert [x for x in page.headings if "Judul palsu" in x] == []
    text = page.reads()
    for output in ("Hello world!", "Error executing", "Page not found"):
        assert output not in text, (output, formatting)
    assert "collapsible" not in r.text and 'class="toc' not in r.text

    # As typed: the complaint text and the follow-up in their blocks, the facts on lines.
    typed = [p.replace(ZWSP, "").strip("\n") for p in page.pres]
    assert typed.count(body) == 2, (formatting, typed)  # the description and the note
    for fact in (
        f"Kategori: {one_line}",
        f"Lokasi: {one_line}",
        f"Pelapor: {one_line} / x@evil.example / 0812",
        f"{one_line} (",
    ):
        assert fact in text, (fact, formatting)
    subject = " ".join(one_line[:250].split())
    assert any(x.strip() == subject for x in page.headings), formatting
