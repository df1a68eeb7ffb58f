"""The connector's error hierarchy, named by what the caller does next.

- ``Fatal``: stop and ask a person (bad settings, refused credentials).
- ``RetryLater``: transient; the same work will succeed later (outage, 429, busy DB).
- ``SkipRecord``: this one record cannot be processed now; quarantine it and go on.
- ``Rejected``: LAPOR! refused a follow-up for good; record the code, retry only by hand.

Errors carry identifiers (tracking id, file, field names), never record content.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""


class Fatal(ConnectorError):
    """Needs an admin: the daemon cannot make progress until a person acts."""

    exit_code = 1


class ConfigError(Fatal):
    """Invalid settings or usage (exit 2); the message names file, key and problem."""

    exit_code = 2


class AuthRefused(Fatal):
    """LAPOR! refused the client credentials (``kredensial_tidak_valid``)."""


class StorageError(Fatal):
    """The connector's database cannot be used."""


class StorageFull(StorageError):
    """The database's disk is full (SQLITE_FULL, PostgreSQL's disk_full): the transaction
    rolled back whole; the job backs off and goes on by itself once space is freed."""


class SchemaTooNew(ConfigError):
    """The database was upgraded by a newer connector than this one (exit 2)."""


class InstanceLocked(Fatal):
    """Another connector process already runs on the same storage."""


class LeaseLost(InstanceLocked):
    """This process no longer holds the instance lease: another connector took over."""


class RetryLater(ConnectorError):
    """Transient failure: back off and try again."""


class LaporUnavailable(RetryLater):
    """LAPOR! could not be reached or kept failing within the call's deadline."""

    def __init__(self, message: str, *, status: int | None = None, kode: str | None = None):
        super().__init__(message)
        self.status = status
        self.kode = kode


class CursorExpired(RetryLater):
    """The feed cursor expired (410); restart from the committed watermark."""


class VerifyFirst(RetryLater):
    """LAPOR! may have forgotten the Idempotency-Key: no more POSTs with it before reading
    the complaint for our own follow-up."""


class AnswerUnreadable(ConnectorError):
    """LAPOR! accepted a follow-up (2xx) but its answer failed validation: delivered,
    to be confirmed by reading the complaint, never re-posted in a loop."""

    def __init__(self, tracking_id: str):
        super().__init__(f"record {tracking_id}: follow-up delivered, answer unreadable")
        self.tracking_id = tracking_id


class StorageBusy(RetryLater):
    """The database was locked or restarted mid-cycle; the transaction rolled back."""


# Failures one record's data can cause while it is read or decided on: that record is
# set aside (SkipRecord, quarantine), never the rest of the page.
RECORD_ERRORS = (ValueError, TypeError, KeyError, OverflowError, RecursionError, UnicodeError)


class SkipRecord(ConnectorError):
    """One record cannot be processed; carries its id and a reason, never its content."""

    def __init__(self, tracking_id: str, reason: str, detail: str = ""):
        super().__init__(f"record {tracking_id}: {reason}{': ' + detail if detail else ''}")
        self.tracking_id = tracking_id
        self.reason = reason
        self.detail = detail


class InvalidRecord(SkipRecord):
    """A record from LAPOR! failed validation; ``detail`` names the fields."""

    def __init__(self, tracking_id: str, fields: list[str]):
        super().__init__(tracking_id, "invalid_record", "invalid fields: " + ", ".join(fields))
        self.fields = fields


class ApiError(ConnectorError):
    """An HTTP error answer from LAPOR! that is not transient."""

    def __init__(self, status: int, kode: str, rincian_fields: list[str] | None = None):
        fields = f" (fields: {', '.join(rincian_fields)})" if rincian_fields else ""
        super().__init__(f"LAPOR! answered {status} {kode}{fields}")
        self.status = status
        self.kode = kode
        self.rincian_fields = rincian_fields or []


class Rejected(ApiError):
    """A permanent refusal of a request (409, 403, 422, 400, 404): never retried automatically."""
