"""The officer's desk: a Starlette app over the connector's database.

It reads and writes the built-in tracker's tables exactly as ``tickets update`` does
(``BuiltinTracker.officer_update`` and the push's ``ingest``, in one transaction); the
daemon's push sends the result to LAPOR!. The desk never calls LAPOR! and never takes
the connector's instance lock. Routes and form fields: CONTRACT.md.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import structlog
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Connection, Row
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from connector import report
from connector.desk import accounts, queries, views
from connector.desk.accounts import AccountError, Role, User
from connector.domain import Facts, LocalStatus
from connector.errors import StorageError
from connector.mapping_reload import MappingHolder
from connector.mappings import LOCAL_STATUSES, Mappings
from connector.notify import queue as notify
from connector.settings import Config
from connector.store import Store, followups
from connector.sync.push import ingest
from connector.timeutil import WITA, utcnow
from connector.tracker.base import Tracker
from connector.tracker.builtin import OfficerAction, TrackerRefusal
from connector.tracker.port import TrackerPort
from connector.tracker.rows import AttachmentMeta
from connector.tracker.sink import sink_for

log = structlog.get_logger("connector.desk")
T = TypeVar("T")
MAX_BODY = 64 * 1024
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# The public report may be embedded in an OPD's website (informasi berkala).
CSP_PUBLIC = CSP.replace("frame-ancestors 'none'", "frame-ancestors *")
# Attachments: never a document that runs anything.
CSP_FILE = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
LOGIN_CSRF_COOKIE = "desk_csrf"


# -- ASGI middleware ------------------------------------------------------------------------


class SecurityHeaders:
    """The headers every response carries (routes may set a stricter CSP first)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        public = scope["path"].startswith("/publik")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": (CSP_PUBLIC if public else CSP).encode(),
                    b"referrer-policy": b"same-origin",
                    b"x-content-type-options": b"nosniff",
                    b"cache-control": b"no-store" if not public else b"max-age=300",
                }
                if not public:
                    extra[b"x-frame-options"] = b"DENY"
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (413), declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length" and (not v.isdigit() or int(v) > self.limit):
                await _plain(send, 413, "Isian terlalu besar.")
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413)
            return message

        await self.app(scope, counted, send)


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- the app --------------------------------------------------------------------------------


@dataclass
class Desk:
    config: Config
    store: Store
    holder: MappingHolder
    tracker: TrackerPort
    clock: Callable[[], datetime] = utcnow
    env: Environment = field(init=False)
    _checked: float = 0.0
    _hash_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("connector.desk", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(
            status_words=views.STATUS_WORDS,
            lapor_words=views.LAPOR_WORDS,
            when=views.when,
            tabs=views.TABS,
        )

    @property
    def builtin(self) -> Tracker | None:
        """The tracker kept in this database (the built-in one), else None: the sink
        says which kind it is, as for ``tickets update``."""
        return sink_for(self.tracker).in_database

    def mappings(self) -> Mappings:
        # An admin's edit takes effect within seconds; a broken one keeps the last good.
        if time.monotonic() - self._checked > 5:
            self._checked = time.monotonic()
            self.holder.reload_if_changed()
        assert self.holder.current is not None
        return self.holder.current

    async def db(self, fn: Callable[[Connection], T]) -> T:
        """A writing transaction."""
        return await run_in_threadpool(self.store.run, fn)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """A reading one: never waits for the daemon's pull on SQLite."""
        return await run_in_threadpool(self.store.read, fn)

    async def hashing(self, fn: Callable[[], T]) -> T:
        """argon2 work (tens of MiB each), a few at a time: a burst of logins can neither
        exhaust memory nor starve the pages."""
        async with self._hash_slots:
            return await run_in_threadpool(fn)

    def render(
        self, request: Request, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        context.setdefault("user", request.scope.get("desk_user"))
        context.setdefault("csrf", request.scope.get("desk_csrf", ""))
        context.setdefault("external", self.builtin is None)
        html = self.env.get_template(name).render(request=request, **context)
        return HTMLResponse(html, status_code=status)


def create_app(
    config: Config,
    store: Store,
    holder: MappingHolder,
    tracker: TrackerPort,
    clock: Callable[[], datetime] = utcnow,
) -> Starlette:
    desk = Desk(config, store, holder, tracker, clock)
    h = _Handlers(desk)
    static = Path(__file__).parent / "static"
    routes = [
        Route("/masuk", h.login_form, methods=["GET"]),
        Route("/masuk", h.login, methods=["POST"]),
        Route("/keluar", h.logout, methods=["POST"]),
        Route("/sandi", h.password_form, methods=["GET"]),
        Route("/sandi", h.password, methods=["POST"]),
        Route("/", h.inbox, methods=["GET"]),
        Route("/tiket/{tracking_id}", h.ticket, methods=["GET"]),
        Route("/tiket/{tracking_id}", h.answer, methods=["POST"]),
        Route("/tiket/{tracking_id}/lampiran/{index:int}", h.attachment, methods=["GET"]),
        Route("/pengguna", h.users, methods=["GET"]),
        Route("/pengguna", h.user_add, methods=["POST"]),
        Route("/pengguna/{login}", h.user_change, methods=["POST"]),
        Route("/laporan", h.report, methods=["GET"]),
        Route("/publik", h.public, methods=["GET"]),
        Route("/publik.csv", h.public_csv, methods=["GET"]),
        Mount("/aset", StaticFiles(directory=static), name="aset"),
    ]

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, _Redirect):
            return RedirectResponse(exc.target, status_code=303)
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        if code == 500:
            log.error("desk_error", error=exc.__class__.__name__, path=request.url.path)
        return desk.render(
            request,
            "error.html",
            status=code,
            code=code,
            title=ERROR_TITLES.get(code, "Terjadi kesalahan"),
        )

    proxies = list(config.settings.web.trusted_proxies)
    # X-Forwarded-Proto and -For count only from web.trusted_proxies (uvicorn's
    # middleware): behind nginx the scheme is https, the address the officer's.
    front = [Middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)] if proxies else []
    return Starlette(
        routes=routes,
        middleware=[
            *front,
            Middleware(SecurityHeaders),
            Middleware(BodyLimit),
            Middleware(GZipMiddleware, minimum_size=500),
        ],
        exception_handlers={HTTPException: on_error, Exception: on_error},
    )


ERROR_TITLES = {
    400: "Permintaan tidak dapat dibaca",
    403: "Tidak diizinkan",
    404: "Halaman tidak ditemukan",
    405: "Cara membuka halaman ini salah",
    413: "Isian terlalu besar",
    500: "Terjadi kesalahan pada server",
}

Handler = Callable[[Request], Awaitable[Response]]


def _secure(request: Request) -> bool:
    # uvicorn's proxy-header middleware sets the scheme from X-Forwarded-Proto only for
    # web.trusted_proxies.
    return request.url.scheme == "https"


def _cookie_name(request: Request) -> str:
    return "__Host-sesi" if _secure(request) else "sesi"


def _address(request: Request) -> str:
    return request.client.host if request.client else "-"


def _login_cookie(request: Request) -> str:
    return "__Host-" + LOGIN_CSRF_COOKIE if _secure(request) else LOGIN_CSRF_COOKIE


def _local_path(target: str | None) -> str:
    """Only a path on this server: never an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


async def _form(request: Request) -> FormData:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise HTTPException(400)
    try:
        return await request.form(max_files=0, max_fields=40)
    except HTTPException:
        raise
    except Exception:
        raise HTTPException(400) from None


def _text(form: FormData, name: str, limit: int = 20000) -> str:
    value = form.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise HTTPException(400)
    # Browsers send CRLF: store the officer's line breaks as LF.
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _answer_form(form: FormData) -> tuple[views.Answer, str, str]:
    """The answer, the form's id (its one-time claim) and the page version it was drawn on."""
    a = views.Answer(
        status=_text(form, "status", 40).strip(),
        reply=_text(form, "balasan").strip(),
        note=_text(form, "catatan").strip(),
        assignee=_text(form, "petugas", 64).strip(),
        assignee_given="petugas" in form,
        assignee_before=_text(form, "petugas_asal", 64).strip(),
    )
    form_id = _text(form, "form_id", 64).strip()
    page_version = _text(form, "versi", 64).strip()
    if not form_id:
        raise HTTPException(400)
    return a, form_id, page_version


# -- the ticket page's parts -----------------------------------------------------------------

Template = tuple[str, str, str]  # local status, its words, the reply text for the agency


def _templates(m: Mappings, agency_name: str) -> list[Template]:
    return [
        (local, views.STATUS_WORDS.get(local, local), ob.text(agency_name))
        for local, ob in m.outbound.items()
    ]


def _first_answer(row: Row[Any], templates: list[Template], use: str) -> views.Answer:
    """The form as first drawn: the template asked for by ``?templat=``, if any."""
    chosen = next((t for t in templates if t[0] == use), None)
    return views.Answer(
        status=chosen[0] if chosen else "",
        reply=chosen[2] if chosen else "",
        note="",
        assignee=row.assignee or "",
        assignee_given=True,
    )


def _reporter(row: Row[Any], user: User, agencies: set[str]) -> dict[str, Any] | None:
    """Who reported it, never for an anonymous complaint; contact details only for the
    holding agency's officers."""
    if row.anonymous or not row.reporter_name:
        return None
    contact = queries.sees_contact(user, agencies)
    return {
        "name": row.reporter_name,
        "email": row.reporter_email if contact else None,
        "phone": row.reporter_phone if contact else None,
        "contact": contact,
    }


def _files(attachments: list[AttachmentMeta], anonymous: bool) -> list[dict[str, Any]]:
    # An anonymous complaint's file names may carry the reporter's name: numbered instead.
    return [
        {
            "index": i,
            "name": views.anonymous_name(i + 1, a.get("mime", ""))
            if anonymous
            else a.get("name", ""),
            "mime": a.get("mime"),
            "size": a.get("size"),
            "stored": bool(a.get("stored")),
            "error": a.get("error"),
        }
        for i, a in enumerate(attachments)
    ]


class _Handlers:
    def __init__(self, desk: Desk):
        self.d = desk

    # -- sessions ---------------------------------------------------------------------------

    async def _user(self, request: Request, *, allow_must_change: bool = False) -> User:
        """The logged-in user, or a redirect to the login page (raised)."""
        token = request.cookies.get(_cookie_name(request))
        now = self.d.clock()
        found = await self.d.read(lambda c: accounts.find_session(c, token)) if token else None
        user = None
        if found is not None and token is not None:
            user, last_seen = found
            verdict = accounts.session_verdict(user, last_seen, now)
            if verdict == "end":
                await self.d.db(lambda c: accounts.close_session(c, token))
                user = None
            elif verdict == "touch":
                await self.d.db(lambda c: accounts.touch_session(c, token, now))
        if user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _Redirect("/masuk" + (f"?lanjut={_quote(target)}" if target != "/" else ""))
        if user.must_change and not allow_must_change:
            raise _Redirect("/sandi")
        request.scope["desk_user"] = user
        assert token is not None
        request.scope["desk_csrf"] = accounts.csrf_token(token)
        return user

    def _check_csrf(self, request: Request, form: FormData) -> None:
        expected = request.scope.get("desk_csrf", "")
        given = form.get("csrf", "")
        if (
            not expected
            or not isinstance(given, str)
            or not secrets.compare_digest(given, expected)
        ):
            log.warning("desk_csrf_refused", path=request.url.path)
            raise HTTPException(403)

    async def login_form(self, request: Request) -> Response:
        return self._login_page(request, {}, "", request.query_params.get("lanjut"))

    def _login_page(
        self,
        request: Request,
        errors: dict[str, str],
        login: str,
        lanjut: str | None,
        status: int = 200,
    ) -> Response:
        name = _login_cookie(request)
        token = request.cookies.get(name) or secrets.token_urlsafe(24)
        resp = self.d.render(
            request,
            "login.html",
            status=status,
            errors=errors,
            login=login,
            csrf=token,
            lanjut=_local_path(lanjut),
        )
        # Behind HTTPS a __Host- cookie: no sibling subdomain can plant a token of its own.
        resp.set_cookie(
            name,
            token,
            httponly=True,
            samesite="lax",
            secure=_secure(request),
            path="/" if _secure(request) else "/masuk",
        )
        return resp

    def _throttled_page(
        self,
        request: Request,
        login: str,
        lanjut: str | None,
        wait: timedelta,
        template: str = "login.html",
    ) -> Response:
        minutes = max(1, int(wait.total_seconds() // 60) + 1)
        log.warning("desk_login_throttled", login=login, address=_address(request))
        message = (
            "Terlalu banyak percobaan kata sandi yang salah untuk akun ini dari alamat "
            f"Anda. Coba lagi dalam {minutes} menit, atau minta admin mengatur ulang "
            "kata sandi."
        )
        if template == "password.html":
            return self.d.render(
                request, template, status=429, errors={"lama": message}, forced=False
            )
        return self._login_page(request, {"password": message}, login, lanjut, 429)

    async def _check_password(
        self, login: str, password: str, address: str
    ) -> tuple[User | None, timedelta | None]:
        """The throttle, then argon2 outside any transaction (a write lock held across a
        verification would stall the daemon), then the outcome recorded in a short write."""
        now = self.d.clock()
        key, where = accounts.throttle_key(login, address)

        def look(conn: Connection) -> tuple[timedelta | None, User | None, str]:
            return (accounts.throttled(conn, key, where, now), *accounts.credentials(conn, key))

        wait, user, stored = await self.d.read(look)
        if wait is not None:
            return None, wait
        ok = await self.d.hashing(lambda: accounts.password_matches(stored, password))
        if not ok or user is None or user.disabled:

            def failed(conn: Connection) -> None:
                accounts.purge(conn, now)
                accounts.record_failure(conn, key, where, now)

            await self.d.db(failed)
            return None, None
        return user, None

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        cookie = request.cookies.get(_login_cookie(request), "")
        given = form.get("csrf", "")
        if not cookie or not isinstance(given, str) or not secrets.compare_digest(given, cookie):
            raise HTTPException(403)
        login = _text(form, "login", 200).strip().lower()
        password = _text(form, "password", 1000)
        lanjut = _text(form, "lanjut", 2000) or None
        address, now = _address(request), self.d.clock()
        if not login or not password:
            errors = {}
            if not login:
                errors["login"] = "Tulis nama pengguna Anda."
            if not password:
                errors["password"] = "Tulis kata sandi Anda."  # noqa: S105 - a message
            return self._login_page(request, errors, login, lanjut, 422)
        user, wait = await self._check_password(login, password, address)
        if wait is not None:
            return self._throttled_page(request, login, lanjut, wait)
        if user is None:
            log.info("desk_login_failed", login=login[:64], address=address)
            return self._login_page(
                request,
                {"password": ("Nama pengguna atau kata sandi salah, atau akun dinonaktifkan.")},
                login,
                lanjut,
                422,
            )
        key, where = accounts.throttle_key(login, address)

        def opened(conn: Connection) -> str:
            accounts.clear_failures(conn, key, where)
            accounts.audit(conn, user.login, "masuk", None, now)
            return accounts.open_session(conn, user, now)

        token = await self.d.db(opened)
        log.info("desk_login", user=user.login)
        resp = RedirectResponse(
            "/sandi" if user.must_change else _local_path(lanjut), status_code=303
        )
        resp.set_cookie(
            _cookie_name(request),
            token,
            httponly=True,
            samesite="lax",
            secure=_secure(request),
            path="/",
        )
        resp.delete_cookie(_login_cookie(request), path="/" if _secure(request) else "/masuk")
        return resp

    async def logout(self, request: Request) -> Response:
        user = await self._user(request, allow_must_change=True)
        self._check_csrf(request, await _form(request))
        token = request.cookies.get(_cookie_name(request), "")
        await self.d.db(lambda c: accounts.close_session(c, token))
        log.info("desk_logout", user=user.login)
        resp = RedirectResponse("/masuk", status_code=303)
        resp.delete_cookie(_cookie_name(request), path="/")
        return resp

    async def password_form(self, request: Request) -> Response:
        user = await self._user(request, allow_must_change=True)
        return self.d.render(request, "password.html", errors={}, forced=user.must_change)

    async def password(self, request: Request) -> Response:
        user = await self._user(request, allow_must_change=True)
        form = await _form(request)
        self._check_csrf(request, form)
        old, new, again = (_text(form, k, 1000) for k in ("lama", "baru", "ulang"))
        now = self.d.clock()
        errors: dict[str, str] = {}
        if len(new) < accounts.MIN_PASSWORD:
            errors["baru"] = f"Kata sandi baru paling sedikit {accounts.MIN_PASSWORD} karakter."
        elif new != again:
            errors["ulang"] = "Kedua kata sandi baru tidak sama."
        elif new == old:
            errors["baru"] = "Kata sandi baru harus berbeda dari yang lama."
        if errors:
            return self.d.render(
                request, "password.html", status=422, errors=errors, forced=user.must_change
            )
        # The current password is guessed no faster here than at the login page.
        checked, wait = await self._check_password(user.login, old, _address(request))
        if wait is not None:
            return self._throttled_page(request, user.login, None, wait, "password.html")
        if checked is None:
            return self.d.render(
                request,
                "password.html",
                status=422,
                errors={"lama": "Kata sandi sekarang salah."},
                forced=user.must_change,
            )
        new_hash = await self.d.hashing(lambda: accounts.hash_new(new))

        def change(conn: Connection) -> str:
            accounts.set_password(conn, user.login, new_hash, now, must_change=False)
            accounts.audit(conn, user.login, "ganti_sandi", None, now)
            return accounts.open_session(conn, user, now)

        token = await self.d.db(change)
        resp = RedirectResponse("/?sandi=1", status_code=303)
        resp.set_cookie(
            _cookie_name(request),
            token,
            httponly=True,
            samesite="lax",
            secure=_secure(request),
            path="/",
        )
        return resp

    # -- the inbox --------------------------------------------------------------------------

    async def inbox(self, request: Request) -> Response:
        user = await self._user(request)
        m, now = self.d.mappings(), self.d.clock()
        q = request.query_params
        try:
            page = int(q.get("hal", "1"))
        except ValueError:
            page = 1
        f = views.Filters(
            tab=q.get("tab", "semua"),
            status=q.get("status", ""),
            category=q.get("kategori", ""),
            kecamatan=q.get("kecamatan", ""),
            assignee=q.get("petugas", ""),
            q=q.get("cari", "")[:200],
            page=page,
        )
        if self.d.builtin is None:
            port = self.d.tracker
            rows = await self.d.read(
                lambda c: queries.external_inbox(c, user, now, m.holidays, port.issue_url)
            )
        else:
            rows = await self.d.read(lambda c: queries.inbox(c, user, now, m.holidays))
        # The exact tracking id of a ticket outside the open list (closed, say) goes
        # straight to its page, which answers 404 to whoever may not see it.
        wanted = f.q.strip().upper()
        if (
            wanted
            and all(r.tracking_id != wanted for r in rows)
            and " " not in wanted
            and len(wanted) <= 32
            and self.d.builtin is not None
        ):
            found = await self.d.read(lambda c: queries.find_ticket(c, user, wanted))
            if found is not None:
                return RedirectResponse(f"/tiket/{_quote(wanted)}", status_code=303)
        shown = views.apply_filters(rows, f, user.login)
        page_rows, pages = views.page_of(shown, f.page)
        agencies = {a.code: a.name for a in m.agencies}
        officers = sorted({r.assignee for r in rows if r.assignee})
        return self.d.render(
            request,
            "inbox.html",
            rows=page_rows,
            total=len(shown),
            pages=pages,
            page=min(max(f.page, 1), pages),
            f=f,
            counts=views.tab_counts(rows, user.login),
            categories=sorted({r.category for r in rows if r.category}),
            kecamatan=sorted({r.kecamatan for r in rows if r.kecamatan}),
            officers=officers,
            agencies=agencies,
            statuses=queries.OPEN,
            query=_query_without(q, "hal"),
            notice=("Kata sandi Anda sudah diganti." if q.get("sandi") else ""),
        )

    # -- one complaint ----------------------------------------------------------------------

    async def _page(self, request: Request, user: User) -> queries.TicketPage:
        tid = request.path_params["tracking_id"]
        if self.d.builtin is None:
            raise HTTPException(404)
        page = await self.d.read(lambda c: queries.find_ticket(c, user, tid))
        if page is None:
            raise HTTPException(404)  # never tells whether it exists
        return page

    async def ticket(self, request: Request) -> Response:
        user = await self._user(request)
        page = await self._page(request, user)
        notice = {
            "1": "Jawaban tersimpan. Konektor mengirimnya ke LAPOR! dalam satu menit.",
            "2": "Jawaban ini sudah tersimpan sebelumnya: tidak dicatat dua kali.",
        }.get(request.query_params.get("tersimpan", ""), "")
        return await self._ticket_page(request, user, page, {}, None, notice)

    async def _ticket_page(
        self,
        request: Request,
        user: User,
        page: queries.TicketPage,
        errors: dict[str, str],
        answer: views.Answer | None,
        notice: str = "",
        status: int = 200,
    ) -> Response:
        m, now = self.d.mappings(), self.d.clock()
        row = page.row
        if row.confidential:  # every showing of a rahasia complaint, a refused answer too
            await self._audit_confidential(user, row.tracking_id, now)
        agency = m.agency(row.agency)
        agency_name = agency.name if agency else row.agency
        officers = await self._officers(row.agency, row.assignee)
        templates = _templates(m, agency_name)
        if answer is None:
            answer = _first_answer(row, templates, request.query_params.get("templat", ""))
        due = views.due_state(page.facts, row.status == LocalStatus.CLOSED, now, m.holidays)
        read_only = row.lapor_status in views.LAPOR_FINAL
        return self.d.render(
            request,
            "ticket.html",
            status=status,
            t=row,
            facts=page.facts,
            due=due,
            due_sentence=views.due_sentence(due),
            timeline=page.timeline,
            reporter=_reporter(row, user, page.agencies),
            files=_files(page.attachments, bool(row.anonymous)),
            location=queries.location(row.location),
            agency_name=agency_name,
            errors=errors,
            a=answer,
            templates=templates,
            officers=officers,
            statuses=LOCAL_STATUSES,
            can_act=queries.may_act(user, page.agencies) and not read_only,
            read_only=read_only,
            version=page.version,
            form_id=secrets.token_urlsafe(18),
            assignee_before=row.assignee or "",
            notice=notice,
            max_reply=views.MAX_REPLY,
            download=self.d.config.settings.attachments.download,
        )

    async def _audit_confidential(self, user: User, tracking_id: str, now: datetime) -> None:
        await self.d.db(lambda c: accounts.audit(c, user.login, "buka_rahasia", tracking_id, now))
        log.info("desk_open_confidential", user=user.login, tracking_id=tracking_id)

    async def _officers(self, agency: str, assignee: str | None) -> list[User]:
        """Who the ticket may be assigned to, and its assignee whoever that is now."""
        officers = await self.d.read(lambda c: accounts.officers_of(c, agency))
        if assignee and all(o.login != assignee for o in officers):
            # Disabled since (or moved): still shown as the assignee, never dropped silently.
            gone = await self.d.read(lambda c: accounts.get_user(c, assignee))
            if gone is not None:
                officers = [*officers, gone]
        return officers

    async def answer(self, request: Request) -> Response:
        user = await self._user(request)
        form = await _form(request)
        self._check_csrf(request, form)
        page = await self._page(request, user)
        if not queries.may_act(user, page.agencies):
            raise HTTPException(403)
        row = page.row
        a, form_id, page_version = _answer_form(form)
        m, now = self.d.mappings(), self.d.clock()
        tracker, desk = self.d.builtin, self.d.tracker.desk()
        assert tracker is not None and desk is not None
        officer_logins = [
            o.login for o in await self.d.read(lambda c: accounts.officers_of(c, row.agency))
        ]

        def tx(conn: Connection) -> tuple[str, dict[str, str]]:
            if queries.form_claimed(conn, form_id):
                return "duplicate", {}
            current = queries.ticket_state(conn, row.id)
            problems = views.check_answer(
                a, current, page_version, m.outbound.get(a.status), LOCAL_STATUSES, officer_logins
            )
            if problems:
                return "refused", problems
            queries.claim_form(conn, form_id, user, row.id, now)
            status = a.status if a.status and a.status != current.status else None
            if status or a.reply or a.note:
                action = OfficerAction(status, a.reply or None, a.note or None, user.name)
                change = desk.officer_update(conn, str(row.id), action, now)
                if change is not None:
                    # The outbox entry in the same transaction, as `tickets update` does.
                    ingest(conn, tracker, m, now)
            if a.reassigns and (a.assignee or None) != current.assignee:
                queries.assign(conn, row.id, a.assignee or None, now)
                notify.assigned(conn, self.d.config.settings.notify, row.id, a.assignee, user, now)
                accounts.audit(
                    conn, user.login, "tugaskan", row.tracking_id, now, a.assignee or "-"
                )
            done = [
                k for k, v in (("status", status), ("balasan", a.reply), ("catatan", a.note)) if v
            ]
            accounts.audit(conn, user.login, "jawab", row.tracking_id, now, ",".join(done) or None)
            return "recorded", {}

        try:
            outcome, problems = await self.d.db(tx)
        except TrackerRefusal as exc:
            outcome, problems = "refused", {"balasan": str(exc)}
        except StorageError:
            # A twin of this form committed first (the primary key refused ours).
            if not await self.d.db(lambda c: queries.form_claimed(c, form_id)):
                raise
            outcome, problems = "duplicate", {}
        if outcome == "refused":
            fresh = await self._page(request, user)
            log.info(
                "desk_answer_refused",
                user=user.login,
                tracking_id=row.tracking_id,
                fields=sorted(problems),
            )
            return await self._ticket_page(request, user, fresh, problems, a, status=422)
        log.info("desk_answer", user=user.login, tracking_id=row.tracking_id, outcome=outcome)
        flag = "1" if outcome == "recorded" else "2"
        return RedirectResponse(
            f"/tiket/{_quote(row.tracking_id)}?tersimpan={flag}", status_code=303
        )

    async def attachment(self, request: Request) -> Response:
        user = await self._user(request)
        page = await self._page(request, user)
        index = request.path_params["index"]
        if not 0 <= index < len(page.attachments):
            raise HTTPException(404)
        meta = page.attachments[index]
        allowed = self.d.config.settings.attachments.allowed_types
        stored = meta.get("stored")
        root = self.d.config.attachments_dir.resolve()
        if not stored or meta.get("mime") not in allowed:
            raise HTTPException(404)
        path = Path(stored)
        path = (path if path.is_absolute() else self.d.config.base_dir / path).resolve()
        if root not in path.parents or not path.is_file():
            raise HTTPException(404)
        name = (
            views.anonymous_name(index + 1, meta["mime"])
            if page.row.anonymous
            else meta.get("name") or f"lampiran-{index + 1}"
        )
        inline = meta["mime"].startswith("image/") and request.query_params.get("lihat") == "1"
        now = self.d.clock()
        await self.d.db(
            lambda c: accounts.audit(
                c, user.login, "unduh_lampiran", page.row.tracking_id, now, str(index)
            )
        )
        return FileResponse(
            path,
            media_type=meta["mime"],
            content_disposition_type="inline" if inline else "attachment",
            filename=name,
            headers={"content-security-policy": CSP_FILE},
        )

    # -- accounts (admins) ------------------------------------------------------------------

    async def _admin(self, request: Request) -> User:
        user = await self._user(request)
        if user.role != Role.ADMIN:
            raise HTTPException(404)
        return user

    async def users(self, request: Request) -> Response:
        await self._admin(request)
        return await self._users_page(request, {}, {})

    async def _users_page(
        self,
        request: Request,
        errors: dict[str, str],
        values: dict[str, Any],
        status: int = 200,
        notice: str = "",
    ) -> Response:
        found = await self.d.read(accounts.list_users)
        m = self.d.mappings()
        return self.d.render(
            request,
            "users.html",
            status=status,
            users=found,
            errors=errors,
            v=values,
            agencies=[(a.code, a.name) for a in m.agencies],
            roles=list(Role),
            notice=notice or _USER_NOTICES.get(request.query_params.get("ok", ""), ""),
        )

    async def user_add(self, request: Request) -> Response:
        admin = await self._admin(request)
        form = await _form(request)
        self._check_csrf(request, form)
        login = _text(form, "login", 100).strip().lower()
        name = _text(form, "nama", 300).strip()
        role_text = _text(form, "peran", 20).strip()
        chosen = [v for v in form.getlist("opd") if isinstance(v, str)]
        email = _text(form, "email", 300).strip() or None
        values: dict[str, Any] = {
            "login": login,
            "name": name,
            "role": role_text,
            "agencies": chosen,
            "email": email,
        }
        password = _text(form, "sandi", 1000)
        known = {a.code for a in self.d.mappings().agencies}
        now = self.d.clock()

        try:
            role = accounts.validate(login, name, role_text, chosen, email, known)
            new_hash = await self.d.hashing(lambda: accounts.hash_new(password))

            def tx(conn: Connection) -> None:
                accounts.add_user(
                    conn,
                    login,
                    name,
                    role,
                    chosen if role != Role.ADMIN else [],
                    email,
                    new_hash,
                    now,
                    must_change=True,
                )
                accounts.audit(conn, admin.login, "tambah_pengguna", None, now, login)

            await self.d.db(tx)
        except AccountError as exc:
            return await self._users_page(
                request, {"tambah": _indonesian(str(exc))}, values, status=422
            )
        log.info("desk_user_added", user=admin.login, login=values["login"])
        return RedirectResponse("/pengguna?ok=tambah", status_code=303)

    async def user_change(self, request: Request) -> Response:
        admin = await self._admin(request)
        form = await _form(request)
        self._check_csrf(request, form)
        login = request.path_params["login"]
        action = _text(form, "aksi", 20)
        now = self.d.clock()
        password = _text(form, "sandi", 1000)
        new_hash = ""
        if action == "sandi":
            try:
                new_hash = await self.d.hashing(lambda: accounts.hash_new(password))
            except AccountError as exc:
                return await self._users_page(
                    request, {login: _indonesian(str(exc))}, {}, status=422
                )

        def tx(conn: Connection) -> None:
            if action == "nonaktifkan":
                if login == admin.login:
                    raise AccountError("Anda tidak dapat menonaktifkan akun Anda sendiri.")
                accounts.set_disabled(conn, login, True, now)
            elif action == "aktifkan":
                accounts.set_disabled(conn, login, False, now)
            elif action == "sandi":
                accounts.set_password(conn, login, new_hash, now, must_change=True)
            else:
                raise HTTPException(400)
            accounts.audit(conn, admin.login, f"pengguna_{action}", None, now, login)

        try:
            await self.d.db(tx)
        except AccountError as exc:
            return await self._users_page(request, {login: _indonesian(str(exc))}, {}, status=422)
        log.info("desk_user_changed", user=admin.login, login=login, action=action)
        return RedirectResponse(f"/pengguna?ok={action}", status_code=303)

    # -- reports ----------------------------------------------------------------------------

    def _periods(self) -> list[tuple[str, str, date, date]]:
        now = self.d.clock()
        today = now.astimezone(WITA).date()
        first, last = report.current_month(now)
        prev_last = first - timedelta(days=1)
        prev_first = prev_last.replace(day=1)
        return [
            ("bulan-ini", "Bulan ini", first, last),
            ("bulan-lalu", "Bulan lalu", prev_first, prev_last),
            ("tahun-ini", "Tahun ini", date(today.year, 1, 1), date(today.year, 12, 31)),
            ("tahun-lalu", "Tahun lalu", date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)),
        ]

    async def _reports(self) -> list[tuple[str, str, report.Report]]:
        m, now = self.d.mappings(), self.d.clock()
        out = []
        for key, label, start_d, end_d in self._periods():
            start, end = report.bounds(start_d, end_d)
            facts = await self.d.read(_received(start, end))
            out.append((key, label, report.build(facts, m, start_d, end_d, now)))
        return out

    async def report(self, request: Request) -> Response:
        await self._user(request)
        return self.d.render(
            request,
            "report.html",
            reports=await self._reports(),
            chart=_chart,
            tanggal=report.tanggal,
            headings=report.HEADINGS,
            columns=report.COLUMNS,
            public=False,
        )

    async def public(self, request: Request) -> Response:
        return self.d.render(
            request,
            "report.html",
            reports=await self._reports(),
            chart=_chart,
            tanggal=report.tanggal,
            headings=report.HEADINGS,
            columns=report.COLUMNS,
            public=True,
            user=None,
        )

    async def public_csv(self, request: Request) -> Response:
        wanted = request.query_params.get("periode", "bulan-ini")
        for key, _label, rep in await self._reports():
            if key == wanted:
                return Response(
                    report.as_csv(rep),
                    media_type="text/csv; charset=utf-8",
                    headers={
                        "content-disposition": f'attachment; filename="tindak-lanjut-{key}.csv"'
                    },
                )
        raise HTTPException(404)


_USER_NOTICES = {
    "tambah": "Pengguna ditambahkan. Ia harus mengganti kata sandinya saat pertama masuk.",
    "nonaktifkan": "Akun dinonaktifkan; semua sesinya berakhir.",
    "aktifkan": "Akun diaktifkan kembali.",
    "sandi": "Kata sandi diatur ulang; pengguna harus menggantinya saat masuk.",
}

_ACCOUNT_WORDS = (
    ("exists already", "sudah ada"),
    ("no user with login", "tidak ada pengguna dengan nama"),
    ("the password has", "kata sandi hanya"),
    ("characters; at least", "karakter; paling sedikit"),
    ("are needed", "karakter diperlukan"),
    ("give the agency with --agency CODE", "pilih OPD-nya"),
    ("unknown agency", "OPD tidak dikenal"),
    ("give the person's name (at most 200 characters)", "tulis nama orangnya"),
    ("not an e-mail address", "bukan alamat e-mail"),
    ("unknown role", "peran tidak dikenal"),
)


def _indonesian(message: str) -> str:
    """The account checks' messages (shared with the CLI, in English) for the browser."""
    for en, idn in _ACCOUNT_WORDS:
        message = message.replace(en, idn)
    return (
        message.replace("--role ", "peran ")
        .replace("--agency: ", "OPD: ")
        .replace("--name: ", "nama: ")
        .replace("--email: ", "e-mail: ")
        .replace("login ", "nama pengguna ")
    )


def _received(start: datetime, end: datetime) -> Callable[[Connection], list[Facts]]:
    return lambda conn: followups.received_between(conn, start, end)


def _chart(rep: report.Report) -> str:
    # The report's own SVG: agency codes from the mapping, escaped there.
    from markupsafe import Markup

    return Markup(report._chart([r for r in rep.rows if r.agency != report.TOTAL]))  # noqa: S704


class _Redirect(HTTPException):
    """To the login or password page, from deep inside a handler."""

    def __init__(self, target: str):
        super().__init__(303)
        self.target = target


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="/")


def _query_without(params: Any, key: str) -> str:
    from urllib.parse import urlencode

    return urlencode([(k, v) for k, v in params.multi_items() if k != key])
