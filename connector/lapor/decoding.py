"""Content decoding with a bound on the decoded bytes, applied inside decompression.

httpx's own decoders inflate a whole wire chunk (through every layer of
``Content-Encoding: gzip, gzip``) before the caller can count anything: a 2 KB answer
became gigabytes. Here each ``decompress`` call is told how much it may produce, so no
answer ever holds more than the limit in memory, and more than one content coding is
refused outright (no server of ours stacks them; only a bomb does).
"""

from __future__ import annotations

import zlib

import httpx

from connector.errors import TooLarge, UnsupportedEncoding

ACCEPT_ENCODING = "gzip, deflate"  # what the client asks for: exactly what it can decode


def codings(header: str | None) -> list[str]:
    """The content codings of a ``Content-Encoding`` header, ``identity`` left out."""
    parts = [p.strip().lower() for p in (header or "").split(",")]
    return [p for p in parts if p and p != "identity"]


class BoundedDecoder:
    """Decodes one answer's body chunk by chunk; at most ``limit`` bytes come out, and at
    most ``limit`` bytes go in."""

    def __init__(self, content_encoding: str | None, limit: int):
        found = codings(content_encoding)
        if len(found) > 1:
            raise UnsupportedEncoding("more than one content coding")
        self._coding = found[0] if found else None
        if self._coding not in (None, "gzip", "x-gzip", "deflate"):
            raise UnsupportedEncoding("unsupported content coding")
        self._limit = limit
        self._in = 0
        self._out = 0
        self._z: zlib._Decompress | None = self._new() if self._coding else None
        self._deflate_first = self._coding == "deflate"

    def _new(self, raw: bool = False) -> zlib._Decompress:
        if self._coding == "deflate":
            return zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def _count(self, data: bytes) -> bytes:
        self._out += len(data)
        if self._out > self._limit:
            raise TooLarge
        return data

    def decode(self, chunk: bytes) -> bytes:
        self._in += len(chunk)
        if self._in > self._limit:
            raise TooLarge
        if self._z is None:
            return self._count(chunk)
        out: list[bytes] = []
        data = chunk
        while data:
            try:
                # Never more than one byte past what is still allowed: the bound holds
                # inside the inflation, not after it.
                piece = self._z.decompress(data, self._limit - self._out + 1)
            except zlib.error:
                if not self._deflate_first:
                    raise httpx.DecodingError("the answer's compressed body is corrupt") from None
                # "deflate" without its zlib header, as some servers send it (httpx too
                # accepts both).
                self._z, self._deflate_first = self._new(raw=True), False
                continue
            self._deflate_first = False
            out.append(self._count(piece))
            if self._z.unconsumed_tail:
                data = self._z.unconsumed_tail
            elif self._z.eof and self._z.unused_data:
                data = self._z.unused_data  # a further gzip member
                self._z = self._new()
            else:
                data = b""
        return b"".join(out)

    def flush(self) -> bytes:
        if self._z is None:
            return b""
        return self._count(self._z.flush(self._limit - self._out + 1))
