"""The connector's error hierarchy, named by what the caller does next.

Every exception the connector raises on purpose is defined here, under one of four
what-next bases:

- ``Fatal``: stop and ask a person (bad settings, refused credentials).
- ``RetryLater``: transient; the same work will succeed later (outage, 429, busy DB).
- ``SkipRecord``: this one record cannot be processed now; set it aside and go on.
- ``Refused``: refused for good as asked; say why to whoever asked, retry only by hand
  (``Rejected`` is LAPOR!'s refusal).

The tree (``[OSError]``, ``[ValueError]``: also that built-in, for callers that catch it)::

    ConnectorError
     ├── Fatal                        exit 1
     │    ├── ConfigError             exit 2: settings, usage
     │    │    ├── SchemaTooNew       the database is newer than this connector
     │    │    ├── MappingError       the mapping files; ``problems`` ready to print
     │    │    ├── NotRegularFile     [OSError] a mapping path that is no regular file
     │    │    └── FileTooLarge       [OSError] a mapping file over its size limit
     │    ├── AuthRefused             LAPOR! refused the client credentials
     │    ├── RedmineAuthRefused      Redmine refused the API key
     │    ├── StorageError
     │    │    └── StorageFull
     │    └── InstanceLocked
     │         └── LeaseLost
     ├── RetryLater
     │    ├── LaporUnavailable        LAPOR! unreachable within the call's deadline
     │    ├── CursorExpired           the feed restarts from the committed watermark
     │    ├── VerifyFirst             read the complaint before any POST with this key
     │    ├── StorageBusy
     │    ├── RedmineUnavailable
     │    ├── AttemptFailed           one HTTP attempt; the client's retry loop only
     │    └── PageCut                 a feed page broke off; asked again, smaller
     ├── SkipRecord                   ``tracking_id``, ``reason``, ``detail``
     │    ├── InvalidRecord           a record failed validation; names fields
     │    ├── TooDeep                 nested deeper than any LAPOR! record
     │    └── AnswerUnreadable        a follow-up delivered, its answer unreadable:
     │                                confirmed by reading, never posted again
     └── Refused                      exit 1
          ├── InvalidRequest          exit 2: the request itself is malformed
          ├── ApiError                an HTTP error answer from LAPOR!
          │    └── Rejected           refused for good (4xx): never retried by itself
          ├── AttachmentRefused       an attachment's host or type: the client's own no
          ├── TooLarge                an answer past the size limit (wire or decoded)
          ├── UnsupportedEncoding     stacked or unknown content codings
          ├── RedmineRefused          Redmine refused or silently dropped a change
          ├── TrackerRefusal          the tracker refuses an officer action or intent
          │    └── InvalidAction      (also InvalidRequest) unknown status, bad reply
          └── AccountError            [ValueError] an account request refused
               └── InvalidAccount     (also InvalidRequest) a bad login, role, password

``exit_code`` is the command line's code for a category (CONTRACT.md: 2 is bad usage or
configuration, 1 a failure); the raiser never picks it.

Errors carry identifiers (tracking id, file, field names), never record content.

Foreign errors (httpx, SQLAlchemy, ``OSError``, what Python raises on a malformed
document) become ours at one boundary each, through ``mapped``. The sandbox's
``ApiFault`` is not ours: it is how the stand-in LAPOR! builds an error answer, and the
connector only ever sees that answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""


# -- Fatal: a person must act ------------------------------------------------------------


class Fatal(ConnectorError):
    """Needs an admin: the daemon cannot make progress until a person acts."""

    exit_code = 1


class ConfigError(Fatal):
    """Invalid settings or usage (exit 2); the message names file, key and problem."""

    exit_code = 2


class SchemaTooNew(ConfigError):
    """The database was upgraded by a newer connector than this one (exit 2)."""


class MappingError(ConfigError):
    """One or more problems in the mapping files; ``problems`` are ready to print."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class NotRegularFile(ConfigError, OSError):
    """A mapping path that is a FIFO, a device or a folder: never read (a FIFO blocks,
    /dev/zero never ends). An ``OSError`` too: unreadable like a missing file."""


class FileTooLarge(ConfigError, OSError):
    """A mapping file over ``mappings.MAX_FILE_BYTES``; an ``OSError`` too."""


class AuthRefused(Fatal):
    """LAPOR! refused the client credentials (``kredensial_tidak_valid``)."""


class RedmineAuthRefused(Fatal):
    """Redmine refused the API key (401): a person must fix REDMINE_API_KEY."""


class StorageError(Fatal):
    """The connector's database cannot be used."""


class StorageFull(StorageError):
    """The database's disk is full (SQLITE_FULL, PostgreSQL's disk_full): the transaction
    rolled back whole; the job backs off and goes on by itself once space is freed."""


class InstanceLocked(Fatal):
    """Another connector process already runs on the same storage."""


class LeaseLost(InstanceLocked):
    """This process no longer holds the instance lease: another connector took over."""


# -- RetryLater: transient ---------------------------------------------------------------


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


class StorageBusy(RetryLater):
    """The database was locked or restarted mid-cycle; the transaction rolled back."""


class RedmineUnavailable(RetryLater):
    """Redmine is down, slow or failing (timeouts, 5xx, 429): back off and try again."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class AttemptFailed(RetryLater):
    """One HTTP attempt at LAPOR! failed transiently. The client's retry loop tries again
    (after ``retry_after`` when LAPOR! named one) and, past the call's deadline, raises
    ``LaporUnavailable`` instead: it never leaves ``lapor/client.py``."""

    def __init__(
        self,
        what: str,
        status: int | None = None,
        kode: str | None = None,
        retry_after: float | None = None,
        cut: bool = False,
    ):
        super().__init__(what)
        self.what = what
        self.status = status
        self.kode = kode
        self.retry_after = retry_after
        self.cut = cut  # the answer broke off mid-way (a link that drops long answers)


class PageCut(RetryLater):
    """A feed page broke off and a smaller one may pass: the feed asks again at once."""


# -- SkipRecord: this record alone -------------------------------------------------------

# Failures one record's data can cause while it is read or decided on: that record is
# set aside (SkipRecord, quarantine), never the rest of the page. Data errors only: a
# KeyError or TypeError is a bug of ours and fails the cycle.
RECORD_ERRORS = (ValueError, OverflowError, RecursionError, UnicodeError)


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


class TooDeep(SkipRecord):
    """A JSON value nested deeper than any LAPOR! record. Raised while cleaning, before
    the record's id is known: the parser names the record (an ``InvalidRecord``)."""

    def __init__(self) -> None:
        super().__init__("(not yet known)", "invalid_record", "invalid fields: (nesting too deep)")


# Nesting too deep, found by our own bound or by Python's.
NESTED_TOO_DEEP = (TooDeep, RecursionError)


class AnswerUnreadable(SkipRecord):
    """LAPOR! accepted a follow-up (2xx) but its answer failed validation: delivered,
    to be confirmed by reading the complaint, never re-posted in a loop."""

    def __init__(self, tracking_id: str):
        super().__init__(tracking_id, "follow-up delivered, answer unreadable")


# -- Refused: for good, as asked ---------------------------------------------------------


class Refused(ConnectorError):
    """Refused as asked: say why to whoever asked; never retried by itself."""

    exit_code = 1


class InvalidRequest(Refused):
    """The request itself is malformed (not the state it meets): exit 2, as bad usage."""

    exit_code = 2


class ApiError(Refused):
    """An HTTP error answer from LAPOR! that is not transient."""

    def __init__(self, status: int, kode: str, rincian_fields: list[str] | None = None):
        fields = f" (fields: {', '.join(rincian_fields)})" if rincian_fields else ""
        super().__init__(f"LAPOR! answered {status} {kode}{fields}")
        self.status = status
        self.kode = kode
        self.rincian_fields = rincian_fields or []


class Rejected(ApiError):
    """A permanent refusal of a request (409, 403, 422, 400, 404): never retried automatically."""


class AttachmentRefused(Refused):
    """An attachment the client refuses by itself: a link to another host (never asked
    for) or a type it was not told to accept. No LAPOR! status is to blame; ``kode`` says
    why, as a ``Rejected``'s does. Never retried by itself."""

    def __init__(self, kode: str) -> None:
        super().__init__(f"attachment refused: {kode}")
        self.kode = kode


class TooLarge(Refused):
    """An answer's decoded (or wire) size passed the limit; the client refuses it as a
    ``Rejected`` with its reason code."""


class UnsupportedEncoding(Refused):
    """More than one content coding, or one this client never asked for."""


class RedmineRefused(Refused):
    """Redmine refused or ignored a change for a reason a person must look at.

    A permission refusal (403), a missing issue or project (404), a validation error
    (422), or a change Redmine silently dropped (workflow, unknown project). Visible and
    retryable: the worker marks the intent failed, shows it in ``status`` and tries
    again on its slow schedule or by hand; it never skips it silently. ``reason`` is a
    short code; ``errors`` are Redmine's own field-level messages.
    """

    def __init__(
        self, what: str, reason: str, *, status: int | None = None, errors: Sequence[str] = ()
    ):
        detail = f": {'; '.join(errors)}" if errors else ""
        super().__init__(f"Redmine refused {what} ({reason}){detail}")
        self.what = what
        self.reason = reason
        self.status = status
        self.errors = tuple(errors)


class TrackerRefusal(Refused):
    """An officer action (or an intent) the tracker refuses: no such ticket, a closed one.

    ``exit_code`` is still given by the raise sites in ``tracker/builtin.py`` (1, or 2 for
    what ``InvalidAction`` means) until they raise ``InvalidAction`` themselves."""

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InvalidAction(TrackerRefusal, InvalidRequest):
    """An officer action that is malformed: an unknown status, an empty or too long reply."""


class AccountError(Refused, ValueError):
    """A request about an account that is refused: the login exists, or no such user."""


class InvalidAccount(AccountError, InvalidRequest):
    """An account request that is malformed: login, name, role, agency, e-mail, password."""


# -- foreign errors become ours ----------------------------------------------------------

# What Python raises when a decoded JSON document has the wrong shape for what is read
# from it (a list where a dict belongs, a missing key, a string for a number).
MALFORMED = (ValueError, KeyError, TypeError, AttributeError)

# What reading a text file raises when it is missing, unreadable or not UTF-8.
UNREADABLE = (OSError, UnicodeDecodeError)

Kinds = type[BaseException] | tuple[type[BaseException], ...]
Rules = Mapping[Kinds, Callable[[Any], BaseException]]


class mapped:  # lower case: used as a statement, like contextlib.suppress
    """Within the block, a foreign exception of a kind in ``rules`` is raised again as
    ``rules[kind](exc)`` (the first kind that matches, in order). The foreign one is not
    chained: its message may quote what it failed on. Anything else passes unchanged::

        with mapped({MALFORMED: lambda _: LaporUnavailable("LAPOR! ping answer malformed")}):
            return wire.parse_wib(data["waktu_server"])
    """

    def __init__(self, rules: Rules):
        self._rules = rules

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            return
        for kinds, make in self._rules.items():
            if isinstance(exc, kinds):
                raise make(exc) from None
