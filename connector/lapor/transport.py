"""The HTTP transport the client uses in production.

httpx's own stack (httpcore + the pure-Python h11 parser) costs about 0.8 ms of CPU per
request; the connector's pull is CPU-bound, so that was half of its cost per complaint.
``httpx-aiohttp`` keeps httpx's API, errors and tests (any transport can still be passed
in) and puts aiohttp's C parser and connection pool underneath: about 0.35 ms per request
(``benchmarks/first_sync.py`` measures both).

What this module adds to the library: every aiohttp error becomes the httpx error that
says what happened (the client retries ``httpx.TransportError``; anything else would
crash a cycle), the proxy is read once, TLS trusts the same certificates as httpx
(certifi), headers as long as h11 allowed, and a session per event loop.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from connector.errors import ConfigError
from connector.settings import is_loopback

# h11, httpx's own parser, accepts header blocks up to 16 KiB; aiohttp's default line and
# field limit is 8 KiB. A proxy's long cookie must not start failing every request.
MAX_HEADER_BYTES = 16 * 1024


def env_proxy(url: httpx.URL) -> httpx.Proxy | None:
    """The proxy ``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` name for ``url``, read once.

    httpx's default transport honours these; aiohttp's ``trust_env`` would too, but
    re-reads the environment and ``~/.netrc`` in a thread on every request.
    """
    if url.scheme != "https" or is_loopback(url.host) or urllib.request.proxy_bypass(url.host):
        # Never through a proxy in cleartext: a plain-http (loopback) target would hand the
        # token request, client secret included, to whoever runs the proxy.
        return None
    found = urllib.request.getproxies_environment()
    proxy = found.get(url.scheme) or found.get("all")
    if not proxy:
        return None
    parsed = httpx.Proxy(proxy)
    if parsed.url.scheme not in ("http", "https"):
        raise ConfigError(
            f"the proxy for {url.scheme}:// ({parsed.url.scheme}://, from the "
            "environment) is not supported: use an http:// proxy"
        )
    return parsed


# aiohttp's errors as httpx names them, most specific first. httpx-aiohttp's own table
# calls a refused connection and a server that hung up "ConnectTimeout", and lets others
# through as they are; operators read these names in `status` and the logs.
_PRECISE: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # a malformed answer
    (aiohttp.ClientConnectionResetError, httpx.ReadError),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientError, httpx.NetworkError),  # whatever else aiohttp raises
)


def _precise(exc: BaseException) -> type[httpx.TransportError] | None:
    return next((target for source, target in _PRECISE if isinstance(exc, source)), None)


@contextmanager
def _precise_errors() -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:
        target = _precise(exc.__cause__) if exc.__cause__ is not None else None
        if target is None or type(exc) is target:
            raise
        raise target(str(exc)) from exc.__cause__
    except aiohttp.ClientError as exc:  # passed through unmapped by the library
        raise (_precise(exc) or httpx.NetworkError)(str(exc)) from exc


class _Stream(httpx.AsyncByteStream):
    """The response body, with the same error names as the request."""

    def __init__(self, inner: httpx.AsyncByteStream):
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _precise_errors():
            async for chunk in self._inner:
                yield chunk

    async def aclose(self) -> None:
        with _precise_errors():
            await self._inner.aclose()


class _Transport(AiohttpTransport):
    def __init__(self, session: Callable[[], aiohttp.ClientSession], proxy: httpx.Proxy | None):
        super().__init__(client=session, proxy=proxy)
        self._session = session
        self._loop: asyncio.AbstractEventLoop | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # An aiohttp session belongs to the loop it was made in: a client used under
            # a second asyncio.run() gets a new one (the old loop is gone with its sockets).
            self.client, self._loop = self._session, loop
        with _precise_errors():
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Stream(response.stream)
        return response


def default_transport(
    base_url: httpx.URL, *, max_connections: int, keepalive_s: float = 5.0
) -> httpx.AsyncBaseTransport:
    tls = httpx.create_ssl_context()  # certifi's store, as httpx's own transport

    def session() -> aiohttp.ClientSession:
        # Built on the first request, inside the running event loop.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=max_connections, keepalive_timeout=keepalive_s, ssl=tls
            ),
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
        )

    return _Transport(session, env_proxy(base_url))
