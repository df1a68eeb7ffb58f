"""The sandbox's bad habits, from its ``Faults``: maintenance, 429 and 5xx answers, lost
POST answers, malformed and dirty records (zero dates, lone surrogates, NULs, truncated
or missing details), extra keys."""

from __future__ import annotations

import hashlib
from typing import Any

from connector.sandbox.faults import ApiFault
from connector.sandbox.model import WorldState


class Habits(WorldState):
    """Faults as the world applies them to each request and record."""

    def set_faults(self, changes: dict[str, Any]) -> None:
        self.faults.update(changes)
        if "maintenance_s" in changes:
            self.maintenance_until = self._clock() + self.faults.maintenance_s

    def before_request(self, *, auth_call: bool = False) -> None:
        """Maintenance and random faults, applied to every API request."""
        self.requests += 1
        now = self._clock()
        if now < self.maintenance_until:
            left = max(1, int(self.maintenance_until - now))
            self.fired["maintenance_s"] += 1
            raise ApiFault(
                503,
                "pemeliharaan",
                "LAPOR! sedang dalam pemeliharaan.",
                headers={"Retry-After": str(left)},
            )
        f = self.faults
        if f.rate_429 and self.fault_rng.random() < f.rate_429:
            self.fired["rate_429"] += 1
            raise ApiFault(
                429,
                "batas_permintaan",
                "Terlalu banyak permintaan.",
                headers={"Retry-After": str(f.retry_after_s)},
            )
        if f.rate_5xx and self.fault_rng.random() < f.rate_5xx:
            self.fired["rate_5xx"] += 1
            raise ApiFault(
                self.fault_rng.choice([500, 502, 504]), "kesalahan_server", "Kesalahan pada server."
            )

    def drop_answer(self) -> None:
        """A POST answer was lost: with ``down_after_drop_s``, LAPOR! then stays down."""
        if self.faults.down_after_drop_s > 0:
            self.fired["down_after_drop_s"] += 1
            self.maintenance_until = max(
                self.maintenance_until, self._clock() + self.faults.down_after_drop_s
            )

    def _malformed(self, tid: int) -> bool:
        rate = self.faults.malformed_rate
        if rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{tid}".encode()).digest()
        return digest[0] / 256 < rate

    def _picked(self, kind: str, tid: int, rate: float) -> bool:
        if rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{kind}:{tid}".encode()).digest()
        return digest[0] / 256 < rate

    def detail_fault(self, tid: int) -> str | None:
        """How this detail request misbehaves: "not_found" (once per record), "truncated"."""
        f = self.faults
        if self._picked("404", tid, f.not_found_once_rate) and tid not in self.served_404:
            self.served_404.add(tid)
            self.fired["not_found_once_rate"] += 1
            return "not_found"
        if f.truncated_rate and self.fault_rng.random() < f.truncated_rate:
            self.fired["truncated_rate"] += 1
            return "truncated"
        return None

    def _extra(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.faults.extra_keys:
            obj["x_versi_skema"] = "3.1"
            obj["x_catatan_internal"] = None
        else:
            self.fired["extra_keys"] += 1  # exactly the spec's keys
        return obj
