"""What a notification says and when it goes: pure functions, no I/O.

Privacy: e-mail leaves the server. A message carries the tracking id, the agency, the
due time (WITA), the desk link and the title, except for ``rahasia`` complaints ("Laporan
rahasia"). Never the complaint's text, the reporter's identity or attachments: the
``Line`` below has no field that could carry them.
"""

from __future__ import annotations

import enum
import html
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, TypedDict
from urllib.parse import quote

from connector.timeutil import WITA, as_utc, human, is_working_day, tanggal_panjang

SECRET_TITLE = "Laporan rahasia"  # noqa: S105 - a title, not a password
PREFIX = "[LAPOR! Mahulu]"
MAX_ATTEMPTS = 60  # about three days at the longest delay, then the row fails for good
MAX_DELAY_S = 3600.0


class Event(enum.StrEnum):
    NEW = "baru"  # new complaints of the user's agencies (agency mailboxes always)
    ASSIGNED = "tugas"  # a complaint assigned to me
    REPLIED = "balasan"  # the reporter replied (to the assignee, else to the agency)
    DIGEST = "ringkasan"  # the daily digest of my agencies
    REFUSED = "gagal"  # a follow-up LAPOR! refused for good (admins)


# What a desk user receives until they choose otherwise.
DEFAULT_CHOICE = frozenset({Event.ASSIGNED, Event.REPLIED, Event.DIGEST, Event.REFUSED})


class Line(TypedDict):
    """One complaint in a message: nothing else of it ever reaches e-mail."""

    tracking_id: str
    agency: str
    title: str
    due_at: str | None  # ISO, UTC


def line(
    tracking_id: str, agency: str, title: str | None, confidential: bool, due_at: datetime | None
) -> Line:
    shown = SECRET_TITLE if confidential else (title or "").strip()[:200] or "(tanpa judul)"
    return {
        "tracking_id": tracking_id,
        "agency": agency,
        "title": shown,
        "due_at": None if due_at is None else as_utc(due_at).isoformat(),
    }


def parse_choice(raw: str | None) -> frozenset[Event]:
    if raw is None:
        return DEFAULT_CHOICE
    return frozenset(Event(x) for x in raw.split(",") if x in Event.__members__.values())


def format_choice(choice: frozenset[Event]) -> str:
    return "," + ",".join(sorted(choice)) + ","


def choice_from_text(text: str) -> frozenset[Event]:
    """``users notify --receive baru,tugas`` (``""`` or ``-``: nothing); ValueError names
    the unknown word."""
    words = [w.strip() for w in text.split(",") if w.strip() and w.strip() != "-"]
    known = {str(e) for e in Event}
    for w in words:
        if w not in known:
            raise ValueError(f"unknown notification {w!r} (known: {', '.join(sorted(known))})")
    return frozenset(Event(w) for w in words)


def mask(address: str) -> str:
    """``d***@dishub.example.go.id``: enough for an operator to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def retry_delay_s(attempts: int) -> float:
    """After the n-th failed attempt: 30 s, 1, 2, 4 ... minutes, at most an hour."""
    return min(MAX_DELAY_S, 30.0 * 2 ** max(0, attempts - 1))


def digest_day(
    now: datetime, last: date | None, at: tuple[int, int], holidays: frozenset[date]
) -> date | None:
    """The WITA date whose digest is due now, or None: a working day, past ``at`` WITA,
    not yet done. A daemon started late the same morning still sends it."""
    local = as_utc(now).astimezone(WITA)
    today = local.date()
    if last is not None and last >= today:
        return None
    if not is_working_day(today, holidays) or local.time() < time(*at):
        return None
    return today


def next_working_day(day: date, holidays: frozenset[date]) -> date:
    day += timedelta(days=1)
    while not is_working_day(day, holidays):
        day += timedelta(days=1)
    return day


def end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=WITA)


# -- the message ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One stored notification as the message needs it."""

    event: Event
    agency: str | None
    payload: dict[str, Any]


def tanggal(day: date) -> str:
    return tanggal_panjang(day)


def _due(ln: Line) -> str:
    return human(datetime.fromisoformat(ln["due_at"])) if ln["due_at"] else "-"


def link(desk_url: str, tracking_id: str) -> str:
    return f"{desk_url}/tiket/{quote(tracking_id, safe='')}"


@dataclass
class _Doc:
    """Plain text and HTML written side by side."""

    desk_url: str
    text: list[str]
    html: list[str]

    def para(self, words: str) -> None:
        self.text += [words, ""]
        self.html.append(f"<p>{html.escape(words)}</p>")

    def heading(self, words: str) -> None:
        self.text += [words, "-" * len(words)]
        self.html.append(f"<h3>{html.escape(words)}</h3>")

    def lines(self, rows: list[Line]) -> None:
        self.html.append("<ul>")
        for ln in rows:
            url = link(self.desk_url, ln["tracking_id"])
            self.text += [
                f"- {ln['tracking_id']} ({ln['agency']}): {ln['title']}",
                f"  Batas tindak lanjut: {_due(ln)}",
                f"  {url}",
            ]
            self.html.append(
                f'<li><a href="{html.escape(url)}">{html.escape(ln["tracking_id"])}</a> '
                f"({html.escape(ln['agency'])}): {html.escape(ln['title'])}<br>"
                f"Batas tindak lanjut: {html.escape(_due(ln))}</li>"
            )
        self.html.append("</ul>")
        self.text.append("")


def subject(n: Notice) -> str:
    p = n.payload
    match n.event:
        case Event.NEW:
            return f"{PREFIX} {len(p['lines'])} laporan baru untuk {n.agency}"
        case Event.ASSIGNED:
            return f"{PREFIX} Laporan {p['line']['tracking_id']} ditugaskan kepada Anda"
        case Event.REPLIED:
            return f"{PREFIX} Pelapor membalas laporan {p['line']['tracking_id']}"
        case Event.DIGEST:
            return (
                f"{PREFIX} Ringkasan harian {n.agency}: {len(p['overdue'])} terlambat, "
                f"{len(p['today'])} jatuh tempo hari ini"
            )
        case Event.REFUSED:
            return f"{PREFIX} Tindak lanjut laporan {p['line']['tracking_id']} ditolak LAPOR!"
    raise ValueError(n.event)


def _section(doc: _Doc, n: Notice) -> None:
    p = n.payload
    match n.event:
        case Event.NEW:
            doc.heading(f"Laporan baru untuk {n.agency} ({len(p['lines'])})")
            doc.para("Laporan berikut baru masuk dari LAPOR! dan menunggu tindak lanjut.")
            doc.lines(p["lines"])
        case Event.ASSIGNED:
            doc.heading(f"Laporan {p['line']['tracking_id']} ditugaskan kepada Anda")
            doc.para(f"Ditugaskan oleh {p['by']}.")
            doc.lines([p["line"]])
        case Event.REPLIED:
            doc.heading(f"Pelapor membalas laporan {p['line']['tracking_id']}")
            doc.para("Balasan pelapor dapat dibaca di meja petugas.")
            doc.lines([p["line"]])
        case Event.DIGEST:
            day = date.fromisoformat(p["date"])
            doc.heading(f"Ringkasan harian {n.agency}, {tanggal(day)}")
            for key, words in (
                ("overdue", "Terlambat (melewati batas tindak lanjut)"),
                ("today", "Jatuh tempo hari ini"),
                (
                    "tomorrow",
                    "Jatuh tempo hari kerja berikutnya, "
                    + tanggal(date.fromisoformat(p["next_date"])),
                ),
            ):
                if p[key]:
                    doc.para(f"{words}: {len(p[key])}")
                    doc.lines(p[key])
        case Event.REFUSED:
            doc.heading(f"Tindak lanjut laporan {p['line']['tracking_id']} ditolak LAPOR!")
            doc.para(
                f"LAPOR! menolak tindak lanjut ini untuk selamanya (kode: {p['code']}). "
                "Periksa dengan `lapor-connector outbox list`, lalu `outbox retry` "
                "atau `outbox dismiss`."
            )
            doc.lines([p["line"]])


def merge(notices: list[Notice]) -> list[Notice]:
    """New complaints of one agency are one section, whatever the commits that wrote
    them (a backlog is read in several)."""
    out: list[Notice] = []
    new: dict[str | None, Notice] = {}
    for n in notices:
        if n.event != Event.NEW:
            out.append(n)
        elif n.agency in new:
            new[n.agency].payload["lines"].extend(n.payload["lines"])
        else:
            new[n.agency] = Notice(n.event, n.agency, {"lines": list(n.payload["lines"])})
            out.append(new[n.agency])
    return out


def render(notices: list[Notice], desk_url: str) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of one message bundling these notices."""
    notices = merge(notices)
    doc = _Doc(desk_url, [], [])
    for n in notices:
        _section(doc, n)
    doc.para(
        "Pesan ini dikirim otomatis oleh konektor LAPOR! Kabupaten Mahakam Ulu. "
        "Isi laporan dan identitas pelapor tidak pernah dikirim lewat e-mail; "
        "bukalah tautan di atas."
    )
    subj = (
        subject(notices[0])
        if len(notices) == 1
        else f"{PREFIX} {len(notices)} pemberitahuan LAPOR!"
    )
    body = (
        '<!DOCTYPE html><html lang="id"><body style="font-family:sans-serif">'
        + "".join(doc.html)
        + "</body></html>"
    )
    return subj, "\n".join(doc.text).rstrip() + "\n", body


def message(
    sender: str, recipient: str, subj: str, text: str, body: str, message_id: str, at: datetime
) -> EmailMessage:
    """The e-mail; everything in it is fixed by the stored bundle, so a resend is the same
    message with the same Message-ID."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subj
    msg["Date"] = format_datetime(as_utc(at).astimezone(WITA))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg.set_content(text)
    msg.add_alternative(body, subtype="html")
    return msg


def trial_message(
    sender: str, recipient: str, desk_url: str, message_id: str, at: datetime
) -> EmailMessage:
    text = (
        "Ini pesan uji dari konektor LAPOR! Kabupaten Mahakam Ulu.\n"
        f"Pengaturan e-mail bekerja. Meja petugas: {desk_url}\n"
    )
    body = (
        f"<p>Ini pesan uji dari konektor LAPOR! Kabupaten Mahakam Ulu.</p>"
        f"<p>Pengaturan e-mail bekerja. Meja petugas: "
        f'<a href="{html.escape(desk_url)}">{html.escape(desk_url)}</a></p>'
    )
    return message(sender, recipient, f"{PREFIX} Pesan uji", text, body, message_id, at)
