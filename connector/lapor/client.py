"""The SP4N-LAPOR! API client: tokens, retries, request budget, feed paging.

The client never opens sockets itself: an ``httpx`` transport is passed in
(the sandbox app through ``httpx.ASGITransport`` in tests, the network in
production). Clock, wall time, sleep and randomness are injectable so tests
never wait for a real Retry-After.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from connector import __version__
from connector.errors import (
    MALFORMED,
    RECORD_ERRORS,
    AnswerUnreadable,
    AttachmentRefused,
    AttemptFailed,
    AuthRefused,
    CursorExpired,
    LaporUnavailable,
    PageCut,
    Rejected,
    Rules,
    SkipRecord,
    TooLarge,
    UnsupportedEncoding,
    mapped,
)
from connector.lapor import models as m
from connector.lapor import reasons, wire
from connector.lapor.budget import RequestBudget
from connector.lapor.decoding import ACCEPT_ENCODING, BoundedDecoder
from connector.lapor.paging import NO_PROGRESS_PAGES, PageSizer, Progress
from connector.lapor.policy import (
    RETRY_STATUSES,
    Outcome,
    backoff,
    classify,
    parse_retry_after,
)
from connector.lapor.transport import default_transport
from connector.settings import Config, Credentials
from connector.timeutil import utcnow

API = "/api/v3"
W = TypeVar("W", bound=BaseModel)
MAX_ATTEMPTS = 12
MAX_CURSOR_RESTARTS = 5
log = structlog.get_logger("connector.lapor")


@dataclass
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        # Lenient where leniency keeps the meaning: raw control characters inside strings
        # (strict=False) and bytes that are not UTF-8 (replaced by U+FFFD). A cut-off or
        # otherwise broken document still raises ValueError.
        try:
            return json.loads(self.body, strict=False)
        except UnicodeDecodeError:
            return json.loads(self.body.decode("utf-8", "replace"), strict=False)


def _error_parts(answer: _Answer) -> tuple[str | None, list[str]]:
    with suppress(*MALFORMED):  # an error answer that names nothing usable
        err = answer.json().get("error") or {}
        kode = err.get("kode")
        rincian = err.get("rincian")
        fields = sorted(str(k) for k in rincian) if isinstance(rincian, dict) else []
        return (kode if isinstance(kode, str) else None), fields
    return None, []


class _Tokens:
    """One bearer token shared by all concurrent callers; one refresh at a time."""

    def __init__(self, client: LaporClient, credentials: Credentials, margin_s: float):
        self._client = client
        self._creds = credentials
        self._margin = margin_s
        self._token: str | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0

    async def get(self) -> str:
        async with self._lock:
            if self._token is None or self._client.clock() >= self._valid_until:
                await self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        # Only the caller holding the stale token drops it; others may already hold a new one.
        if self._token == token:
            self._token = None

    async def _fetch(self) -> None:
        answer = await self._client.call(
            "POST",
            f"{API}/auth/token",
            json={"client_id": self._creds.client_id, "client_secret": self._creds.client_secret},
            auth=False,
        )
        with mapped({MALFORMED: lambda _: LaporUnavailable("LAPOR! token answer malformed")}):
            token = wire.Token.model_validate(answer.json().get("data"))
        self.fetched += 1
        self._token = token.access_token
        margin = min(self._margin, token.expires_in / 2)
        self._valid_until = self._client.clock() + token.expires_in - margin


class LaporClient:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        call_deadline_s: float = 120.0,
        max_retry_after_s: float = 300.0,
        requests_per_minute: int = 60,
        token_refresh_margin_s: float = 60.0,
        max_response_bytes: int = 8 * 1024 * 1024,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ):
        self.base_url = httpx.URL(base_url)
        self.clock = clock
        self._wall = wall
        self._sleep = sleep
        self._rng = rng
        self._deadline_s = call_deadline_s
        self._max_retry_after = max_retry_after_s
        self._max_bytes = max_response_bytes
        self._backoff = (backoff_base_s, backoff_cap_s)
        if transport is None:
            transport = default_transport(httpx.URL(base_url), max_connections=16)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            headers={
                "User-Agent": f"mahulu-lapor-connector/{__version__}",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )
        self.budget = RequestBudget(requests_per_minute, clock, sleep)
        self.pages = PageSizer()
        self.tokens = _Tokens(self, credentials, token_refresh_margin_s)
        self.requests: Counter[str] = Counter()
        self.retries = 0
        # Optional: told (endpoint, HTTP code or error class, seconds) after every request.
        self.observer: Callable[[str, str, float], None] | None = None

    @classmethod
    def from_config(
        cls,
        config: Config,
        credentials: Credentials,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        base_url: str | None = None,
        **overrides: Any,
    ) -> LaporClient:
        s = config.settings.lapor
        return cls(
            base_url or s.base_url,
            credentials,
            transport=transport,
            timeout_s=s.timeout_s,
            call_deadline_s=s.call_deadline_s,
            max_retry_after_s=s.max_retry_after_s,
            token_refresh_margin_s=s.token_refresh_margin_s,
            max_response_bytes=s.max_response_bytes,
            **{"requests_per_minute": s.requests_per_minute, **overrides},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> LaporClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the request machinery -------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, AttemptFailed) and exc.retry_after is not None:
            return exc.retry_after
        base, cap = self._backoff
        return backoff(state.attempt_number, base, cap, self._rng())

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        guard: Callable[[], Awaitable[None]] | None = None,
        cut_ends: bool = False,
    ) -> _Answer:
        """One logical call: retried on transient failures within the call's deadline.

        ``guard`` runs just before every request is sent; whatever it raises ends the call
        at once (the push re-checks the instance lease and the key's lifetime per POST).
        ``cut_ends``: an answer that breaks off mid-way raises ``PageCut`` at once
        instead of being asked for again as it was (the feed then asks for less).
        """
        deadline = self.clock() + self._deadline_s

        def stop(state: RetryCallState) -> bool:
            upcoming = state.upcoming_sleep or 0.0
            exc = state.outcome.exception() if state.outcome else None
            if cut_ends and isinstance(exc, AttemptFailed) and exc.cut:
                return True
            return state.attempt_number >= MAX_ATTEMPTS or self.clock() + upcoming > deadline

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(AttemptFailed),
            stop=stop,
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.retries += 1
                    return await self._attempt(method, path, params, json, headers, auth, guard)
        except AttemptFailed as exc:
            if cut_ends and exc.cut:
                raise PageCut(exc.what) from None
            raise LaporUnavailable(
                f"LAPOR! unavailable: {exc.what} (gave up after the call's deadline)",
                status=exc.status,
                kode=exc.kode,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        headers: dict[str, str] | None,
        auth: bool,
        guard: Callable[[], Awaitable[None]] | None = None,
    ) -> _Answer:
        refreshed = False
        while True:
            hdrs = dict(headers or {})
            token = None
            if auth:
                token = await self.tokens.get()
                hdrs["Authorization"] = f"Bearer {token}"
            await self.budget.acquire()
            if guard is not None:  # last thing before the request: token and budget may wait
                await guard()
            answer = await self._send(method, path, params, body, hdrs)
            kode, fields = _error_parts(answer) if answer.status >= 400 else (None, [])
            outcome = classify(answer.status, kode)
            if outcome is Outcome.OK:
                return answer
            if outcome is Outcome.REFRESH_TOKEN and token is not None and not refreshed:
                self.tokens.invalidate(token)
                refreshed = True
                continue
            if outcome is Outcome.REFRESH_TOKEN:
                raise AttemptFailed(f"token refused twice ({kode})", answer.status, kode)
            if outcome is Outcome.FATAL_AUTH:
                raise AuthRefused(
                    "LAPOR! refused the client credentials (kredensial_tidak_valid): check "
                    "LAPOR_CLIENT_ID / LAPOR_CLIENT_SECRET"
                )
            if outcome is Outcome.CURSOR_EXPIRED:
                raise CursorExpired("feed cursor expired")
            if outcome is Outcome.RETRY:
                retry_after = parse_retry_after(
                    answer.headers.get("Retry-After"), self._wall(), self._max_retry_after
                )
                raise AttemptFailed(
                    f"HTTP {answer.status} {kode or ''}".strip(), answer.status, kode, retry_after
                )
            raise Rejected(answer.status, kode or f"http_{answer.status}", fields)

    async def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        headers: dict[str, str],
    ) -> _Answer:
        kind = _kind(method, path)
        self.requests[kind] += 1
        t0, code = time.monotonic(), "error"
        try:
            # The read timeout restarts with every byte: a server that trickles an answer
            # would hold this attempt (and the pull's commit order) forever without a cap.
            async with (
                asyncio.timeout(self._deadline_s),
                self._http.stream(method, path, params=params, json=body, headers=headers) as resp,
            ):
                code = str(resp.status_code)
                declared = resp.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self._max_bytes:
                    raise Rejected(resp.status_code, "respons_terlalu_besar")
                chunks = [c async for c in _bounded(resp, self._max_bytes)]
                return _Answer(resp.status_code, resp.headers, b"".join(chunks))
        except TimeoutError:
            code = "ReadTimeout"
            raise AttemptFailed(
                "ReadTimeout (the answer took longer than the call's deadline)"
            ) from None
        except httpx.RequestError as exc:  # transport errors, and a body that won't decode
            code = exc.__class__.__name__
            raise AttemptFailed(
                exc.__class__.__name__,
                cut=isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError),
            ) from None
        finally:
            if self.observer is not None:
                self.observer(kind, code, time.monotonic() - t0)

    async def _data(self, method: str, path: str, **kw: Any) -> tuple[Any, dict[str, Any]]:
        return _envelope(await self.call(method, path, **kw), path)

    # -- the API ------------------------------------------------------------------------

    async def ping(self) -> datetime:
        data, _ = await self._data("GET", f"{API}/ping", auth=False)
        with mapped({MALFORMED: lambda _: LaporUnavailable("LAPOR! ping answer malformed")}):
            return wire.parse_wib(data["waktu_server"])

    async def feed(
        self, since: Callable[[], datetime | None], page_size: int = 100
    ) -> AsyncIterator[m.Page]:
        """Pages of the feed from ``since()``.

        On cursor expiry (410) the feed restarts from ``since()`` again: the caller's
        committed watermark, never this client's clock. A page that breaks off is asked
        for again at once, smaller (``PageSizer``), from the last ``diperbarui`` this pass
        reached (``diperbarui_sejak`` is inclusive: nothing is skipped). A pass that stops
        progressing (``Progress``) ends with ``LaporUnavailable``.
        """
        cursor: str | None = None
        seen: set[str] = set()
        restarts = 0
        start: datetime | None = None
        reached: datetime | None = None  # the newest diperbarui of this pass so far
        progress = Progress()
        while True:
            if cursor is None:
                start = since()
                begin = (
                    reached if reached is not None and (start is None or reached > start) else start
                )
                params: dict[str, Any] = {"batas": self.pages.size(page_size)}
                if begin is not None:
                    params["diperbarui_sejak"] = wire.since_param(begin)
            else:
                params = {"kursor": cursor}
            shrinkable = self.pages.can_shrink(page_size)
            try:
                answer = await self.call(
                    "GET", f"{API}/laporan", params=params, cut_ends=shrinkable
                )
                try:
                    data, meta = _envelope(answer, f"{API}/laporan")
                except LaporUnavailable:
                    if shrinkable and _cut_short(answer):  # whole JSON never arrived
                        raise PageCut("cut short") from None
                    raise
            except CursorExpired:
                # Only restarts without progress count: a feed that keeps expiring cursors
                # while the caller's watermark moves still gets read to the end.
                restarts = restarts + 1 if since() == start else 1
                if restarts > MAX_CURSOR_RESTARTS:
                    raise LaporUnavailable("feed cursor kept expiring") from None
                cursor, seen, reached, progress = None, set(), None, Progress()
                continue
            except PageCut:
                # Logged once when it first shrinks (a warning), then each step (info).
                first = self.pages.cut(page_size)
                (log.warning if first else log.info)(
                    "feed_page_size_reduced", batas=self.pages.size(page_size), configured=page_size
                )
                cursor, seen = None, set()
                continue
            # Most pages hold nothing to clean: skip copying every summary then.
            page = _parse_page(data, meta, wire.needs_cleaning(answer.body))
            if self.pages.good(page_size):
                log.info("feed_page_size_restored", batas=page_size)
            if not progress.page((i.tracking_id, i.updated_at) for i in page.items):
                raise LaporUnavailable(
                    f"LAPOR! feed made no progress over {NO_PROGRESS_PAGES} pages (no new "
                    "complaint, nothing newer); stopping this pass"
                )
            stamps = [i.updated_at for i in page.items if i.updated_at is not None]
            if stamps:
                reached = max([*stamps, *([reached] if reached else [])])
            yield page
            if page.next_cursor is None:
                return
            if page.next_cursor in seen:
                raise LaporUnavailable("LAPOR! feed repeated a cursor; stopping this pass")
            seen.add(page.next_cursor)
            cursor = page.next_cursor

    async def complaint(self, tracking_id: str) -> m.Complaint:
        """One complaint's detail. Whatever is wrong with this one answer (cut off,
        unreadable, nested absurdly deep, invalid) is a ``SkipRecord`` for this record
        alone; only failures of LAPOR! itself (outage, auth) stop the caller."""
        try:
            answer = await self.call("GET", f"{API}/laporan/{tracking_id}")
        except Rejected as exc:
            reason = reasons.detail_refusal(exc.status, exc.kode)
            if reason is None:
                raise
            raise SkipRecord(tracking_id, reason) from None
        with mapped(
            {
                RecursionError: lambda _: SkipRecord(
                    tracking_id, "invalid_record", "invalid fields: (nesting too deep)"
                ),
                # A body cut off mid-JSON (or otherwise unreadable): transient-looking.
                MALFORMED: lambda _: SkipRecord(
                    tracking_id, "truncated_response", "the detail answer is not complete JSON"
                ),
            }
        ):
            data = answer.json()["data"]
        # This record alone (e.g. OverflowError on a date): push's verify too, not only the
        # pull, must see it as one record's problem. A KeyError or TypeError here is ours.
        with mapped(
            {
                RECORD_ERRORS: lambda exc: SkipRecord(
                    tracking_id, "invalid_record", f"cannot be read: {exc.__class__.__name__}"
                )
            }
        ):
            return wire.parse_complaint(data, tracking_id, wire.needs_cleaning(answer.body))

    async def post_follow_up(
        self,
        tracking_id: str,
        request: m.FollowUpRequest,
        idempotency_key: str,
        guard: Callable[[], Awaitable[None]] | None = None,
    ) -> m.Receipt:
        """POST one follow-up. A success answer that fails validation raises
        ``AnswerUnreadable``: the follow-up exists, only its id is unknown."""
        try:
            answer = await self.call(
                "POST",
                f"{API}/laporan/{tracking_id}/tindak-lanjut",
                json=wire.follow_up_body(request),
                headers={"Idempotency-Key": idempotency_key},
                guard=guard,
            )
        except Rejected as exc:
            if 200 <= exc.status < 300:  # accepted, but the answer was too large to read
                raise AnswerUnreadable(tracking_id) from None
            raise
        with mapped({MALFORMED: lambda _: AnswerUnreadable(tracking_id)}):
            got = wire.TindakLanjutDibuat.model_validate(answer.json()["data"])
            if str(got.tracking_id) != tracking_id:
                raise ValueError("answer names another complaint")
        return m.Receipt(
            str(got.id), str(got.tracking_id), got.dibuat, replayed=answer.status == 200
        )

    async def units(self) -> list[m.Unit]:
        return [u.to_domain() for u in await self._list("unit-kerja", wire.UnitKerja)]

    async def categories(self) -> list[m.Category]:
        return [k.to_domain() for k in await self._list("kategori", wire.Kategori)]

    async def _list(self, name: str, model: type[W]) -> list[W]:
        data, _ = await self._data("GET", f"{API}/{name}")
        with mapped({MALFORMED: lambda _: LaporUnavailable(f"LAPOR! {name} answer malformed")}):
            return [model.model_validate(item) for item in data]

    async def download(
        self,
        attachment: m.Attachment,
        dest_dir: Path,
        *,
        max_bytes: int,
        allowed_types: tuple[str, ...],
    ) -> Path:
        """Stream one attachment into ``dest_dir`` (mode 0700, files 0600).

        Only from the API's own host, with no redirects; size capped and content
        type allowlisted. Raises ``Rejected`` with a reason code otherwise.
        """
        url = httpx.URL(attachment.url)
        if (url.scheme, url.host, url.port) != (
            self.base_url.scheme,
            self.base_url.host,
            self.base_url.port,
        ):
            raise AttachmentRefused("lampiran_host_asing")
        dest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(dest_dir, 0o700)
        token = await self.tokens.get()
        await self.budget.acquire()
        self.requests["lampiran"] += 1
        with mapped(_DOWNLOAD_FAILED):
            # One deadline for the whole download: the read timeout restarts with every
            # byte, so a server sending one byte every few seconds would hold it forever.
            async with (
                asyncio.timeout(self._deadline_s),
                self._http.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as resp,
            ):
                if resp.status_code in RETRY_STATUSES:
                    raise LaporUnavailable(
                        f"attachment download: HTTP {resp.status_code}", status=resp.status_code
                    )
                if resp.status_code != 200:
                    raise Rejected(resp.status_code, f"http_{resp.status_code}")
                mime = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if mime not in allowed_types:
                    raise AttachmentRefused("lampiran_jenis_ditolak")
                declared = resp.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise Rejected(200, "lampiran_terlalu_besar")
                fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".part-")
                try:
                    with os.fdopen(fd, "wb") as out:
                        async for chunk in _bounded(resp, max_bytes, "lampiran_terlalu_besar"):
                            out.write(chunk)
                    final = dest_dir / attachment_file_name(attachment.id, mime)
                    os.replace(tmp, final)
                    os.chmod(final, 0o600)
                    return final
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise


async def _bounded(
    resp: httpx.Response, limit: int, too_large: str = "respons_terlalu_besar"
) -> AsyncIterator[bytes]:
    """The decoded body, never more than ``limit`` bytes on the wire or decoded; refused
    (``Rejected``) past it, or when it stacks content codings."""
    with mapped(
        {
            TooLarge: lambda _: Rejected(resp.status_code, too_large),
            UnsupportedEncoding: lambda _: Rejected(resp.status_code, "pengodean_tidak_didukung"),
        }
    ):
        if resp.is_stream_consumed:  # built in memory (a test's MockTransport): decoded
            decoder = BoundedDecoder(None, limit)
            raws: AsyncIterator[bytes] = _one_chunk(resp.content)
        else:
            decoder = BoundedDecoder(resp.headers.get("Content-Encoding"), limit)
            raws = resp.aiter_raw()
        async for raw in raws:
            if out := decoder.decode(raw):
                yield out
        if tail := decoder.flush():
            yield tail


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


_SUFFIXES = {"image/jpeg": ".jpg", "image/png": ".png", "application/pdf": ".pdf"}


def attachment_file_name(attachment_id: str, mime: str) -> str:
    """A file name for an attachment id: unique (a hash of the whole id, so ``a/b``,
    ``a.b`` and ``a_b`` differ), at most 80 bytes whatever the id (``ENAMETOOLONG`` is
    never LAPOR!'s to cause), a readable ASCII prefix, and a suffix from the checked type."""
    digest = hashlib.sha256(attachment_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    readable = "".join(c for c in attachment_id if c.isascii() and (c.isalnum() or c in "-_"))
    suffix = _SUFFIXES.get(mime, ".bin")
    return f"{readable[:40]}-{digest}{suffix}" if readable else f"{digest}{suffix}"


# A download that fails on the way: LAPOR! (or the link to it) is unavailable for now.
_DOWNLOAD_FAILED: Rules = {
    TimeoutError: lambda _: LaporUnavailable("attachment download cut at the call's deadline"),
    httpx.RequestError: lambda exc: LaporUnavailable(
        f"attachment download failed: {exc.__class__.__name__}"
    ),
}


def _kind(method: str, path: str) -> str:
    parts = path.removeprefix(API).strip("/").split("/")
    if parts[0] == "laporan":
        if len(parts) == 1:
            return "feed"
        return "tindak_lanjut" if len(parts) > 2 else "detail"
    return parts[0] or "root"


def _cut_short(answer: _Answer) -> bool:
    """Whether a 2xx answer's body is JSON that stops before its end (a link that closed
    early, the length it declared notwithstanding)."""
    try:
        answer.json()
    except json.JSONDecodeError as exc:
        return exc.pos >= len(answer.body.rstrip()) - 1
    except ValueError:
        return False
    return False


def _envelope(answer: _Answer, path: str) -> tuple[Any, dict[str, Any]]:
    def malformed(_: BaseException) -> LaporUnavailable:
        return LaporUnavailable(f"LAPOR! answered {path} with a malformed envelope")

    with mapped({MALFORMED: malformed, RecursionError: malformed}):
        doc = answer.json()
        return doc["data"], doc.get("meta") or {}


def _parse_page(data: Any, meta: dict[str, Any], cleaning: bool = True) -> m.Page:
    try:
        parsed_meta = wire.FeedMeta.model_validate(meta)
    except ValidationError:
        raise LaporUnavailable("LAPOR! feed page has malformed meta") from None
    if not isinstance(data, list):
        raise LaporUnavailable("LAPOR! feed page data is not a list")
    items = tuple(wire.parse_summary(raw, cleaning) for raw in data)
    return m.Page(items, parsed_meta.kursor_berikutnya, parsed_meta.waktu_server)
