"""The sandbox's fault knobs (``Faults``, set through ``PUT /_sandbox/faults``) and the
error answer every fault ends in (``ApiFault``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class Faults:
    """Fault injection knobs. Rates are probabilities per request in [0, 1]."""

    latency_ms: int = 0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    retry_after_s: int = 2
    maintenance_s: float = 0.0  # maintenance window length from when it was set
    token_max_uses: int = 0  # 0 = tokens expire only by time
    drop_post_rate: float = 0.0  # commit the follow-up, then answer 504 as if lost
    move_rate: float = 0.0  # per feed page: touch a record so it moves to the end
    late_commit_s: int = 0  # updates are stamped this many seconds in the past...
    late_commit_rate: float = 0.0  # ...with this probability
    malformed_rate: float = 0.0  # share of records served malformed (by tracking id)
    duplicate_rate: float = 0.0  # per feed page: repeat one item on the page
    clock_offset_s: float = 0.0
    rate_limit_per_minute: int = 60  # LAPOR!'s budget; 0 = off
    extra_keys: bool = True
    cursor_ttl_s: float = 600.0
    # Dirty data as the spec promises it (shares of records, chosen by tracking id).
    zero_date_rate: float = 0.0  # batas_tindak_lanjut "0001-01-01 00:00:00"
    surrogate_rate: float = 0.0  # half a UTF-16 surrogate pair in judul
    nul_rate: float = 0.0  # a NUL byte in isi
    truncated_rate: float = 0.0  # per detail request: the answer is cut off mid-JSON
    not_found_once_rate: float = 0.0  # the first detail request answers 404 (lagging replica)
    future_rate: float = 0.0  # updates stamped future_s ahead of the server's clock...
    future_s: int = 86400  # ...by this much (a node whose clock ran ahead)
    idempotency_ttl_s: float = 86400.0  # LAPOR! forgets a key this long after its first use
    down_after_drop_s: float = 0.0  # after a dropped POST answer: maintenance for this long

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown fault {key!r}")
            current = getattr(self, key)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
            elif isinstance(current, (int, float)):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{key} must be a number")
                value = type(current)(value)
                is_rate = key in ("rate_429", "rate_5xx") or key.endswith("_rate")
                if (value < 0 and key != "clock_offset_s") or (is_rate and value > 1):
                    raise ValueError(f"{key} out of range")
            setattr(self, key, value)


class ApiFault(Exception):
    """An error answer: HTTP status, LAPOR! kode, message, optional rincian and headers."""

    def __init__(
        self,
        status: int,
        kode: str,
        pesan: str,
        rincian: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(pesan)
        self.status = status
        self.kode = kode
        self.pesan = pesan
        self.rincian = rincian
        self.headers = headers or {}
