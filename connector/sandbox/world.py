"""The sandbox's world: its state and every role serving it (``model``, ``habits``,
``auth``, ``feed``, ``posting``) composed, plus its life: the generator's events and the
test hooks.
"""

from __future__ import annotations

from typing import Any

from connector.sandbox import data
from connector.sandbox.auth import Auth
from connector.sandbox.faults import ApiFault, Faults
from connector.sandbox.posting import OPEN_FOR_POSTING, Posting

__all__ = ["ApiFault", "Faults", "World"]  # Faults and ApiFault: for older imports


class World(Posting, Auth):
    """The whole sandbox LAPOR!, in memory (``WorldState`` holds its data)."""

    def add_complaints(self, n: int) -> list[int]:
        return [self._new_complaint(self._stamp())["tracking_id"] for _ in range(n)]

    def event(self, kind: str, tid: int | None = None, unit_id: int | None = None) -> int | None:
        """Apply one life event; returns the tracking id it touched (None if none fit)."""
        if kind == "new":
            return self.add_complaints(1)[0]
        wants = {
            "reply": ("terdisposisi", "ditindaklanjuti", "selesai"),
            "objection": ("selesai",),
            "redispose": ("terdisposisi", "ditindaklanjuti"),
            "redispose_out": ("terdisposisi", "ditindaklanjuti"),
            "archive": ("terdisposisi", "ditindaklanjuti"),
            "close": ("selesai",),
            "touch": (*OPEN_FOR_POSTING, "ditutup", "diarsipkan"),
        }
        if kind not in wants:
            raise ValueError(f"unknown event {kind!r}")
        if tid is None:
            fits = sorted(t for t, r in self.records.items() if r["status"] in wants[kind])
            if not fits:
                return None
            tid = self.rng.choice(fits)
        record = self.records[tid]
        stamp = self._stamp()
        if kind == "touch":
            record["diperbarui"] = stamp
            return tid
        if kind == "reply":
            self.append_follow_up(
                record, "pelapor", None, None, self.rng.choice(data.REPORTER_REPLIES), stamp
            )
        elif kind == "objection":
            self.append_follow_up(
                record, "pelapor", None, None, self.rng.choice(data.OBJECTIONS), stamp
            )
            record["status"] = "ditindaklanjuti"
        elif kind in ("redispose", "redispose_out"):
            current = {d["unit_id"] for d in record["disposisi"]}
            pool = [
                u
                for u in (self.units if kind == "redispose" else self.foreign)
                if u not in current and (kind == "redispose_out" or self.units[u][3])
            ]
            target = unit_id if unit_id is not None else self.rng.choice(sorted(pool))
            record["disposisi"] = [self.disposition(target, stamp)]
            record["status"] = "terdisposisi"
            self.append_follow_up(record, "admin", None, None, data.ADMIN_NOTES["redispose"], stamp)
            if target in self.units:
                self.ever_instansi[tid].add(data.INSTANSI)
        elif kind == "archive":
            record["status"] = "diarsipkan"
            self.append_follow_up(
                record, "admin", None, "diarsipkan", data.ADMIN_NOTES["archive"], stamp
            )
        elif kind == "close":
            record["status"] = "ditutup"
            self.append_follow_up(
                record, "admin", None, "ditutup", data.ADMIN_NOTES["close"], stamp
            )
        record["diperbarui"] = stamp
        return tid

    def tick(self) -> list[tuple[str, int | None]]:
        """One generator step: a few random events, weighted like real life."""
        kinds = ["new", "reply", "objection", "redispose", "redispose_out", "archive", "close"]
        weights = [0.45, 0.2, 0.07, 0.1, 0.03, 0.05, 0.1]
        done = []
        for _ in range(self.rng.randint(1, 3)):
            kind = self.rng.choices(kinds, weights)[0]
            done.append((kind, self.event(kind)))
        return done

    def inspect(self, tid: int) -> dict[str, Any]:
        record = self.records[tid]
        out = self.detail(record, "")
        for fu in out["tindak_lanjut"]:
            fu["idempotency_key"] = self.follow_up_keys.get(fu["id"])
        return out
