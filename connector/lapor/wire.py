"""Wire models: LAPOR!'s JSON with its Indonesian keys, validated by pydantic.

Unknown keys are ignored. Naive WIB timestamps become aware UTC. A record
that fails validation becomes an ``InvalidRecord`` naming fields, never values.
"""

from __future__ import annotations

import re
from contextlib import suppress
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from connector.errors import MALFORMED, NESTED_TOO_DEEP, InvalidRecord, TooDeep
from connector.lapor import models as m
from connector.timeutil import format_wib, parse_wib

ZERO_DATES = ("0001-01-01 00:00:00", "0000-00-00 00:00:00")
MAX_DEPTH = 32  # LAPOR!'s records nest 3 levels; anything far deeper is hostile
_SURROGATES = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def is_zero_date(value: Any) -> bool:
    return isinstance(value, str) and value.strip() in ZERO_DATES


def clean_text(text: str) -> str:
    """NUL bytes stripped, lone UTF-16 surrogates replaced by U+FFFD: same meaning,
    storable and encodable everywhere (PostgreSQL refuses NUL; UTF-8 refuses surrogates)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    return _SURROGATES.sub("\ufffd", text)


def clean(value: Any, repairs: list[str], path: str = "", depth: int = 0) -> Any:
    """A copy of decoded JSON with every string cleaned; repairs name fields, never values."""
    if depth > MAX_DEPTH:
        raise TooDeep
    if isinstance(value, str):
        fixed = clean_text(value)
        if fixed != value:
            if "\x00" in value:
                repairs.append(f"{path or '(record)'}: NUL removed")
            if _SURROGATES.search(value):
                repairs.append(f"{path or '(record)'}: lone surrogate replaced")
        return fixed
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = clean_text(str(k))
            out[key] = clean(v, repairs, f"{path}.{key}" if path else key, depth + 1)
        return out
    if isinstance(value, list):
        return [clean(v, repairs, f"{path}.{i}", depth + 1) for i, v in enumerate(value)]
    return value


def _wib(value: Any) -> datetime:
    if isinstance(value, datetime):
        raise ValueError("expected a WIB timestamp string")
    if is_zero_date(value):
        raise ValueError("zero date")
    try:
        return parse_wib(value)
    except OverflowError:  # e.g. year 1 WIB has no UTC
        raise ValueError("timestamp out of range") from None


WibTime = Annotated[datetime, BeforeValidator(_wib)]
StatusLiteral = Literal["terdisposisi", "ditindaklanjuti", "selesai", "ditutup", "diarsipkan"]
# Ids are stored as text in columns of 32 characters: 31 digits is far beyond any real id,
# and the limit holds the same on every backend (checked here, before the database).
MAX_ID = 10**31 - 1
PositiveId = Annotated[int, Field(gt=0, le=MAX_ID, strict=True)]
BoundedId = Annotated[int, Field(le=MAX_ID, ge=-MAX_ID)]
# Text that lands in bounded columns (tickets.category is 200 characters).
Name200 = Annotated[str, Field(max_length=200)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class LaporanRingkas(_Wire):
    tracking_id: PositiveId
    judul: str
    status: StatusLiteral
    diperbarui: WibTime
    unit_ids: list[Annotated[int, Field(strict=True)]]

    def to_domain(self) -> m.Summary:
        return m.Summary(
            tracking_id=str(self.tracking_id),
            status=self.status,
            updated_at=self.diperbarui,
            unit_ids=tuple(self.unit_ids),
        )


class Kategori(_Wire):
    id: int
    nama: Name200
    induk_id: int | None

    def to_domain(self) -> m.Category:
        return m.Category(id=self.id, name=self.nama, parent_id=self.induk_id)


class Pelapor(_Wire):
    nama: str
    email: str | None
    telepon: str | None


class Lokasi(_Wire):
    provinsi: str
    kabupaten: str | None
    kecamatan: str | None
    desa: str | None
    lat: float | None
    lon: float | None


class Disposisi(_Wire):
    unit_id: int
    unit_nama: str
    instansi_id: int
    tanggal: WibTime


class Lampiran(_Wire):
    id: Name200
    nama: str
    mime: str
    ukuran: Annotated[int, Field(ge=0)]
    url: str


class TindakLanjut(_Wire):
    id: BoundedId
    oleh: Literal["instansi", "pelapor", "admin"]
    unit_id: int | None
    status: str | None
    isi: str
    dibuat: WibTime


class Laporan(_Wire):
    tracking_id: PositiveId
    judul: str
    isi: str
    klasifikasi: Literal["pengaduan", "aspirasi", "permintaan_informasi"]
    kategori: Kategori
    status: StatusLiteral
    anonim: bool
    rahasia: bool
    pelapor: Pelapor | None
    sumber: Literal["web", "sms", "android", "ios", "twitter", "integrasi"]
    lokasi: Lokasi | None
    disposisi: list[Disposisi]
    lampiran: list[Lampiran]
    tindak_lanjut: list[TindakLanjut]
    dibuat: WibTime
    diperbarui: WibTime
    batas_tindak_lanjut: WibTime | None

    def to_domain(self, repairs: tuple[str, ...] = ()) -> m.Complaint:
        # Privacy: an anonymous complaint never carries identity, whatever the wire says.
        reporter = None
        if not self.anonim and self.pelapor is not None:
            reporter = m.Reporter(self.pelapor.nama, self.pelapor.email, self.pelapor.telepon)
        loc = self.lokasi
        return m.Complaint(
            tracking_id=str(self.tracking_id),
            title=self.judul,
            body=self.isi,
            classification=self.klasifikasi,
            category=self.kategori.to_domain(),
            status=self.status,
            anonymous=self.anonim,
            confidential=self.rahasia,
            reporter=reporter,
            channel=self.sumber,
            location=None
            if loc is None
            else m.Location(loc.provinsi, loc.kabupaten, loc.kecamatan, loc.desa, loc.lat, loc.lon),
            dispositions=tuple(
                m.Disposition(d.unit_id, d.unit_nama, d.instansi_id, d.tanggal)
                for d in self.disposisi
            ),
            attachments=tuple(
                m.Attachment(a.id, a.nama, a.mime, a.ukuran, a.url) for a in self.lampiran
            ),
            follow_ups=tuple(
                m.FollowUp(str(t.id), t.oleh, t.unit_id, t.status, t.isi, t.dibuat)
                for t in self.tindak_lanjut
            ),
            submitted_at=self.dibuat,
            updated_at=self.diperbarui,
            deadline=self.batas_tindak_lanjut,
            repairs=repairs,
        )


class UnitKerja(_Wire):
    id: int
    nama: str
    instansi_id: int
    induk_id: int | None
    aktif: bool

    def to_domain(self) -> m.Unit:
        return m.Unit(self.id, self.nama, self.instansi_id, self.induk_id, self.aktif)


def _lenient_wib(value: Any) -> datetime | None:
    with suppress(*MALFORMED):
        return _wib(value)
    return None


class FeedMeta(_Wire):
    kursor_berikutnya: str | None
    # Only a cap for the watermark: an unusable server clock must not stop the feed.
    waktu_server: Annotated[datetime | None, BeforeValidator(_lenient_wib)]


class TindakLanjutDibuat(_Wire):
    id: Annotated[int, Field(ge=0, le=MAX_ID)]
    tracking_id: int
    dibuat: WibTime


class Token(_Wire):
    access_token: Annotated[str, Field(min_length=1)]
    token_type: str
    expires_in: Annotated[int, Field(ge=1)]


def field_names(exc: ValidationError) -> list[str]:
    """The dotted locations of a validation error: field names only, never input values."""
    names = {".".join(str(p) for p in err["loc"]) or "(record)" for err in exc.errors()}
    return sorted(names)


def raw_tracking_id(raw: Any) -> str:
    tid = raw.get("tracking_id") if isinstance(raw, dict) else None
    if isinstance(tid, int) and not isinstance(tid, bool) and 0 < tid <= MAX_ID:
        return str(tid)
    if isinstance(tid, str) and tid.isdigit() and len(tid) < 30:
        return tid
    return m.UNIDENTIFIED


def parse_summary(raw: Any, cleaning: bool = True) -> m.Summary | m.BadSummary:
    try:
        if cleaning:
            raw = clean(raw, [])
        return LaporanRingkas.model_validate(raw).to_domain()
    except NESTED_TOO_DEEP:
        return m.BadSummary(raw_tracking_id(raw), ("(nesting too deep)",), None)
    except ValidationError as exc:
        updated = _lenient_wib(raw.get("diperbarui")) if isinstance(raw, dict) else None
        return m.BadSummary(raw_tracking_id(raw), tuple(field_names(exc)), updated)


def needs_cleaning(body: bytes) -> bool:
    """Whether a JSON answer can hold a NUL or a lone surrogate (escaped, or a raw NUL
    inside a string, which the client's lenient decoding lets through)."""
    return b"\\u0000" in body or b"\x00" in body or _ESCAPED_SURROGATE.search(body) is not None


def parse_complaint(raw: Any, expected_id: str, cleaning: bool = True) -> m.Complaint:
    """A validated complaint; repairs that keep the meaning are made and listed on it."""
    repairs: list[str] = []
    try:
        if cleaning:
            raw = clean(raw, repairs)
        if isinstance(raw, dict) and is_zero_date(raw.get("batas_tindak_lanjut")):
            raw = {**raw, "batas_tindak_lanjut": None}  # optional: a zero date means none
            repairs.append("batas_tindak_lanjut: zero date treated as absent")
        complaint = Laporan.model_validate(raw).to_domain(tuple(sorted(set(repairs))))
    except NESTED_TOO_DEEP:
        raise InvalidRecord(expected_id, ["(nesting too deep)"]) from None
    except ValidationError as exc:
        raise InvalidRecord(expected_id, field_names(exc)) from None
    if complaint.tracking_id != expected_id:
        raise InvalidRecord(expected_id, ["tracking_id"])
    return complaint


def follow_up_body(req: m.FollowUpRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "unit_id": req.unit_id,
        "status": req.status,
        "isi": clean_text(req.text),
    }
    if req.attachments:
        body["lampiran"] = [dict(a) for a in req.attachments]
    return body


def since_param(moment: datetime) -> str:
    return format_wib(moment)
