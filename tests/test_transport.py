"""The production transport (aiohttp under httpx) over real loopback sockets.

Most tests hand the sandbox app to ``httpx.ASGITransport``; these run a real server, so
the transport the daemon uses is the one under test: the same answers as httpx's own
stack, the same errors for cut-off and dropped answers, and the proxy from the
environment.
"""

from __future__ import annotations

import asyncio
from typing import Unpack

import httpx
import pytest

from connector.errors import ConfigError, LaporUnavailable, SkipRecord
from connector.lapor.client import LaporClient
from connector.lapor.transport import env_proxy
from connector.sandbox import World
from connector.sandbox.world import Faults
from tests.factories import (
    JSON_200,
    Deadlines,
    free_port,
    raw_server,
    replying,
    served,
    wire_client,
)

pytestmark = pytest.mark.anyio


async def _read_all(client: LaporClient) -> list[object]:
    out: list[object] = []
    async with client:
        async for page in client.feed(lambda: None, page_size=7):
            for item in page.items:
                out.append(item)
                out.append(await client.complaint(item.tracking_id))
    return out


async def test_the_default_transport_reads_what_httpx_own_stack_reads() -> None:
    world = World(seed=7, complaints=25, faults=Faults(rate_limit_per_minute=0))
    with served(world) as base:
        fast = await _read_all(wire_client(base))
        plain = await _read_all(wire_client(base, httpx.AsyncHTTPTransport()))
    assert len(fast) == 50
    assert fast == plain


async def test_a_cut_off_detail_is_that_records_skip_on_both_stacks() -> None:
    world = World(seed=7, complaints=3, faults=Faults(rate_limit_per_minute=0, truncated_rate=1.0))
    with served(world) as base:
        tid = str(sorted(world.visible_ids())[0])
        for transport in (None, httpx.AsyncHTTPTransport()):
            async with wire_client(base, transport) as client:
                with pytest.raises(SkipRecord):
                    await client.complaint(tid)


PING = b'{"data": {"waktu_server": "2026-11-28 10:00:00"}}'


async def test_an_answer_dropped_mid_body_is_transient_and_retried() -> None:
    """Headers promise 100 bytes, 10 arrive, the connection closes: the client retries
    (a transport error, never a parsed record) and gives up as LAPOR! unavailable."""
    hits: list[bytes] = []
    cut = replying(JSON_200 + b'Content-Length: 100\r\n\r\n{"data": {', hits)
    async with raw_server(cut) as base, wire_client(base, call_deadline_s=5) as client:
        with pytest.raises(LaporUnavailable):
            await client.ping()
    assert len(hits) > 1


async def test_the_proxy_named_by_the_environment_carries_the_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """https through the proxy's tunnel (CONNECT): the proxy sees the host, never the
    requests (this one cannot finish TLS with the test's server)."""
    seen: list[bytes] = []
    async with raw_server(replying(_answer(JSON_200), seen)) as proxy_url:
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with wire_client("https://lapor.example", call_deadline_s=1) as client:
            with pytest.raises(LaporUnavailable):
                await client.ping()
    assert seen and set(seen) == {b"CONNECT lapor.example:443 HTTP/1.1"}


async def test_plain_http_and_loopback_targets_never_go_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 23 item 12: the token request (client secret included) in clear through a
    proxy. Every proxy variable set: the loopback LAPOR! is still reached directly."""
    through_proxy: list[bytes] = []
    async with (
        raw_server(replying(_answer(JSON_200), through_proxy)) as proxy_url,
        raw_server(replying(_answer(JSON_200))) as lapor,
    ):
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with wire_client(lapor) as client:
            await client.ping()
        localhost = lapor.replace("127.0.0.1", "localhost")
        assert env_proxy(httpx.URL(localhost)) is None
        assert env_proxy(httpx.URL("https://127.0.0.1:1/")) is None
        assert env_proxy(httpx.URL("https://api.lapor.go.id/")) is not None
    assert through_proxy == []


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, "https://api.lapor.go.id/", None),
        (
            {"ALL_PROXY": "http://proxy.mahulu:3128"},
            "https://api.lapor.go.id/",
            "http://proxy.mahulu:3128",
        ),
        (
            {"HTTPS_PROXY": "http://proxy.mahulu:3128"},
            "https://api.lapor.go.id/",
            "http://proxy.mahulu:3128",
        ),
        ({"HTTPS_PROXY": "http://proxy.mahulu:3128"}, "http://api.lapor.go.id/", None),
        ({"HTTP_PROXY": "http://proxy.mahulu:3128"}, "http://api.lapor.go.id/", None),
        (
            {"HTTPS_PROXY": "http://proxy.mahulu:3128", "NO_PROXY": "lapor.go.id"},
            "https://api.lapor.go.id/",
            None,
        ),
    ],
)
def test_env_proxy_follows_the_usual_variables(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    url: str,
    expected: str | None,
) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    proxy = env_proxy(httpx.URL(url))
    assert (str(proxy.url).rstrip("/") if proxy else None) == expected


async def _error_names(base: str, **kw: Unpack[Deadlines]) -> list[str]:
    """The error class the client saw on each attempt (what `status` and logs show)."""
    names: list[str] = []
    kw.setdefault("call_deadline_s", 2.0)
    async with wire_client(base, **kw) as client:
        client.observer = lambda _kind, code, _s: names.append(code)
        with pytest.raises(LaporUnavailable):
            await client.ping()
    return names


async def test_a_refused_connection_is_named_connect_error() -> None:
    port = free_port()  # nobody listens there
    names = await _error_names(f"http://127.0.0.1:{port}")
    assert names and set(names) == {"ConnectError"}


async def test_a_server_that_hangs_up_without_answering_is_a_protocol_error() -> None:
    async with raw_server(replying(b"")) as base:
        names = await _error_names(base)
    assert names and set(names) == {"RemoteProtocolError"}


async def test_a_silent_server_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)
        writer.close()

    async with raw_server(silent) as base:
        names = await _error_names(base, timeout_s=0.3)
    assert names and set(names) == {"ReadTimeout"}


def test_a_socks_proxy_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.mahulu:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ConfigError, match="socks5"):
        env_proxy(httpx.URL("https://api.lapor.go.id/"))


def _answer(head: bytes, body: bytes = PING) -> bytes:
    return head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_a_malformed_answer_is_a_transient_protocol_error() -> None:
    """aiohttp raises its own error for a broken status line: it must become the httpx
    error the client retries, never escape and crash a cycle."""
    async with raw_server(replying(_answer(b"HTTP/1.1 TWO HUNDRED\r\n"))) as base:
        names = await _error_names(base)
    assert names and set(names) == {"RemoteProtocolError"}


async def test_headers_as_long_as_httpx_own_parser_took_are_read() -> None:
    long_cookie = replying(_answer(JSON_200 + b"Set-Cookie: waf=" + b"x" * 12000 + b"\r\n"))
    async with raw_server(long_cookie) as base, wire_client(base) as client:
        await client.ping()


async def test_an_answer_that_trickles_is_cut_at_the_calls_deadline() -> None:
    """The read timeout restarts with every byte; the attempt as a whole may not."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(JSON_200 + b"Content-Length: 100000\r\n\r\n")
        try:
            for _ in range(200):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass
        writer.close()

    t0 = asyncio.get_running_loop().time()
    async with raw_server(trickle) as base:
        names = await _error_names(base, timeout_s=0.5, call_deadline_s=1.0)
    assert "ReadTimeout" in names
    assert asyncio.get_running_loop().time() - t0 < 8


def test_one_client_under_two_event_loops() -> None:
    """A session belongs to its loop: a client used under a second asyncio.run() gets a
    new one instead of failing on the closed loop."""
    world = World(seed=7, complaints=3, faults=Faults(rate_limit_per_minute=0))
    with served(world) as base:
        client = wire_client(base)
        first = asyncio.run(client.ping())
        second = asyncio.run(client.ping())
        asyncio.run(client.aclose())
    assert first.tzinfo is not None and second >= first
