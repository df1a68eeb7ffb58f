"""A follow-up posted to the sandbox: validation, idempotency keys (remembered for
``idempotency_ttl_s``), who may post, and what it does to the complaint."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from connector.sandbox.faults import ApiFault
from connector.sandbox.feed import Feed
from connector.timeutil import format_wib

OPEN_FOR_POSTING = ("terdisposisi", "ditindaklanjuti", "selesai")


class Posting(Feed):
    """``POST /laporan/{id}/tindak-lanjut``."""

    def post_follow_up(
        self, tid: int, instansi: int, key: str | None, body: Any
    ) -> tuple[int, dict[str, Any]]:
        if not key or len(key) > 128 or not all(0x21 <= ord(c) <= 0x7E for c in key):
            raise ApiFault(
                400,
                "kunci_idempotensi_wajib",
                "Header Idempotency-Key wajib (1-128 karakter ASCII).",
            )
        record = self.get(tid, instansi)
        fingerprint = hashlib.sha256(
            json.dumps([tid, body], sort_keys=True, ensure_ascii=True).encode()
        ).hexdigest()
        seen = self.idempotency.get(key)
        if seen is not None and self._clock() - seen[3] > self.faults.idempotency_ttl_s:
            # The spec: after its lifetime the same key is a new key (a second follow-up).
            del self.idempotency[key]
            self.keys_forgotten += 1
            seen = None
        if seen is not None:
            if seen[0] != fingerprint:
                raise ApiFault(
                    422,
                    "kunci_idempotensi_dipakai",
                    "Idempotency-Key sudah dipakai untuk permintaan lain.",
                )
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
        fu = self.append_follow_up(
            record, "instansi", body["unit_id"], body["status"], body["isi"], stamp
        )
        record["status"] = "selesai" if body["status"] == "selesai" else "ditindaklanjuti"
        record["diperbarui"] = stamp
        result = {"id": fu["id"], "tracking_id": tid, "dibuat": format_wib(stamp)}
        self.idempotency[key] = (fingerprint, tid, result, self._clock())
        self.follow_up_keys[fu["id"]] = key
        self.posts_created += 1
        return 201, result


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
                isinstance(item.get(k), str) and item.get(k) for k in ("nama", "mime")
            )
            try:
                raw = base64.b64decode(item.get("konten_base64", ""), validate=True) if ok else b""
                ok = ok and len(raw) <= 5 * 1024 * 1024
            except (ValueError, TypeError):
                ok = False
            if not ok:
                problems[f"lampiran.{i}"] = "nama, mime, konten_base64 (maks 5 MiB)"
    return problems
