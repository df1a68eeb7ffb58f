"""The HTTP transport the client uses in production.

httpx's own stack (httpcore + the pure-Python h11 parser) costs about 0.8 ms of CPU per
request; the connector's pull is CPU-bound, so that was half of its cost per complaint.
``httpx-aiohttp`` keeps httpx's API, errors and tests (any transport can still be passed
in) and puts aiohttp's C parser and connection pool underneath: about 0.45 ms per request
(``benchmarks/first_sync.py`` measures both).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def env_proxy(url: httpx.URL) -> httpx.Proxy | None:
    """The proxy ``HTTP(S)_PROXY``/``NO_PROXY`` name for ``url``, read once at start.

    httpx's default transport honours these; aiohttp's ``trust_env`` would too, but
    re-reads the environment and ``~/.netrc`` in a thread on every request.
    """
    if urllib.request.proxy_bypass(url.host):
        return None
    proxy = urllib.request.getproxies_environment().get(url.scheme)
    return httpx.Proxy(proxy) if proxy else None


# aiohttp's errors as httpx names them, most specific first. httpx-aiohttp's own table
# calls a refused connection and a server that hung up "ConnectTimeout"; operators read
# these names in `status` and the logs, so they must say what happened.
_PRECISE: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientOSError, httpx.ReadError),
)


@contextmanager
def _precise_errors() -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:
        cause = exc.__cause__
        for source, target in _PRECISE:
            if isinstance(cause, source):
                if type(exc) is target:
                    raise
                raise target(str(exc)) from cause
        raise


class _Transport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _precise_errors():
            return await super().handle_async_request(request)


def default_transport(base_url: httpx.URL, *, max_connections: int,
                      keepalive_s: float = 5.0) -> httpx.AsyncBaseTransport:
    def session() -> aiohttp.ClientSession:
        # Built on the first request, inside the running event loop. TLS is verified
        # against the system's trust store (aiohttp's default).
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=keepalive_s),
        )
    return _Transport(client=session, proxy=env_proxy(base_url))
