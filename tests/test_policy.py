"""Every row of the spec's error tables mapped to what the client does."""

from datetime import UTC, datetime

import pytest

from connector.lapor.policy import Outcome, backoff, classify, parse_retry_after

SPEC_ROWS = [
    # Authentication table
    (401, "kredensial_tidak_valid", Outcome.FATAL_AUTH),
    (401, "token_kedaluwarsa", Outcome.REFRESH_TOKEN),
    (401, "token_tidak_valid", Outcome.REFRESH_TOKEN),
    # Limits and transient failures
    (429, "batas_permintaan", Outcome.RETRY),
    (503, "pemeliharaan", Outcome.RETRY),
    (500, "kesalahan_server", Outcome.RETRY),
    (502, None, Outcome.RETRY),
    (504, None, Outcome.RETRY),
    # Feed
    (410, "kursor_kedaluwarsa", Outcome.CURSOR_EXPIRED),
    (400, "parameter_tidak_valid", Outcome.REJECT),
    # One complaint
    (404, "laporan_tidak_ditemukan", Outcome.REJECT),
    (403, "bukan_disposisi", Outcome.REJECT),
    # Posting a follow-up
    (201, None, Outcome.OK),
    (200, None, Outcome.OK),
    (422, "kunci_idempotensi_dipakai", Outcome.REJECT),
    (400, "kunci_idempotensi_wajib", Outcome.REJECT),
    (422, "validasi_gagal", Outcome.REJECT),
    (409, "laporan_ditutup", Outcome.REJECT),
    # Not in the tables: an unknown 401 needs a person; other 5xx are not retried.
    (401, None, Outcome.FATAL_AUTH),
    (501, None, Outcome.REJECT),
]


@pytest.mark.parametrize(("status", "kode", "outcome"), SPEC_ROWS)
def test_each_answer_has_its_outcome(status: int, kode: str | None, outcome: Outcome) -> None:
    assert classify(status, kode) is outcome


NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("100000", 300.0),  # capped
        ("Fri, 27 Nov 2026 12:00:30 GMT", 30.0),
        ("Fri, 27 Nov 2026 11:00:00 GMT", 0.0),  # in the past: go now
        ("Sat, 28 Nov 2026 12:00:00 GMT", 300.0),  # capped
        ("soon", None),
        ("", None),
        (None, None),
        ("-5", None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW, cap=300.0) == expected


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff(n, 1.0, 60.0, 0.0) for n in range(1, 10)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(delays) == 60.0
    assert backoff(3, 1.0, 60.0, 0.5) == 6.0
