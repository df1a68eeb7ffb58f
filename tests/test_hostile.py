"""A hostile LAPOR! on loopback (issue 23): bombs, stacked codings, trickles.

Real sockets and the production transport (and httpx's own stack where both matter): the
client must refuse or bound what it is sent, never let it take the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import resource
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from connector import cli
from connector.errors import LaporUnavailable, Rejected, SkipRecord
from connector.lapor import models as m
from connector.lapor.decoding import BoundedDecoder, TooLarge, UnsupportedEncoding
from tests.conftest import write_config
from tests.factories import JSON_200, raw_server, served, wire_client

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _gzip_of_zeros(size: int) -> bytes:
    """gzip of ``size`` zero bytes, built without holding them."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    out = [z.compress(block) for _ in range(size >> 20)]
    return b"".join([*out, z.flush()])


def _gzip(data: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return z.compress(data) + z.flush()


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def answering(head: bytes, body: bytes) -> Handler:
    """Every request (keep-alive too) answered with ``head`` and ``body``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return handle


@functools.cache
def _zeros_gz() -> bytes:
    return _gzip_of_zeros(512 << 20)  # 512 MiB of zeros: ~500 KB


@functools.cache
def _bomb() -> bytes:
    return _gzip(_zeros_gz())  # the same inside a second gzip layer: ~2 KB


def test_the_bomb_is_small_on_the_wire() -> None:
    assert len(_bomb()) < 16 * 1024


@pytest.mark.parametrize("stack", ["aiohttp", "httpx"])
async def test_a_nested_gzip_bomb_is_refused_without_inflating_it(stack: str) -> None:
    head = JSON_200 + b"Content-Encoding: gzip, gzip\r\n"
    before = _maxrss_mb()
    transport = httpx.AsyncHTTPTransport() if stack == "httpx" else None
    async with (
        raw_server(answering(head, _bomb())) as base,
        wire_client(base, transport, call_deadline_s=5) as client,
    ):
        with pytest.raises(Rejected, match="pengodean_tidak_didukung"):
            await client.ping()
        with pytest.raises(Rejected, match="pengodean_tidak_didukung"):
            await client.complaint("1")  # the pull quarantines it under that code
    assert _maxrss_mb() - before < 200


@pytest.mark.parametrize("stack", ["aiohttp", "httpx"])
async def test_a_single_gzip_bomb_is_cut_inside_decompression(stack: str) -> None:
    """One layer, 512 MiB decoded from ~500 KB: refused at max_response_bytes, memory bounded."""
    head = JSON_200 + b"Content-Encoding: gzip\r\n"
    body = _zeros_gz()
    before = _maxrss_mb()
    transport = httpx.AsyncHTTPTransport() if stack == "httpx" else None
    async with (
        raw_server(answering(head, body)) as base,
        wire_client(base, transport, call_deadline_s=5) as client,
    ):
        with pytest.raises(SkipRecord) as info:
            await client.complaint("1")
    assert info.value.reason == "response_too_large"
    assert _maxrss_mb() - before < 200


async def test_an_attachment_bomb_is_refused(tmp_path: Path) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Encoding: gzip\r\n"
    async with (
        raw_server(answering(head, _gzip_of_zeros(64 << 20))) as base,
        wire_client(base) as client,
    ):
        client.tokens._token, client.tokens._valid_until = "t", float("inf")
        att = m.Attachment("a1", "a.png", "image/png", 1, f"{base}/api/v3/lampiran/a1")
        with pytest.raises(Rejected, match="lampiran_terlalu_besar"):
            await client.download(att, tmp_path, max_bytes=1 << 20, allowed_types=("image/png",))
        nested = answering(head.replace(b"gzip", b"gzip, gzip"), _bomb())
    async with raw_server(nested) as base, wire_client(base) as client:
        client.tokens._token, client.tokens._valid_until = "t", float("inf")
        att = m.Attachment("a1", "a.png", "image/png", 1, f"{base}/api/v3/lampiran/a1")
        with pytest.raises(Rejected, match="pengodean_tidak_didukung"):
            await client.download(att, tmp_path, max_bytes=1 << 20, allowed_types=("image/png",))
    assert list(tmp_path.iterdir()) == []


async def test_an_honest_gzip_answer_is_read() -> None:
    body = _gzip(b'{"data": {"waktu_server": "2026-11-28 10:00:00"}}')
    async with (
        raw_server(answering(JSON_200 + b"Content-Encoding: gzip\r\n", body)) as base,
        wire_client(base) as client,
    ):
        assert (await client.ping()).year == 2026


def test_the_decoder_never_produces_past_its_limit() -> None:
    for coding, packed in (
        ("gzip", _gzip(bytes(10_000))),
        ("deflate", zlib.compress(bytes(10_000))),
        ("deflate", zlib.compress(bytes(10_000))[2:-4]),
    ):  # raw deflate
        d = BoundedDecoder(coding, 20_000)
        assert d.decode(packed[:7]) + d.decode(packed[7:]) + d.flush() == bytes(10_000)
        small = BoundedDecoder(coding, 1000)
        with pytest.raises(TooLarge):
            small.decode(packed)
    # two gzip members, as the format allows
    assert BoundedDecoder("gzip", 100).decode(_gzip(b"ab") + _gzip(b"cd")) == b"abcd"
    with pytest.raises(TooLarge):  # the wire alone
        BoundedDecoder(None, 10).decode(bytes(11))
    for header in ("gzip, gzip", "deflate,gzip", "br", "zstd"):
        with pytest.raises(UnsupportedEncoding):
            BoundedDecoder(header, 100)
    assert BoundedDecoder("identity", 10).decode(b"abc") == b"abc"
    with pytest.raises(httpx.DecodingError):
        BoundedDecoder("gzip", 100).decode(b"not gzip at all")


async def test_a_corrupt_gzip_body_is_transient() -> None:
    async with (
        raw_server(
            answering(JSON_200 + b"Content-Encoding: gzip\r\n", b"\x1f\x8bnot really")
        ) as base,
        wire_client(base, call_deadline_s=2) as client,
    ):
        with pytest.raises(LaporUnavailable):
            await client.ping()


@contextlib.contextmanager
def threaded_lapor(answer: Callable[[str], tuple[int, bytes]]) -> Iterator[str]:
    """A LAPOR! on loopback in a thread (for commands that run their own event loop):
    ``answer(path)`` gives the status and JSON body."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status, body = answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _reply

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


TOKEN = json.dumps(
    {"status": "ok", "data": {"access_token": "t", "token_type": "Bearer", "expires_in": 3600}}
).encode()
EVIL_KODE = json.dumps(
    {"status": "error", "error": {"kode": "dilarang\x1b[31m Bearer abcdefSECRET123", "pesan": "x"}}
).encode()


@pytest.mark.parametrize("refused", ["/auth/token", "/laporan"])
def test_sync_reports_a_4xx_from_feed_or_token_without_a_traceback(
    refused: str,
    tmp_path: Path,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def answer(path: str) -> tuple[int, bytes]:
        if refused in path:
            return 403, EVIL_KODE
        return 200, TOKEN

    monkeypatch.setenv("LAPOR_CLIENT_ID", "id")
    monkeypatch.setenv("LAPOR_CLIENT_SECRET", "secret-of-ours")
    with threaded_lapor(answer) as base:
        cfg = write_config(tmp_path, db_url, settings={"lapor": {"base_url": base}})
        code = cli.main(["sync", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("sync failed: LAPOR! answered 403 dilarang")
    assert "\x1b" not in err and "\\x1b" in err
    assert "abcdefSECRET123" not in err and "Traceback" not in err


def test_status_json_masks_a_token_that_lapor_put_in_its_error(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 23 item 13: the failed pull's error quotes LAPOR!'s `kode`; `status --json`
    (the body of /healthz too) shows it masked as the logs would."""
    monkeypatch.setenv("LAPOR_CLIENT_ID", "id")
    monkeypatch.setenv("LAPOR_CLIENT_SECRET", "secret-of-ours")
    with threaded_lapor(
        lambda path: (403, EVIL_KODE) if "/laporan" in path else (200, TOKEN)
    ) as base:
        cfg = write_config(tmp_path, db_url, settings={"lapor": {"base_url": base}})
        assert cli.main(["sync", "--config", str(cfg)]) == 1
    capsys.readouterr()
    cli.main(["status", "--json", "--config", str(cfg)])
    out = capsys.readouterr().out
    rep = json.loads(out)
    assert "dilarang" in rep["pull"]["last"]["error"]
    assert "abcdefSECRET123" not in out and "[redacted]" in rep["pull"]["last"]["error"]


def test_a_metrics_listener_off_loopback_is_warned_about() -> None:
    from structlog.testing import capture_logs

    from connector.service import warn_if_exposed

    with capture_logs() as logs:
        assert warn_if_exposed("0.0.0.0:9840")
        assert warn_if_exposed("[::]:9840")
        assert not warn_if_exposed("127.0.0.1:9840")
        assert not warn_if_exposed("[::1]:9840")
        assert not warn_if_exposed("")
    assert [e["event"] for e in logs] == ["metrics_not_loopback"] * 2


def _summary(tid: int, when: str) -> dict[str, object]:
    return {
        "tracking_id": tid,
        "judul": "x",
        "status": "baru",
        "diperbarui": when,
        "disposisi": [{"unit_id": 6411001, "instansi_id": 6411}],
    }


async def test_a_feed_that_repeats_itself_under_fresh_cursors_ends_the_pass() -> None:
    """Issue 23 item 4: the same page again and again, each time with a new cursor: the
    pass ends after a few pages with a clear error (the pull fails, health degrades)."""
    from connector.lapor.paging import NO_PROGRESS_PAGES

    pages = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal pages
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(200, content=TOKEN)
        pages += 1
        return httpx.Response(
            200,
            json={
                "status": "ok",
                "data": [
                    _summary(4511001, "2026-11-27 10:00:00"),
                    _summary(4511002, "2026-11-27 10:00:01"),
                ],
                "meta": {"kursor_berikutnya": f"c{pages}", "waktu_server": "2026-11-27 10:00:00"},
            },
        )

    client = wire_client("http://lapor.test", httpx.MockTransport(handler))
    with pytest.raises(LaporUnavailable, match="no progress"):
        async for _ in client.feed(lambda: None, 100):
            pass
    assert pages == NO_PROGRESS_PAGES + 1


def test_the_page_sizer_halves_to_ten_and_grows_back() -> None:
    from connector.lapor.paging import GROW_AFTER, MIN_PAGE, PageSizer

    sizer = PageSizer()
    assert sizer.size(100) == 100 and not sizer.good(100)
    assert sizer.cut(100) and sizer.size(100) == 50
    assert not sizer.cut(100) and sizer.size(100) == 25
    while sizer.can_shrink(100):
        sizer.cut(100)
    assert sizer.size(100) == MIN_PAGE
    restored = [sizer.good(100) for _ in range(GROW_AFTER * 4)]
    assert restored.count(True) == 1 and sizer.size(100) == 100


@contextlib.asynccontextmanager
async def cutting_proxy(upstream: str, cut_after: int) -> AsyncIterator[str]:
    """A link that drops every connection once ``cut_after`` bytes came back on it."""
    host, port = upstream.removeprefix("http://").split(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(host, int(port))

        async def forward() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    up_w.write(data)
                    await up_w.drain()

        async def back() -> None:
            sent = 0
            with contextlib.suppress(ConnectionError):
                while sent < cut_after and (data := await up_r.read(65536)):
                    data = data[: cut_after - sent]
                    sent += len(data)
                    writer.write(data)
                    await writer.drain()

        ahead = asyncio.create_task(forward())
        await back()
        ahead.cancel()
        for w in (writer, up_w):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_a_link_that_cuts_long_answers_still_reads_the_whole_feed() -> None:
    """Issue 22 item 5: every connection cut after 8 KB. Pages of 100 never pass; the
    client halves `batas` down to what passes (at least 10), says so once, and reads
    every complaint."""
    from structlog.testing import capture_logs

    from connector.sandbox import World
    from connector.sandbox.world import Faults

    world = World(seed=7, complaints=120, faults=Faults(rate_limit_per_minute=0))
    got: set[str] = set()
    with served(world) as base, capture_logs() as logs:
        async with (
            cutting_proxy(base, 8 * 1024) as link,
            wire_client(link, call_deadline_s=30) as client,
        ):
            async for page in client.feed(lambda: None, 100):
                got.update(i.tracking_id for i in page.items)
            assert client.pages.reduced is not None
    assert got == {str(t) for t in world.visible_ids()}
    shrunk = [e for e in logs if e["event"] == "feed_page_size_reduced"]
    assert [e["log_level"] for e in shrunk].count("warning") == 1
    assert min(e["batas"] for e in shrunk) >= 10
