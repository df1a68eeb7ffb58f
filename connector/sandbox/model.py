"""The sandbox's state: complaints, tokens, cursors and keys, in memory, and how a
complaint is built and changes (its disposition, its follow-ups, its clock).

Plain synchronous code with an injectable clock and a seeded RNG. The roles that serve
this state are layered on top (``habits``, ``auth``, ``feed``, ``posting``) and
composed into ``World`` (``world.py``), so the app is a thin Starlette layer and tests
drive the world directly.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connector.sandbox import data
from connector.sandbox.faults import Faults
from connector.timeutil import UTC, WIB, add_working_days, format_wib


@dataclass
class Token:
    instansi: int
    expires_at: float
    uses: int = 0
    requests: deque[float] = field(default_factory=deque)


@dataclass
class Cursor:
    after: tuple[datetime, int]
    batas: int
    since: datetime | None
    issued: float


class WorldState:
    """The data every role of the world reads and changes, built deterministically for
    the seed."""

    def __init__(
        self,
        seed: int = 6411,
        complaints: int = 120,
        *,
        faults: Faults | None = None,
        token_ttl_s: int = 3600,
        clock: Callable[[], float] = time.time,
    ):
        self.seed = seed
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(seed + 1)
        self.faults = faults or Faults()
        # How often each fault fired, by its knob in Faults: for tests to check that a fault
        # they set really happened. The world never reads it.
        self.fired: Counter[str] = Counter()
        self.token_ttl_s = token_ttl_s
        self._clock = clock
        self.maintenance_until = 0.0
        self.records: dict[int, dict[str, Any]] = {}
        self.ever_instansi: dict[int, set[int]] = {}
        self.tokens: dict[str, Token] = {}
        self.cursors: dict[str, Cursor] = {}
        # key -> (body fingerprint, tracking id, answer, first use on the world's clock)
        self.idempotency: dict[str, tuple[str, int, dict[str, Any], float]] = {}
        self.keys_forgotten = 0
        self.follow_up_keys: dict[int, str] = {}  # follow-up id -> idempotency key
        self.served_404: set[int] = set()  # records whose one 404 was served
        self.posts_created = 0
        self.posts_replayed = 0
        self.requests = 0
        self._next_tid = 4_100_000 + (seed % 1000) * 1000
        self._next_fu = 1
        self.units = {u[0]: u for u in data.UNITS}
        self.foreign = {u[0]: u for u in data.FOREIGN_UNITS}
        # Initial data is anchored on today's midnight (WIB) so a restart on the same day
        # serves the same world, deterministic for the seed.
        today = datetime.fromtimestamp(self._clock(), WIB).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        self.anchor = today.astimezone(UTC)
        for _ in range(complaints):
            self._new_complaint(
                today - timedelta(seconds=self.rng.randint(3600, 45 * 86400)), initial=True
            )
        # A few complaints of other instansi only: the feed never lists them; detail is 403.
        for _ in range(3):
            record = self._new_complaint(today - timedelta(days=2), initial=True)
            record["disposisi"] = [self.disposition(6400103, today - timedelta(days=2))]
            self.ever_instansi[record["tracking_id"]] = {64}

    # -- time ---------------------------------------------------------------------------

    def now(self) -> datetime:
        ts = self._clock() + self.faults.clock_offset_s
        if self.faults.clock_offset_s:
            self.fired["clock_offset_s"] += 1
        return datetime.fromtimestamp(int(ts), UTC)

    def summary_time(self) -> str:
        return format_wib(self.now())

    def _stamp(self) -> datetime:
        moment = self.now()
        f = self.faults
        if f.late_commit_s and self.fault_rng.random() < f.late_commit_rate:
            self.fired["late_commit_rate"] += 1
            moment -= timedelta(seconds=f.late_commit_s)
        elif f.future_rate and self.fault_rng.random() < f.future_rate:
            self.fired["future_rate"] += 1
            moment += timedelta(seconds=f.future_s)
        return moment

    # -- building records -----------------------------------------------------------------

    def _new_complaint(self, created: datetime, initial: bool = False) -> dict[str, Any]:
        rng = self.rng
        tid = self._next_tid
        self._next_tid += rng.randint(1, 7)
        kategori_id = rng.choice(list(data.TEXTS))
        kecamatan = rng.choice(list(data.KECAMATAN))
        kampung = rng.choice(data.KECAMATAN[kecamatan])
        title, body = rng.choice(data.TEXTS[kategori_id])
        anonim = rng.random() < 0.2
        rahasia = rng.random() < 0.15
        unit = data.CATEGORY_UNIT[kategori_id]
        if rng.random() < 0.1:
            unit = data.KECAMATAN_UNIT[kecamatan]
        # Drawn for an anonymous complaint too: the draws that follow stay where they were.
        first, last = rng.choice(data.FIRST_NAMES), rng.choice(data.LAST_NAMES)
        pelapor = None if anonim else self._reporter(first, last)
        disposed = created + timedelta(hours=rng.randint(2, 30)) if initial else created
        record: dict[str, Any] = {
            "tracking_id": tid,
            "judul": title.format(kampung=kampung, kecamatan=kecamatan),
            "isi": body.format(kampung=kampung, kecamatan=kecamatan),
            "klasifikasi": rng.choices(
                ["pengaduan", "aspirasi", "permintaan_informasi"], [0.75, 0.15, 0.1]
            )[0],
            "kategori": self._kategori(kategori_id),
            "status": "terdisposisi",
            "anonim": anonim,
            "rahasia": rahasia,
            "pelapor": pelapor,
            "sumber": rng.choices(
                ["web", "sms", "android", "ios", "twitter", "integrasi"],
                [0.3, 0.3, 0.25, 0.05, 0.05, 0.05],
            )[0],
            "lokasi": self._location(kecamatan, kampung),
            "disposisi": [self.disposition(unit, disposed)],
            "lampiran": [],
            "tindak_lanjut": [],
            "dibuat": created,
            "diperbarui": disposed,
            "batas_tindak_lanjut": None,
        }
        if rng.random() < 0.5:
            # As LAPOR!: the end of the 5th working day after disposition.
            record["batas_tindak_lanjut"] = add_working_days(disposed, 5)
        record["lampiran"] = self._attachments(tid)
        if initial:
            self._age(record, disposed, created)
        self.records[tid] = record
        self.ever_instansi[tid] = {data.INSTANSI}
        return record

    # The helpers below draw from the seeded RNG in the order the record's fields were
    # always drawn: the same seed keeps serving the same world.

    def _reporter(self, first: str, last: str) -> dict[str, Any]:
        rng = self.rng
        return {
            "nama": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@contoh.id"
            if rng.random() < 0.6
            else None,
            "telepon": f"08{rng.randint(1100000000, 1399999999)}" if rng.random() < 0.8 else None,
        }

    def _location(self, kecamatan: str, kampung: str) -> dict[str, Any] | None:
        rng = self.rng
        if rng.random() < 0.1:
            return None
        return {
            "provinsi": "Kalimantan Timur",
            "kabupaten": "Mahakam Ulu",
            "kecamatan": kecamatan,
            "desa": kampung,
            "lat": round(0.4 + rng.random() * 1.0, 5) if rng.random() < 0.5 else None,
            "lon": round(114.2 + rng.random() * 1.8, 5) if rng.random() < 0.5 else None,
        }

    def _attachments(self, tid: int) -> list[dict[str, Any]]:
        rng = self.rng
        found = []
        for n in range(rng.choices([0, 1, 2], [0.6, 0.3, 0.1])[0]):
            mime, ext = rng.choice(
                [("image/jpeg", "jpg"), ("image/png", "png"), ("application/pdf", "pdf")]
            )
            found.append(
                {
                    "id": f"lmp-{tid}-{n + 1}",
                    "nama": f"bukti-{n + 1}.{ext}",
                    "mime": mime,
                    "ukuran": rng.randint(2_000, 60_000),
                }
            )
        return found

    def _age(self, record: dict[str, Any], disposed: datetime, created: datetime) -> None:
        """Give an initial complaint a plausible history, all of it before the anchor."""
        rng = self.rng
        roll = rng.random()
        anchor = self.anchor
        # Squeeze the history into the time between submission and the anchor.
        span = max(60.0, (anchor - created).total_seconds() - 60)
        moment = min(disposed, created + timedelta(seconds=span * 0.2))
        record["disposisi"][0]["tanggal"] = moment
        if record["batas_tindak_lanjut"] is not None:  # the deadline follows the disposition
            record["batas_tindak_lanjut"] = add_working_days(moment, 5)
        step = span * 0.8 / 4
        unit = record["disposisi"][0]["unit_id"]
        if roll > 0.45:
            moment += timedelta(seconds=step * rng.random())
            self.append_follow_up(
                record,
                "instansi",
                unit,
                "diproses",
                "Laporan sudah kami terima dan sedang ditindaklanjuti.",
                moment,
            )
            record["status"] = "ditindaklanjuti"
        if roll > 0.7:
            moment += timedelta(seconds=step * rng.random())
            self.append_follow_up(
                record,
                "instansi",
                unit,
                "selesai",
                "Perbaikan sudah dilaksanakan. Terima kasih atas laporannya.",
                moment,
            )
            record["status"] = "selesai"
        if roll > 0.85:
            record["status"] = "ditutup"
        if 0.2 < roll < 0.25:
            moment += timedelta(seconds=step * rng.random())
            self.append_follow_up(
                record, "pelapor", None, None, rng.choice(data.REPORTER_REPLIES), moment
            )
        record["diperbarui"] = moment

    def _kategori(self, kategori_id: int) -> dict[str, Any]:
        for cid, name, parent in data.CATEGORIES:
            if cid == kategori_id:
                return {"id": cid, "nama": name, "induk_id": parent}
        raise KeyError(kategori_id)

    def disposition(self, unit_id: int, at: datetime) -> dict[str, Any]:
        """A disposition entry to ``unit_id`` (a Mahulu or a foreign unit) at ``at``."""
        if unit_id in self.units:
            name, instansi = self.units[unit_id][1], data.INSTANSI
        else:
            name, instansi = self.foreign[unit_id][1], self.foreign[unit_id][2]
        return {"unit_id": unit_id, "unit_nama": name, "instansi_id": instansi, "tanggal": at}

    def append_follow_up(
        self,
        record: dict[str, Any],
        oleh: str,
        unit_id: int | None,
        status: str | None,
        isi: str,
        at: datetime,
    ) -> dict[str, Any]:
        """Add a follow-up to ``record`` as LAPOR! would (the caller stamps ``diperbarui``)."""
        fu = {
            "id": self._next_fu,
            "oleh": oleh,
            "unit_id": unit_id,
            "status": status,
            "isi": isi,
            "dibuat": at,
        }
        self._next_fu += 1
        record["tindak_lanjut"].append(fu)
        return fu

    # -- who sees what, and moving a record -------------------------------------------------

    def visible(self, tid: int, instansi: int = data.INSTANSI) -> bool:
        """Whether the complaint is in ``instansi``'s feed (it was ever disposed to it)."""
        return instansi in self.ever_instansi.get(tid, set())

    def visible_ids(self, instansi: int = data.INSTANSI) -> list[int]:
        """The complaints in ``instansi``'s feed, oldest first."""
        return sorted(t for t in self.records if self.visible(t, instansi))

    def _touch_random(self, instansi: int) -> None:
        candidates = [tid for tid in self.records if self.visible(tid, instansi)]
        if candidates:
            self.touch(self.fault_rng.choice(candidates))

    def touch(self, tid: int) -> None:
        self.records[tid]["diperbarui"] = self._stamp()
