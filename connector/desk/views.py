"""The desk's pure side: due states in words, the inbox's order and tabs, the answer
form's checks, and delivery in words. No I/O: the web layer reads, this decides.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from babel.dates import format_datetime

from connector.domain import CLOSED_STATUSES, Facts, LaporStatus, LocalStatus, OutboxState
from connector.mappings import Outbound
from connector.timeutil import WITA, as_utc, wita_date, working_days_between
from connector.tracker.builtin import MAX_REPLY

PAGE_SIZE = 50
LOCALE = "id"
# LAPOR! statuses after which the complaint is read-only on the desk.
LAPOR_FINAL = CLOSED_STATUSES
STATUS_WORDS: dict[str, str] = {
    LocalStatus.NEW: "Baru",
    LocalStatus.IN_PROGRESS: "Sedang ditangani",
    LocalStatus.RESOLVED: "Selesai",
    LocalStatus.CLOSED: "Ditutup",
}
LAPOR_WORDS: dict[str, str] = {
    LaporStatus.TERDISPOSISI: "Terdisposisi",
    LaporStatus.DITINDAKLANJUTI: "Ditindaklanjuti",
    LaporStatus.SELESAI: "Selesai",
    LaporStatus.DITUTUP: "Ditutup",
    LaporStatus.DIARSIPKAN: "Diarsipkan",
}


class Due(enum.StrEnum):
    OVERDUE = "lewat"  # no follow-up on LAPOR! and the due time has passed
    TODAY = "hari_ini"
    TOMORROW = "besok"
    LATER = "nanti"
    ANSWERED = "dijawab"  # the current period's first follow-up is on LAPOR!
    CLOSED = "ditutup"
    UNKNOWN = "tidak_diketahui"  # no clock facts (yet)


@dataclass(frozen=True)
class DueState:
    kind: Due
    due_at: datetime | None
    working_days: int  # late by (OVERDUE) or left (TODAY, TOMORROW, LATER)
    words: str


def due_state(
    facts: Facts | None, closed: bool, now: datetime, holidays: frozenset[date] = frozenset()
) -> DueState:
    """LAPOR!'s clock in words: the current period's due time, counted in working days."""
    if closed or (facts is not None and facts.closed):
        return DueState(Due.CLOSED, None, 0, "ditutup")
    if facts is None:
        return DueState(Due.UNKNOWN, None, 0, "batas belum diketahui")
    period = facts.current
    due = as_utc(period.due_at)
    if period.first_follow_up_at is not None:
        return DueState(Due.ANSWERED, due, 0, "sudah ditindaklanjuti")
    if due < now:
        late = working_days_between(due, now, holidays)
        return DueState(
            Due.OVERDUE, due, late, f"lewat {late} hari kerja" if late else "lewat batas hari ini"
        )
    left = working_days_between(now, due, holidays)
    if wita_date(due) == wita_date(now):
        return DueState(Due.TODAY, due, 0, "batas hari ini")
    if left <= 1:
        return DueState(
            Due.TOMORROW, due, left, "batas besok" if left == 1 else "batas hari kerja berikutnya"
        )
    return DueState(Due.LATER, due, left, f"{left} hari kerja lagi")


def when(moment: datetime | None, *, long: bool = False) -> str:
    """A time for an officer, in WITA: ``Senin, 7 Desember 2026 pukul 15.00 WITA``."""
    if moment is None:
        return "-"
    pattern = "EEEE, d MMMM y 'pukul' HH.mm" if long else "d MMM y, HH.mm"
    return format_datetime(as_utc(moment), pattern, tzinfo=WITA, locale=LOCALE) + " WITA"


def due_sentence(state: DueState) -> str:
    """The due time in full: ``Batas tindak lanjut: Senin, … WITA (2 hari kerja lagi)``."""
    if state.due_at is None:
        return f"Batas tindak lanjut: {state.words}"
    return f"Batas tindak lanjut: {when(state.due_at, long=True)} ({state.words})"


# -- the inbox --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxRow:
    id: int
    tracking_id: str
    agency: str
    title: str
    category: str | None
    kampung: str | None
    kecamatan: str | None
    submitted_at: datetime
    status: str
    assignee: str | None
    confidential: bool
    due: DueState
    issue_url: str | None = None  # an external tracker's issue
    hidden: bool = False  # rahasia, and this user may not open it: listed, not linked


def order_key(row: InboxRow) -> tuple[int, float, int]:
    """Overdue first (most late first), then the soonest due, then the rest (newest
    first)."""
    due = row.due
    if due.kind == Due.OVERDUE and due.due_at is not None:
        return (0, due.due_at.timestamp(), row.id)
    if due.kind in (Due.TODAY, Due.TOMORROW, Due.LATER) and due.due_at is not None:
        return (1, due.due_at.timestamp(), row.id)
    return (2, -row.submitted_at.timestamp(), -row.id)


TABS: tuple[tuple[str, str], ...] = (
    ("semua", "Semua terbuka"),
    ("lewat", "Lewat batas"),
    ("segera", "Batas hari ini dan besok"),
    ("baru", "Baru"),
    ("ditangani", "Sedang ditangani"),
    ("menunggu", "Menunggu pelapor"),
    ("saya", "Tugas saya"),
)


def in_tab(row: InboxRow, tab: str, me: str) -> bool:
    if tab == "lewat":
        return row.due.kind == Due.OVERDUE
    if tab == "segera":
        return row.due.kind in (Due.TODAY, Due.TOMORROW)
    if tab == "baru":
        return row.status == LocalStatus.NEW
    if tab == "ditangani":
        return row.status == LocalStatus.IN_PROGRESS
    if tab == "menunggu":  # answered as resolved: the reporter may still object on LAPOR!
        return row.status == LocalStatus.RESOLVED
    if tab == "saya":
        return row.assignee == me
    return True


@dataclass(frozen=True)
class Filters:
    tab: str = "semua"
    status: str = ""
    category: str = ""
    kecamatan: str = ""
    assignee: str = ""  # a login, "-" for unassigned, "" for any
    q: str = ""
    page: int = 1


def apply_filters(rows: Iterable[InboxRow], f: Filters, me: str) -> list[InboxRow]:
    out = []
    words = [w for w in f.q.casefold().split() if w]
    for r in rows:
        if not in_tab(r, f.tab, me):
            continue
        if f.status and r.status != f.status:
            continue
        if f.category and (r.category or "") != f.category:
            continue
        if f.kecamatan and (r.kecamatan or "") != f.kecamatan:
            continue
        if f.assignee == "-" and r.assignee:
            continue
        if f.assignee not in ("", "-") and r.assignee != f.assignee:
            continue
        if words and not (
            f.q.strip().upper() == r.tracking_id.upper()
            or all(w in r.title.casefold() for w in words)
        ):
            continue
        out.append(r)
    return sorted(out, key=order_key)


def tab_counts(rows: Sequence[InboxRow], me: str) -> dict[str, int]:
    return {key: sum(1 for r in rows if in_tab(r, key, me)) for key, _ in TABS}


def page_of(rows: Sequence[InboxRow], page: int) -> tuple[list[InboxRow], int]:
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    return list(rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]), pages


# -- the answer form --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The answer form as submitted (CONTRACT.md: ``status``, ``balasan``, ``catatan``,
    ``petugas``), already stripped."""

    status: str
    reply: str
    note: str
    assignee: str
    assignee_given: bool  # the field was in the form (an empty one unassigns)
    assignee_before: str = ""  # the assignee the page was drawn with ("" for none)

    @property
    def reassigns(self) -> bool:
        """The officer changed the assignee field: otherwise the form only carries it."""
        return self.assignee_given and self.assignee != self.assignee_before


@dataclass(frozen=True)
class TicketState:
    status: str
    lapor_status: str
    assignee: str | None
    version: str  # what the page was drawn from: status and the last status change


def check_answer(
    a: Answer,
    t: TicketState,
    page_version: str,
    outbound: Outbound | None,
    statuses: Sequence[str],
    officers: Sequence[str],
) -> dict[str, str]:
    """Problems by form field, in words for the officer; empty when the answer can be
    recorded. The same rules as ``tickets update`` (the tracker checks them again)."""
    problems: dict[str, str] = {}
    changes_status = bool(a.status) and a.status != t.status
    if t.lapor_status in LAPOR_FINAL:
        problems["status"] = (
            "Laporan ini sudah ditutup atau diarsipkan di LAPOR!: tidak dapat dijawab lagi."
        )
        return problems
    if a.status and a.status not in statuses:
        problems["status"] = "Pilih status dari daftar."
    if t.status == LocalStatus.CLOSED and (changes_status or a.reply):
        problems["status" if changes_status else "balasan"] = (
            "Tiket sudah ditutup: status dan balasan publik tidak dapat diubah lagi. "
            "Catatan internal tetap bisa ditambahkan."
        )
    if changes_status and page_version != t.version:
        problems["status"] = (
            "Status tiket ini sudah diubah orang lain sejak halaman dibuka "
            f"(kini: {STATUS_WORDS.get(t.status, t.status)}). Periksa "
            "riwayat di bawah, lalu kirim lagi bila masih perlu."
        )
    if len(a.reply) > MAX_REPLY:
        problems["balasan"] = (
            f"Balasan terlalu panjang: {len(a.reply)} karakter. LAPOR! "
            f"menerima paling banyak {MAX_REPLY} karakter."
        )
    if (
        changes_status
        and outbound is not None
        and outbound.requires_reply
        and not a.reply
        and "status" not in problems
    ):
        problems["balasan"] = (
            f"Status {STATUS_WORDS.get(a.status, a.status)} perlu balasan "
            "publik dengan kata-kata Anda sendiri: admin LAPOR! menolak "
            "tindak lanjut yang hanya berisi kalimat baku."
        )
    if a.reassigns and a.assignee and a.assignee not in officers:
        problems["petugas"] = "Pilih petugas dari daftar petugas OPD ini."
    if a.reassigns and (t.assignee or "") != a.assignee_before:
        problems["petugas"] = (
            "Petugas tiket ini sudah diubah orang lain sejak halaman dibuka "
            f"(kini: {t.assignee or 'belum ditugaskan'}). Periksa, lalu "
            "kirim lagi bila masih perlu."
        )
    assign_changes = a.reassigns and (a.assignee or None) != t.assignee
    if not problems and not (changes_status or a.reply or a.note or assign_changes):
        problems["balasan"] = (
            "Tidak ada yang disimpan: pilih status baru, tulis balasan "
            "atau catatan, atau ubah petugas."
        )
    return problems


# -- delivery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    state: str  # waiting | sent | refused | dismissed | none
    words: str


def delivery(
    state: str | None, sent_at: datetime | None, error: str | None, dismiss_reason: str | None
) -> Delivery:
    """An officer's public reply or status change, as the outbox has it."""
    if state is None:
        return Delivery(
            "none", "Tidak dikirim ke LAPOR! (tidak ada tindak lanjut untuk status ini)."
        )
    if state in (OutboxState.PENDING, OutboxState.UNCONFIRMED):
        return Delivery("waiting", "Menunggu dikirim ke LAPOR! (biasanya dalam satu menit).")
    if state == OutboxState.SENT:
        return Delivery("sent", f"Terkirim ke LAPOR! pada {when(sent_at)}.")
    if state == OutboxState.DISMISSED:
        return Delivery(
            "dismissed",
            "Tidak dikirim: dibatalkan oleh operator"
            + (f" ({dismiss_reason})." if dismiss_reason else "."),
        )
    return Delivery(
        "refused",
        f"Ditolak LAPOR! ({error or 'tanpa alasan'}). Hubungi "
        "operator konektor: ia dapat mengirim ulang setelah "
        "masalahnya diperbaiki.",
    )


def anonymous_name(index: int, mime: str) -> str:
    """An attachment's name for an anonymous complaint: never the uploaded name."""
    ext = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}.get(mime, "bin")
    return f"lampiran-{index}.{ext}"


def wita_today(now: datetime) -> date:
    return now.astimezone(WITA).date()
