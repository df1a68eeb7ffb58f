"""Safe terminal output: text from LAPOR! can carry control characters and escape
sequences (a title that clears the screen, retitles the window or hides a line). Plain
text commands print it neutralised, visibly; JSON output is left exact."""

from __future__ import annotations

import re
from typing import Any, TextIO

# C0 controls but newline and tab, DEL, C1 controls, bidirectional overrides and
# isolates, and lone surrogates (which a terminal cannot even encode).
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str, *, inline: bool = False) -> str:
    """``text`` with every unsafe character shown as an escape (``\\x1b``); ``inline``
    also escapes newlines and tabs (one table cell, one line)."""
    out = _UNSAFE.sub(_escape, text)
    if inline:
        out = out.replace("\n", "\\n").replace("\t", "\\t")
    return out


class SafeWriter:
    """A text stream that neutralises what is written to it."""

    def __init__(self, inner: TextIO):
        self._inner = inner

    def write(self, text: str) -> int:
        return self._inner.write(safe(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
