"""What the sandbox serves to read: the feed with its cursors, a complaint's summary and
detail (with the faults that dirty them), attachments."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from connector.sandbox.faults import ApiFault
from connector.sandbox.habits import Habits
from connector.sandbox.model import Cursor
from connector.timeutil import format_wib, parse_wib


class Feed(Habits):
    """The read side of the API: ``/laporan``, ``/laporan/{id}``, ``/lampiran/{id}``."""

    def feed(
        self, instansi: int, params: dict[str, str]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        now = self._clock()
        kursor = params.get("kursor")
        if kursor:
            cur = self.cursors.get(kursor)
            if cur is None:
                raise ApiFault(400, "parameter_tidak_valid", "Kursor tidak dikenal.")
            if now - cur.issued > self.faults.cursor_ttl_s:
                self.fired["cursor_ttl_s"] += 1
                raise ApiFault(410, "kursor_kedaluwarsa", "Kursor sudah kedaluwarsa.")
            after: tuple[datetime, int] | None = cur.after
            batas, since = cur.batas, cur.since
            if self.faults.move_rate and self.fault_rng.random() < self.faults.move_rate:
                self.fired["move_rate"] += 1
                self._touch_random(instansi)
        else:
            try:
                batas = int(params.get("batas", "50"))
            except ValueError:
                raise ApiFault(
                    400,
                    "parameter_tidak_valid",
                    "batas harus bilangan.",
                    {"batas": "bilangan 1..100"},
                ) from None
            if not 1 <= batas <= 100:
                raise ApiFault(
                    400,
                    "parameter_tidak_valid",
                    "batas harus 1 sampai 100.",
                    {"batas": "bilangan 1..100"},
                )
            since = None
            if params.get("diperbarui_sejak"):
                try:
                    since = parse_wib(params["diperbarui_sejak"])
                except ValueError:
                    raise ApiFault(
                        400,
                        "parameter_tidak_valid",
                        "diperbarui_sejak harus YYYY-MM-DD HH:MM:SS.",
                        {"diperbarui_sejak": "format"},
                    ) from None
            after = None
        rows = sorted(
            (
                (r["diperbarui"], tid)
                for tid, r in self.records.items()
                if self.visible(tid, instansi)
                and (since is None or r["diperbarui"] >= since)
                and (after is None or (r["diperbarui"], tid) > after)
            ),
        )
        page = rows[:batas]
        items = [self.summary(self.records[tid]) for _, tid in page]
        if (
            items
            and self.faults.duplicate_rate
            and self.fault_rng.random() < self.faults.duplicate_rate
        ):
            self.fired["duplicate_rate"] += 1
            items.insert(self.fault_rng.randrange(len(items)), dict(items[0]))
        next_cursor = None
        if len(rows) > batas:
            next_cursor = secrets.token_urlsafe(16)
            self.cursors[next_cursor] = Cursor(page[-1], batas, since, now)
        return items, {"kursor_berikutnya": next_cursor, "waktu_server": format_wib(self.now())}

    def summary(self, record: dict[str, Any]) -> dict[str, Any]:
        tid = record["tracking_id"]
        out = self._extra(
            {
                "tracking_id": tid,
                "judul": record["judul"],
                "status": record["status"],
                "diperbarui": format_wib(record["diperbarui"]),
                "unit_ids": [d["unit_id"] for d in record["disposisi"]],
            }
        )
        if self._malformed(tid) and tid % 2 == 0:
            self.fired["malformed_rate"] += 1
            out["diperbarui"] = "kemarin sore"
            out["unit_ids"] = "6411001"
        return out

    def detail(self, record: dict[str, Any], base_url: str) -> dict[str, Any]:
        tid = record["tracking_id"]
        ts = format_wib
        out = self._extra(
            {
                **{
                    k: record[k]
                    for k in (
                        "tracking_id",
                        "judul",
                        "isi",
                        "klasifikasi",
                        "status",
                        "anonim",
                        "rahasia",
                        "sumber",
                    )
                },
                "kategori": self._extra(dict(record["kategori"])),
                "pelapor": None
                if record["pelapor"] is None
                else self._extra(dict(record["pelapor"])),
                "lokasi": None if record["lokasi"] is None else self._extra(dict(record["lokasi"])),
                "disposisi": [
                    self._extra({**d, "tanggal": ts(d["tanggal"])}) for d in record["disposisi"]
                ],
                "lampiran": [
                    self._extra({**a, "url": f"{base_url}/api/v3/lampiran/{a['id']}"})
                    for a in record["lampiran"]
                ],
                "tindak_lanjut": [
                    self._extra({**t, "dibuat": ts(t["dibuat"])}) for t in record["tindak_lanjut"]
                ],
                "dibuat": ts(record["dibuat"]),
                "diperbarui": ts(record["diperbarui"]),
                "batas_tindak_lanjut": None
                if record["batas_tindak_lanjut"] is None
                else ts(record["batas_tindak_lanjut"]),
            }
        )
        if self._malformed(tid) and tid % 2 == 1:
            self.fired["malformed_rate"] += 1
            out["klasifikasi"] = "keluhan"
            out["dibuat"] = "27/11/2026"
        f = self.faults
        if self._picked("zero", tid, f.zero_date_rate):
            self.fired["zero_date_rate"] += 1
            out["batas_tindak_lanjut"] = "0001-01-01 00:00:00"
        if self._picked("surrogate", tid, f.surrogate_rate):
            self.fired["surrogate_rate"] += 1
            out["judul"] = out["judul"][:10] + "\ud83d" + out["judul"][10:]
        if self._picked("nul", tid, f.nul_rate):
            self.fired["nul_rate"] += 1
            out["isi"] = out["isi"][:5] + "\x00" + out["isi"][5:]
        return out

    def get(self, tid: int, instansi: int) -> dict[str, Any]:
        record = self.records.get(tid)
        if record is None:
            raise ApiFault(404, "laporan_tidak_ditemukan", "Laporan tidak ditemukan.")
        if not self.visible(tid, instansi):
            raise ApiFault(403, "bukan_disposisi", "Laporan tidak didisposisikan ke instansi Anda.")
        return record

    def attachment(self, lampiran_id: str) -> tuple[bytes, str]:
        for record in self.records.values():
            for a in record["lampiran"]:
                if a["id"] == lampiran_id:
                    seed = hashlib.sha256(lampiran_id.encode()).digest()
                    body = (seed * (a["ukuran"] // len(seed) + 1))[: a["ukuran"]]
                    return body, a["mime"]
        raise ApiFault(404, "laporan_tidak_ditemukan", "Lampiran tidak ditemukan.")
