"""Retry policy as data: what the client does with each answer from LAPOR!.

Tests walk these tables row by row, so a change here is a visible change of
behaviour, not an edit hidden in control flow.
"""

from __future__ import annotations

import email.utils
import enum
from datetime import datetime


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"  # back off (honouring Retry-After) within the call's deadline
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 - fetch a new token once, repeat the call
    FATAL_AUTH = "fatal_auth"  # credentials refused: a person must act
    CURSOR_EXPIRED = "cursor_expired"  # restart the feed from the caller's watermark
    REJECT = "reject"  # a permanent answer for this request: raise a typed error at once


RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})

# (status, kode) rows that differ from the status-only default.
BY_KODE: dict[tuple[int, str], Outcome] = {
    (401, "token_kedaluwarsa"): Outcome.REFRESH_TOKEN,
    (401, "token_tidak_valid"): Outcome.REFRESH_TOKEN,
    (401, "kredensial_tidak_valid"): Outcome.FATAL_AUTH,
    (410, "kursor_kedaluwarsa"): Outcome.CURSOR_EXPIRED,
}


def classify(status: int, kode: str | None) -> Outcome:
    if 200 <= status < 300:
        return Outcome.OK
    row = BY_KODE.get((status, kode or ""))
    if row is not None:
        return row
    if status in RETRY_STATUSES:
        return Outcome.RETRY
    if status == 401:
        return Outcome.FATAL_AUTH
    if status == 410:
        return Outcome.CURSOR_EXPIRED
    return Outcome.REJECT


def parse_retry_after(value: str | None, now: datetime, cap: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min((when - now).total_seconds(), cap))


def backoff(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Exponential backoff: base * 2^(attempt-1), capped, plus ``jitter`` in [0, 1) of it."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * (1 + jitter)
