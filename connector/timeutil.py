"""Time on the wire (naive WIB), in storage (UTC) and for people (WITA)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

UTC = timezone.utc  # noqa: UP017
WIB = timezone(timedelta(hours=7), "WIB")
WITA = timezone(timedelta(hours=8), "WITA")
WIRE_FORMAT = "%Y-%m-%d %H:%M:%S"
_WIRE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", re.ASCII)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_wib(text: str) -> datetime:
    """Parse a naive ``YYYY-MM-DD HH:MM:SS`` WIB string into an aware UTC datetime."""
    if not isinstance(text, str) or len(text) != 19:
        raise ValueError("expected 'YYYY-MM-DD HH:MM:SS'")
    if _WIRE.fullmatch(text):  # the usual shape: fromisoformat is ~10x cheaper than strptime
        naive = datetime.fromisoformat(text)
    else:
        naive = datetime.strptime(text, WIRE_FORMAT)
    return naive.replace(tzinfo=WIB).astimezone(UTC)


def format_wib(moment: datetime) -> str:
    """Format an aware datetime as the wire's naive WIB string (second precision)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: refuse to guess its zone")
    return moment.astimezone(WIB).strftime(WIRE_FORMAT)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; naive values (as some DB drivers return them) are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat()


def iso_wita(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).astimezone(WITA).isoformat()


@lru_cache(maxsize=64)
def _holidays(year: int) -> frozenset[date]:
    import holidays  # its country tables: only for the day arithmetic that needs them

    # "government" adds cuti bersama (joint leave days) to the public holidays.
    found = holidays.country_holidays("ID", years=year, categories=("public", "government"))
    return frozenset(found.keys())


def is_working_day(day: date, extra: frozenset[date] = frozenset()) -> bool:
    """Not a weekend, a national holiday or cuti bersama, nor a day of ``extra``
    (the regency's own declared days, from ``mappings/holidays.toml``)."""
    return day.weekday() < 5 and day not in _holidays(day.year) and day not in extra


def add_working_days(start: datetime, days: int, extra: frozenset[date] = frozenset()) -> datetime:
    """End (23:59:59 WITA) of the ``days``-th working day after ``start``'s WITA date.

    The date is Mahulu's (WITA): a disposition at 23:30 WIB is 00:30 WITA the next day,
    and the count starts from that next day.
    """
    return _working_days_after(wita_date(start), days, extra)


@lru_cache(maxsize=4096)
def _working_days_after(local: date, days: int, extra: frozenset[date]) -> datetime:
    counted = 0
    while counted < days:
        local += timedelta(days=1)
        if is_working_day(local, extra):
            counted += 1
    end = datetime.combine(local, time(23, 59, 59), tzinfo=WITA)
    return end.astimezone(UTC)


def working_days_between(
    start: datetime, end: datetime, extra: frozenset[date] = frozenset()
) -> int:
    """Working days after ``start``'s WITA date up to and including ``end``'s (0: same day)."""
    first, last = wita_date(start), wita_date(end)
    n = 0
    while first < last:
        first += timedelta(days=1)
        n += is_working_day(first, extra)
    return n


def add_calendar_days(start: datetime, days: int) -> datetime:
    """End (23:59:59 WITA) of the ``days``-th calendar day after ``start``'s WITA date."""
    end = datetime.combine(wita_date(start) + timedelta(days=days), time(23, 59, 59), tzinfo=WITA)
    return end.astimezone(UTC)


def wita_date(moment: datetime) -> date:
    return as_utc(moment).astimezone(WITA).date()


def human(moment: datetime | None) -> str:
    """A time for a person: Mahulu's clock, the zone named (``2026-11-28 08:45 WITA``)."""
    if moment is None:
        return "-"
    return as_utc(moment).astimezone(WITA).strftime("%Y-%m-%d %H:%M") + " WITA"


def human_iso(text: str | None) -> str:
    """``human`` for an ISO string as the JSON faces carry it."""
    return human(datetime.fromisoformat(text)) if text else "-"


HARI = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")
BULAN = (
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
)


def tanggal_panjang(day: date, *, weekday: bool = True) -> str:
    """A date in Bahasa Indonesia, as e-mail and reports write it: ``Senin, 7 Desember
    2026`` (without the weekday: ``7 Desember 2026``)."""
    text = f"{day.day} {BULAN[day.month - 1]} {day.year}"
    return f"{HARI[day.weekday()]}, {text}" if weekday else text
