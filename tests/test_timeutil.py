from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.timeutil import (
    WIB,
    WITA,
    add_working_days,
    format_wib,
    is_working_day,
    parse_wib,
)

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))


@given(moments)
def test_wib_round_trip(moment: datetime) -> None:
    assert parse_wib(format_wib(moment)) == moment


@given(moments)
def test_parsed_wib_is_aware_utc_seven_hours_behind_the_wall_clock(moment: datetime) -> None:
    text = format_wib(moment)
    parsed = parse_wib(text)
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)
    naive = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    assert naive - parsed.replace(tzinfo=None) == timedelta(hours=7)


@given(moments, moments)
def test_wire_strings_sort_like_instants(a: datetime, b: datetime) -> None:
    assert (format_wib(a) < format_wib(b)) == (a < b)


@pytest.mark.parametrize(
    "bad",
    [
        "2026-11-27T10:00:00",
        "27/11/2026 10:00:00",
        "",
        "2026-13-01 00:00:00",
        "2026-11-27 10:00",
        "2026-11-27 10:00:00+07",
    ],
)
def test_parse_wib_rejects_other_shapes(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_wib(bad)


def test_format_refuses_naive() -> None:
    with pytest.raises(ValueError):
        format_wib(datetime(2026, 1, 1))


def test_working_days_skip_weekends_holidays_and_cuti_bersama() -> None:
    assert not is_working_day(date(2026, 11, 28))  # Saturday
    assert not is_working_day(date(2026, 8, 17))  # Independence Day
    assert not is_working_day(date(2026, 12, 24))  # cuti bersama Natal
    assert is_working_day(date(2026, 11, 27))


def test_five_working_days_over_christmas_shown_in_wita() -> None:
    # Disposed Monday 21 Dec 2026 10:00 WITA: 22, 23 work; 24 cuti bersama, 25 Natal,
    # 26-27 weekend; 28, 29, 30 work -> due end of Wednesday 30 Dec WITA.
    disposed = datetime(2026, 12, 21, 10, 0, tzinfo=WITA)
    due = add_working_days(disposed, 5)
    assert due.astimezone(WITA) == datetime(2026, 12, 30, 23, 59, 59, tzinfo=WITA)
    assert due.tzinfo is not None


def test_wita_date_not_utc_date_decides_the_start() -> None:
    # 23:30 WITA Friday is still Friday locally though 15:30 UTC; 00:30 WITA Saturday is not.
    friday_late = datetime(2026, 11, 27, 23, 30, tzinfo=WITA)
    sat_early = datetime(2026, 11, 28, 0, 30, tzinfo=WITA)
    assert add_working_days(friday_late, 1).astimezone(WITA).date() == date(2026, 11, 30)
    assert add_working_days(sat_early, 1).astimezone(WITA).date() == date(2026, 11, 30)
    assert WIB.utcoffset(None) == timedelta(hours=7)


def test_pinned_holidays_know_the_2026_and_2027_cuti_bersama() -> None:
    # holidays>=0.105: the first release with the 2027 joint leave days.
    for day in (date(2026, 12, 24), date(2026, 3, 20), date(2027, 3, 9), date(2027, 12, 24)):
        assert day.weekday() < 5 and not is_working_day(day), day


def test_declared_days_and_working_days_between() -> None:
    from connector.timeutil import working_days_between

    monday = datetime(2026, 11, 2, 1, tzinfo=UTC)  # 09:00 WITA, a week without holidays
    assert add_working_days(monday, 1).astimezone(WITA).date() == date(2026, 11, 3)
    extra = frozenset({date(2026, 11, 3)})
    assert add_working_days(monday, 1, extra).astimezone(WITA).date() == date(2026, 11, 4)
    assert working_days_between(monday, monday + timedelta(hours=5)) == 0
    assert working_days_between(monday, monday + timedelta(days=7)) == 5
    assert working_days_between(monday, monday + timedelta(days=7), extra) == 4
