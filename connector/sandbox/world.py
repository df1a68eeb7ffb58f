"""The sandbox's world: complaints, tokens, cursors and faults, in memory.

Plain synchronous code with an injectable clock and a seeded RNG, so the
app is a thin Starlette layer and tests can drive the world directly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from connector.sandbox import data
from connector.timeutil import UTC, WIB, add_working_days, format_wib, parse_wib

DEMO_CLIENTS = {"mahulu-demo": ("rahasia-demo-6411", data.INSTANSI)}
OPEN_FOR_POSTING = ("terdisposisi", "ditindaklanjuti", "selesai")


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

    def __init__(self, status: int, kode: str, pesan: str, rincian: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(pesan)
        self.status = status
        self.kode = kode
        self.pesan = pesan
        self.rincian = rincian
        self.headers = headers or {}


@dataclass
class _Token:
    instansi: int
    expires_at: float
    uses: int = 0
    requests: deque[float] = field(default_factory=deque)


@dataclass
class _Cursor:
    after: tuple[datetime, int]
    batas: int
    since: datetime | None
    issued: float


class World:
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
        self.token_ttl_s = token_ttl_s
        self._clock = clock
        self.maintenance_until = 0.0
        self.records: dict[int, dict[str, Any]] = {}
        self.ever_instansi: dict[int, set[int]] = {}
        self.tokens: dict[str, _Token] = {}
        self.cursors: dict[str, _Cursor] = {}
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
            hour=0, minute=0, second=0, microsecond=0)
        self.anchor = today.astimezone(UTC)
        for _ in range(complaints):
            self._new_complaint(today - timedelta(seconds=self.rng.randint(3600, 45 * 86400)),
                                initial=True)
        # A few complaints of other instansi only: the feed never lists them; detail is 403.
        for _ in range(3):
            record = self._new_complaint(today - timedelta(days=2), initial=True)
            record["disposisi"] = [self.disposition(6400103, today - timedelta(days=2))]
            self.ever_instansi[record["tracking_id"]] = {64}

    # -- time ---------------------------------------------------------------------------

    def now(self) -> datetime:
        ts = self._clock() + self.faults.clock_offset_s
        return datetime.fromtimestamp(int(ts), UTC)

    def summary_time(self) -> str:
        return format_wib(self.now())

    def _stamp(self) -> datetime:
        moment = self.now()
        f = self.faults
        if f.late_commit_s and self.fault_rng.random() < f.late_commit_rate:
            moment -= timedelta(seconds=f.late_commit_s)
        elif f.future_rate and self.fault_rng.random() < f.future_rate:
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
        first, last = rng.choice(data.FIRST_NAMES), rng.choice(data.LAST_NAMES)
        pelapor = None if anonim else {
            "nama": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@contoh.id"
            if rng.random() < 0.6 else None,
            "telepon": f"08{rng.randint(1100000000, 1399999999)}" if rng.random() < 0.8 else None,
        }
        disposed = created + timedelta(hours=rng.randint(2, 30)) if initial else created
        record: dict[str, Any] = {
            "tracking_id": tid,
            "judul": title.format(kampung=kampung, kecamatan=kecamatan),
            "isi": body.format(kampung=kampung, kecamatan=kecamatan),
            "klasifikasi": rng.choices(
                ["pengaduan", "aspirasi", "permintaan_informasi"], [0.75, 0.15, 0.1])[0],
            "kategori": self._kategori(kategori_id),
            "status": "terdisposisi",
            "anonim": anonim,
            "rahasia": rahasia,
            "pelapor": pelapor,
            "sumber": rng.choices(["web", "sms", "android", "ios", "twitter", "integrasi"],
                                  [0.3, 0.3, 0.25, 0.05, 0.05, 0.05])[0],
            "lokasi": None if rng.random() < 0.1 else {
                "provinsi": "Kalimantan Timur", "kabupaten": "Mahakam Ulu",
                "kecamatan": kecamatan, "desa": kampung,
                "lat": round(0.4 + rng.random() * 1.0, 5) if rng.random() < 0.5 else None,
                "lon": round(114.2 + rng.random() * 1.8, 5) if rng.random() < 0.5 else None,
            },
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
        for n in range(rng.choices([0, 1, 2], [0.6, 0.3, 0.1])[0]):
            mime, ext = rng.choice([("image/jpeg", "jpg"), ("image/png", "png"),
                                    ("application/pdf", "pdf")])
            record["lampiran"].append({
                "id": f"lmp-{tid}-{n + 1}", "nama": f"bukti-{n + 1}.{ext}", "mime": mime,
                "ukuran": rng.randint(2_000, 60_000),
            })
        if initial:
            self._age(record, disposed, created)
        self.records[tid] = record
        self.ever_instansi[tid] = {data.INSTANSI}
        return record

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
            self.append_follow_up(record, "instansi", unit, "diproses",
                            "Laporan sudah kami terima dan sedang ditindaklanjuti.", moment)
            record["status"] = "ditindaklanjuti"
        if roll > 0.7:
            moment += timedelta(seconds=step * rng.random())
            self.append_follow_up(record, "instansi", unit, "selesai",
                            "Perbaikan sudah dilaksanakan. Terima kasih atas laporannya.", moment)
            record["status"] = "selesai"
        if roll > 0.85:
            record["status"] = "ditutup"
        if 0.2 < roll < 0.25:
            moment += timedelta(seconds=step * rng.random())
            self.append_follow_up(record, "pelapor", None, None, rng.choice(data.REPORTER_REPLIES),
                            moment)
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

    def append_follow_up(self, record: dict[str, Any], oleh: str, unit_id: int | None,
                         status: str | None, isi: str, at: datetime) -> dict[str, Any]:
        """Add a follow-up to ``record`` as LAPOR! would (the caller stamps ``diperbarui``)."""
        fu = {"id": self._next_fu, "oleh": oleh, "unit_id": unit_id, "status": status,
              "isi": isi, "dibuat": at}
        self._next_fu += 1
        record["tindak_lanjut"].append(fu)
        return fu

    # -- serving --------------------------------------------------------------------------

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
            return "not_found"
        if f.truncated_rate and self.fault_rng.random() < f.truncated_rate:
            return "truncated"
        return None

    def _extra(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.faults.extra_keys:
            obj["x_versi_skema"] = "3.1"
            obj["x_catatan_internal"] = None
        return obj

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        tid = record["tracking_id"]
        out = self._extra({
            "tracking_id": tid, "judul": record["judul"], "status": record["status"],
            "diperbarui": format_wib(record["diperbarui"]),
            "unit_ids": [d["unit_id"] for d in record["disposisi"]],
        })
        if self._malformed(tid) and tid % 2 == 0:
            out["diperbarui"] = "kemarin sore"
            out["unit_ids"] = "6411001"
        return out

    def detail(self, record: dict[str, Any], base_url: str) -> dict[str, Any]:
        tid = record["tracking_id"]
        ts = format_wib
        out = self._extra({
            **{k: record[k] for k in ("tracking_id", "judul", "isi", "klasifikasi", "status",
                                      "anonim", "rahasia", "sumber")},
            "kategori": self._extra(dict(record["kategori"])),
            "pelapor": None if record["pelapor"] is None else self._extra(dict(record["pelapor"])),
            "lokasi": None if record["lokasi"] is None else self._extra(dict(record["lokasi"])),
            "disposisi": [self._extra({**d, "tanggal": ts(d["tanggal"])})
                          for d in record["disposisi"]],
            "lampiran": [self._extra({**a, "url": f"{base_url}/api/v3/lampiran/{a['id']}"})
                         for a in record["lampiran"]],
            "tindak_lanjut": [self._extra({**t, "dibuat": ts(t["dibuat"])})
                              for t in record["tindak_lanjut"]],
            "dibuat": ts(record["dibuat"]),
            "diperbarui": ts(record["diperbarui"]),
            "batas_tindak_lanjut": None if record["batas_tindak_lanjut"] is None
            else ts(record["batas_tindak_lanjut"]),
        })
        if self._malformed(tid) and tid % 2 == 1:
            out["klasifikasi"] = "keluhan"
            out["dibuat"] = "27/11/2026"
        f = self.faults
        if self._picked("zero", tid, f.zero_date_rate):
            out["batas_tindak_lanjut"] = "0001-01-01 00:00:00"
        if self._picked("surrogate", tid, f.surrogate_rate):
            out["judul"] = out["judul"][:10] + "\ud83d" + out["judul"][10:]
        if self._picked("nul", tid, f.nul_rate):
            out["isi"] = out["isi"][:5] + "\x00" + out["isi"][5:]
        return out

    def before_request(self, *, auth_call: bool = False) -> None:
        """Maintenance and random faults, applied to every API request."""
        self.requests += 1
        now = self._clock()
        if now < self.maintenance_until:
            left = max(1, int(self.maintenance_until - now))
            raise ApiFault(503, "pemeliharaan", "LAPOR! sedang dalam pemeliharaan.",
                           headers={"Retry-After": str(left)})
        f = self.faults
        if f.rate_429 and self.fault_rng.random() < f.rate_429:
            raise ApiFault(429, "batas_permintaan", "Terlalu banyak permintaan.",
                           headers={"Retry-After": str(f.retry_after_s)})
        if f.rate_5xx and self.fault_rng.random() < f.rate_5xx:
            raise ApiFault(self.fault_rng.choice([500, 502, 504]), "kesalahan_server",
                           "Kesalahan pada server.")

    def drop_answer(self) -> None:
        """A POST answer was lost: with ``down_after_drop_s``, LAPOR! then stays down."""
        if self.faults.down_after_drop_s > 0:
            self.maintenance_until = max(self.maintenance_until,
                                         self._clock() + self.faults.down_after_drop_s)

    def set_faults(self, changes: dict[str, Any]) -> None:
        self.faults.update(changes)
        if "maintenance_s" in changes:
            self.maintenance_until = self._clock() + self.faults.maintenance_s

    def issue_token(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) and body.get(k) for k in ("client_id", "client_secret")
        ):
            raise ApiFault(422, "validasi_gagal", "client_id dan client_secret wajib diisi.",
                           {"client_id": "wajib", "client_secret": "wajib"})
        known = DEMO_CLIENTS.get(body["client_id"])
        if known is None or not secrets.compare_digest(known[0], body["client_secret"]):
            raise ApiFault(401, "kredensial_tidak_valid", "Client id atau secret salah.")
        token = secrets.token_urlsafe(24)
        self.tokens[token] = _Token(known[1], self._clock() + self.token_ttl_s)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl_s}

    def authorize(self, header: str | None) -> _Token:
        if not header or not header.startswith("Bearer "):
            raise ApiFault(401, "token_tidak_valid", "Token tidak ada atau tidak sah.")
        token = self.tokens.get(header[7:])
        if token is None:
            raise ApiFault(401, "token_tidak_valid", "Token tidak dikenal.")
        now = self._clock()
        f = self.faults
        token.uses += 1
        if now >= token.expires_at or (f.token_max_uses and token.uses > f.token_max_uses):
            raise ApiFault(401, "token_kedaluwarsa", "Token sudah kedaluwarsa.")
        limit = f.rate_limit_per_minute
        if limit:
            while token.requests and now - token.requests[0] >= 60:
                token.requests.popleft()
            if len(token.requests) >= limit:
                wait = max(1, int(60 - (now - token.requests[0])) + 1)
                raise ApiFault(429, "batas_permintaan", "Batas 60 permintaan per menit.",
                               headers={"Retry-After": str(wait)})
            token.requests.append(now)
        return token

    def visible(self, tid: int, instansi: int = data.INSTANSI) -> bool:
        """Whether the complaint is in ``instansi``'s feed (it was ever disposed to it)."""
        return instansi in self.ever_instansi.get(tid, set())

    def visible_ids(self, instansi: int = data.INSTANSI) -> list[int]:
        """The complaints in ``instansi``'s feed, oldest first."""
        return sorted(t for t in self.records if self.visible(t, instansi))

    def feed(self, instansi: int, params: dict[str, str]) -> tuple[list[dict[str, Any]],
                                                                    dict[str, Any]]:
        now = self._clock()
        kursor = params.get("kursor")
        if kursor:
            cur = self.cursors.get(kursor)
            if cur is None:
                raise ApiFault(400, "parameter_tidak_valid", "Kursor tidak dikenal.")
            if now - cur.issued > self.faults.cursor_ttl_s:
                raise ApiFault(410, "kursor_kedaluwarsa", "Kursor sudah kedaluwarsa.")
            after: tuple[datetime, int] | None = cur.after
            batas, since = cur.batas, cur.since
            if self.faults.move_rate and self.fault_rng.random() < self.faults.move_rate:
                self._touch_random(instansi)
        else:
            try:
                batas = int(params.get("batas", "50"))
            except ValueError:
                raise ApiFault(400, "parameter_tidak_valid", "batas harus bilangan.",
                               {"batas": "bilangan 1..100"}) from None
            if not 1 <= batas <= 100:
                raise ApiFault(400, "parameter_tidak_valid", "batas harus 1 sampai 100.",
                               {"batas": "bilangan 1..100"})
            since = None
            if params.get("diperbarui_sejak"):
                try:
                    since = parse_wib(params["diperbarui_sejak"])
                except ValueError:
                    raise ApiFault(400, "parameter_tidak_valid",
                                   "diperbarui_sejak harus YYYY-MM-DD HH:MM:SS.",
                                   {"diperbarui_sejak": "format"}) from None
            after = None
        rows = sorted(
            ((r["diperbarui"], tid) for tid, r in self.records.items()
             if self.visible(tid, instansi)
             and (since is None or r["diperbarui"] >= since)
             and (after is None or (r["diperbarui"], tid) > after)),
        )
        page = rows[:batas]
        items = [self.summary(self.records[tid]) for _, tid in page]
        if items and self.faults.duplicate_rate and self.fault_rng.random() < \
                self.faults.duplicate_rate:
            items.insert(self.fault_rng.randrange(len(items)), dict(items[0]))
        next_cursor = None
        if len(rows) > batas:
            next_cursor = secrets.token_urlsafe(16)
            self.cursors[next_cursor] = _Cursor(page[-1], batas, since, now)
        return items, {"kursor_berikutnya": next_cursor, "waktu_server": format_wib(self.now())}

    def get(self, tid: int, instansi: int) -> dict[str, Any]:
        record = self.records.get(tid)
        if record is None:
            raise ApiFault(404, "laporan_tidak_ditemukan", "Laporan tidak ditemukan.")
        if not self.visible(tid, instansi):
            raise ApiFault(403, "bukan_disposisi", "Laporan tidak didisposisikan ke instansi Anda.")
        return record

    def post_follow_up(self, tid: int, instansi: int, key: str | None,
                       body: Any) -> tuple[int, dict[str, Any]]:
        if not key or len(key) > 128 or not all(0x21 <= ord(c) <= 0x7E for c in key):
            raise ApiFault(400, "kunci_idempotensi_wajib",
                           "Header Idempotency-Key wajib (1-128 karakter ASCII).")
        record = self.get(tid, instansi)
        fingerprint = hashlib.sha256(
            json.dumps([tid, body], sort_keys=True, ensure_ascii=True).encode()).hexdigest()
        seen = self.idempotency.get(key)
        if seen is not None and self._clock() - seen[3] > self.faults.idempotency_ttl_s:
            # The spec: after its lifetime the same key is a new key (a second follow-up).
            del self.idempotency[key]
            self.keys_forgotten += 1
            seen = None
        if seen is not None:
            if seen[0] != fingerprint:
                raise ApiFault(422, "kunci_idempotensi_dipakai",
                               "Idempotency-Key sudah dipakai untuk permintaan lain.")
            self.posts_replayed += 1
            return 200, seen[2]
        problems = _validate_follow_up(body)
        if problems:
            raise ApiFault(422, "validasi_gagal", "Isian tidak valid.", problems)
        if record["status"] not in OPEN_FOR_POSTING:
            raise ApiFault(409, "laporan_ditutup", "Laporan sudah ditutup atau diarsipkan.")
        if body["unit_id"] not in [d["unit_id"] for d in record["disposisi"]]:
            raise ApiFault(403, "bukan_disposisi", "Unit tidak memegang disposisi laporan ini.")
        stamp = self._stamp()
        fu = self.append_follow_up(record, "instansi", body["unit_id"], body["status"], body["isi"],
                             stamp)
        record["status"] = "selesai" if body["status"] == "selesai" else "ditindaklanjuti"
        record["diperbarui"] = stamp
        result = {"id": fu["id"], "tracking_id": tid, "dibuat": format_wib(stamp)}
        self.idempotency[key] = (fingerprint, tid, result, self._clock())
        self.follow_up_keys[fu["id"]] = key
        self.posts_created += 1
        return 201, result

    def attachment(self, lampiran_id: str) -> tuple[bytes, str]:
        for record in self.records.values():
            for a in record["lampiran"]:
                if a["id"] == lampiran_id:
                    seed = hashlib.sha256(lampiran_id.encode()).digest()
                    body = (seed * (a["ukuran"] // len(seed) + 1))[: a["ukuran"]]
                    return body, a["mime"]
        raise ApiFault(404, "laporan_tidak_ditemukan", "Lampiran tidak ditemukan.")

    # -- life: the generator and test hooks --------------------------------------------------

    def _touch_random(self, instansi: int) -> None:
        candidates = [tid for tid in self.records if self.visible(tid, instansi)]
        if candidates:
            self.touch(self.fault_rng.choice(candidates))

    def touch(self, tid: int) -> None:
        self.records[tid]["diperbarui"] = self._stamp()

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
            self.append_follow_up(record, "pelapor", None, None,
                            self.rng.choice(data.REPORTER_REPLIES), stamp)
        elif kind == "objection":
            self.append_follow_up(record, "pelapor", None, None, self.rng.choice(data.OBJECTIONS),
                            stamp)
            record["status"] = "ditindaklanjuti"
        elif kind in ("redispose", "redispose_out"):
            current = {d["unit_id"] for d in record["disposisi"]}
            pool = [u for u in (self.units if kind == "redispose" else self.foreign)
                    if u not in current and (kind == "redispose_out" or self.units[u][3])]
            target = unit_id if unit_id is not None else self.rng.choice(sorted(pool))
            record["disposisi"] = [self.disposition(target, stamp)]
            record["status"] = "terdisposisi"
            self.append_follow_up(record, "admin", None, None, data.ADMIN_NOTES["redispose"], stamp)
            if target in self.units:
                self.ever_instansi[tid].add(data.INSTANSI)
        elif kind == "archive":
            record["status"] = "diarsipkan"
            self.append_follow_up(record, "admin", None, "diarsipkan", data.ADMIN_NOTES["archive"],
                            stamp)
        elif kind == "close":
            record["status"] = "ditutup"
            self.append_follow_up(record, "admin", None, "ditutup", data.ADMIN_NOTES["close"],
                                  stamp)
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


def _validate_follow_up(body: Any) -> dict[str, str]:
    if not isinstance(body, dict):
        return {"body": "harus objek JSON"}
    problems: dict[str, str] = {}
    unit = body.get("unit_id")
    if not isinstance(unit, int) or isinstance(unit, bool) or unit < 1:
        problems["unit_id"] = "bilangan bulat positif"
    if body.get("status") not in ("diproses", "selesai"):
        problems["status"] = "diproses atau selesai"
    isi = body.get("isi")
    if not isinstance(isi, str) or not 1 <= len(isi) <= 5000:
        problems["isi"] = "1 sampai 5000 karakter"
    lampiran = body.get("lampiran", [])
    if not isinstance(lampiran, list) or len(lampiran) > 5:
        problems["lampiran"] = "paling banyak 5"
    else:
        for i, item in enumerate(lampiran):
            ok = isinstance(item, dict) and all(
                isinstance(item.get(k), str) and item.get(k) for k in ("nama", "mime"))
            try:
                raw = base64.b64decode(item.get("konten_base64", ""), validate=True) \
                    if ok else b""
                ok = ok and len(raw) <= 5 * 1024 * 1024
            except (ValueError, TypeError):
                ok = False
            if not ok:
                problems[f"lampiran.{i}"] = "nama, mime, konten_base64 (maks 5 MiB)"
    return problems
