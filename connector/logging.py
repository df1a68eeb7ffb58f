"""structlog set-up and the redaction processor.

Redaction is a pure function over the event dict, so tests feed it dicts and
assert on what comes out. It is allow-by-shape: free text survives only under
a few keys the connector fills itself (event names, its own error messages);
everything else must look like an identifier, and identity patterns (emails,
phone numbers, bearer tokens, configured secrets) are masked anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import traceback
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

from connector.errors import ConnectorError
from connector.settings import Config, load_credentials

REDACTED = "[redacted]"
DENY_KEYS = frozenset(
    {
        "isi",
        "body",
        "text",
        "reply",
        "note",
        "judul",
        "title",
        "pelapor",
        "reporter",
        "nama",
        "name",
        "email",
        "telepon",
        "phone",
        "token",
        "access_token",
        "client_secret",
        "secret",
        "password",
        "authorization",
        "credentials",
        "konten_base64",
        "content",
        "message",
        "lokasi",
        "location",
    }
)
# Keys whose free text the connector composes itself from ids, codes and field names.
TEXT_KEYS = frozenset(
    {
        "event",
        "error",
        "detail",
        "logger",
        "level",
        "timestamp",
        "hint",
        "mapping_error",
        "exception",
        "path",
        "file",
        "summary",
    }
)
_SAFE_SHAPE = re.compile(r"^[\w\-.:/@+=,\[\]#]{0,100}$")
# Short identifiers that cannot hold an email, a phone number, a token or a secret.
_PLAIN = re.compile(r"^(?!\+?62|0)[\w\-.:]*$")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"(?<!\d)(\+?62|0)8\d{7,12}(?!\d)")
_BEARER = re.compile(r"(?i)bearer\s+[\w\-.~+/=]+")
_TOKENISH = re.compile(r"(?<![\w-])(?=[\w-]*[A-Z])(?=[\w-]*[a-z])(?=[\w-]*\d)[\w-]{20,}(?![\w-])")


class Redactor:
    """The redaction processor. ``secrets`` are masked wherever they appear."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        exc_info = event.pop("exc_info", None)
        if exc_info:
            event["exception"] = _format_exception(exc_info)
        return {k: self._value(k, v) for k, v in event.items()}

    def _value(self, key: str, value: Any) -> Any:
        if key.lower() in DENY_KEYS:
            return REDACTED
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, dict):
            return {k: self._value(str(k), v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self._value(key, v) for v in value]
        text = value if isinstance(value, str) else str(value)
        if key not in TEXT_KEYS and not _SAFE_SHAPE.match(text):
            return REDACTED
        return self._mask(text)

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        if len(text) < 20 and _PLAIN.match(text):
            return text  # ids, codes, numbers: nothing else to mask (the hot path)
        text = _BEARER.sub("Bearer " + REDACTED, text)
        text = _EMAIL.sub(REDACTED, text)
        text = _PHONE.sub(REDACTED, text)
        return _TOKENISH.sub(REDACTED, text)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text the connector shows outside the logs (``sync failed``, ``status``,
    ``/healthz``) masked as the logs mask it: LAPOR!'s own words can carry a token."""
    return Redactor(secrets)._mask(text)


def _format_exception(exc_info: Any) -> str:
    """Traceback frames (our code) and the exception type; a message only if it is ours."""
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    etype, exc, tb = exc_info
    if etype is None:
        return ""
    # Locations only: a source line could quote anything, so it is left out.
    frames = "".join(
        f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in traceback.extract_tb(tb)
    )
    message = str(exc) if isinstance(exc, ConnectorError) else "[message redacted]"
    return f"{frames}{etype.__name__}: {message}"


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at the time of writing (it may be replaced later)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(
    level: str = "info",
    fmt: str = "auto",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog once per process: JSON lines or a coloured console."""
    import structlog  # here: a command that only reads the database never logs

    out: Any = stream or _CurrentStderr()
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    redactor = Redactor(secrets)
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redactor,
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through stdlib (uvicorn, apscheduler, httpx) go through the same
    # redaction and renderer, so a library's traceback cannot carry complaint text either.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "skipped: maximum number of running instances" is by design (cycles never overlap).
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def configure_for(config: Config) -> None:
    """Logging as the settings ask, with the client secret masked (the CLI and the daemon)."""
    secret = ""
    with contextlib.suppress(ConnectorError):
        secret = load_credentials(config).client_secret
    configure(config.settings.log.level, config.settings.log.format, secrets=[secret])
