"""Sending: the daemon's notification job, and ``notify test``.

SMTP with aiosmtplib on the daemon's loop (timeouts on every step, so a slow server only
delays mail, never the pull or the push, which run beside it). ``smtp_host = "sandbox"``
writes each message as an ``.eml`` file under ``notify.mail_dir`` and logs its subject.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib
import structlog
from sqlalchemy import Connection

from connector.errors import ConfigError, ConnectorError
from connector.mappings import Mappings
from connector.notify import core, queue
from connector.settings import Config, NotifySettings, load_smtp_password

log = structlog.get_logger("connector.notify")
T = TypeVar("T")
Db = Callable[[Callable[[Connection], T]], Awaitable[T]]


@dataclass(frozen=True)
class Outcome:
    """``sent``; ``retry`` (4xx, a broken connection: later, with backoff); ``final`` (a
    5xx refusal of the recipient or of the message: never again)."""

    kind: str
    detail: str


def classify(exc: BaseException) -> Outcome:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return _by_code(first.code, f"{first.code} {first.message}")
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return _by_code(exc.code, f"{exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # The sender refused, a failed login: our settings, not the recipient; retried.
        return Outcome("retry", f"{exc.code} {exc.message}")
    return Outcome("retry", exc.__class__.__name__)


def _by_code(code: int, detail: str) -> Outcome:
    return Outcome("final" if 500 <= code < 600 else "retry", detail[:200])


class Transport:
    """Where messages go: an SMTP server, or the sandbox's folder."""

    def __init__(self, cfg: NotifySettings, password: str | None, mail_dir: Path):
        self.cfg, self.password, self.mail_dir = cfg, password, mail_dir

    async def send_all(
        self, messages: list[EmailMessage], before: Callable[[int], Awaitable[bool]] | None = None
    ) -> list[Outcome]:
        """One connection for all of them; a connection that fails retries the rest.
        ``before(i)`` runs once message i's recipient is accepted, just before its DATA:
        False skips it (``skipped``)."""
        if self.cfg.sandbox:
            out = []
            for i, m in enumerate(messages):
                out.append(
                    self._write(m)
                    if before is None or await before(i)
                    else Outcome("skipped", "unconfirmed")
                )
            return out
        try:
            smtp = await self._connect()
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            return [classify(exc)] * len(messages)
        out = []
        try:
            for i, m in enumerate(messages):
                try:
                    out.append(await self._one(smtp, m, i, before))
                except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                    out.append(classify(exc))
                    if not smtp.is_connected:
                        break
                    await smtp.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            pass  # the rest: retried below
        finally:
            if smtp.is_connected:
                try:
                    await smtp.quit()
                except (TimeoutError, aiosmtplib.SMTPException, OSError):
                    smtp.close()
        broken = Outcome("retry", "SMTPServerDisconnected")
        return out + [broken] * (len(messages) - len(out))

    @staticmethod
    async def _one(
        smtp: aiosmtplib.SMTP,
        m: EmailMessage,
        i: int,
        before: Callable[[int], Awaitable[bool]] | None,
    ) -> Outcome:
        # MAIL, RCPT, then the attempt's mark, then DATA: only a crash after DATA is sent
        # leaves the server's acceptance unknown.
        await smtp.mail(str(m["From"]))
        await smtp.rcpt(str(m["To"]))
        if before is not None and not await before(i):
            await smtp.rset()
            return Outcome("skipped", "unconfirmed")
        answer = await smtp.data(m.as_bytes())
        return Outcome("sent", f"{answer.code} {answer.message}"[:200])

    async def _connect(self) -> aiosmtplib.SMTP:
        cfg = self.cfg
        smtp = aiosmtplib.SMTP(
            hostname=cfg.smtp_host,
            port=cfg.port,
            timeout=cfg.timeout_s,
            use_tls=cfg.security == "tls",
            start_tls=cfg.security == "starttls",
            tls_context=ssl.create_default_context() if cfg.security != "none" else None,
        )
        await smtp.connect()
        if cfg.smtp_user:
            await smtp.login(cfg.smtp_user, self.password or "")
        return smtp

    def _write(self, m: EmailMessage) -> Outcome:
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        # Named by its Message-ID: a resend overwrites its own file.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(m["Message-ID"]).strip("<>")) + ".eml"
        tmp = self.mail_dir / (name + ".tmp")
        tmp.write_bytes(m.as_bytes())
        os.replace(tmp, self.mail_dir / name)
        log.info(
            "notify_sandbox_mail", subject=str(m["Subject"]), file=name, to=core.mask(str(m["To"]))
        )
        return Outcome("sent", f"written to {name}")


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def mail_dir(config: Config) -> Path:
    return config.resolve(config.settings.notify.mail_dir)


@dataclass
class Sender:
    """The daemon's notification job: the digest when due, then what is ready to send."""

    config: Config
    db: Db[Any]
    mappings: Callable[[], Mappings]
    now: Callable[[], datetime]
    transport: Transport
    totals: dict[str, int] = field(default_factory=lambda: {"sent": 0, "failed": 0})
    # Metrics: told the running totals as ("notify", {"sent": n, "failed": n}).
    observer: Callable[[str, dict[str, int]], None] | None = None

    async def tick(self) -> dict[str, int]:
        cfg = self.config.settings.notify
        now = self.now()
        hols = self.mappings().holidays

        def digest_tx(conn: Connection) -> int | None:  # None: no digest is due
            day = core.digest_day(now, queue.last_digest(conn), cfg.digest_at, hols)
            return None if day is None else queue.digest(conn, cfg, self.mappings(), day, now)

        if (made := await self.db(digest_tx)) is not None:
            log.info("notify_digest", messages=made)
        bundles = await self.db(lambda c: queue.claim(c, cfg, now, domain_of(cfg.from_)))
        if not bundles:
            return {"sent": 0, "failed": 0, "retry": 0}
        msgs = [
            core.message(
                cfg.from_, b.recipient, *core.render(b.notices, cfg.desk_url), b.message_id, b.at
            )
            for b in bundles
        ]

        async def before(i: int) -> bool:
            return await self.db(lambda c: queue.start(c, bundles[i].message_id, self.now()))

        outcomes = await self.transport.send_all(msgs, before)
        done = {"sent": 0, "failed": 0, "retry": 0}
        when = self.now()

        def record(conn: Connection) -> None:
            for b, o in zip(bundles, outcomes, strict=True):
                if o.kind == "skipped":
                    continue  # two copies may be out already: recorded by start()
                if o.kind == "sent":
                    queue.sent(conn, b.message_id, when)
                    done["sent"] += 1
                elif o.kind == "final" or not queue.retry(
                    conn, b.message_id, o.detail, b.attempts, when
                ):
                    if o.kind == "final":
                        queue.failed(conn, b.message_id, o.detail)
                    done["failed"] += 1
                else:
                    done["retry"] += 1

        await self.db(record)
        for b, o in zip(bundles, outcomes, strict=True):
            if o.kind not in ("sent", "skipped"):
                log.warning(
                    "notify_not_sent",
                    to=core.mask(b.recipient),
                    outcome=o.kind,
                    detail=o.detail,
                    attempts=b.attempts + 1,
                )
        self.totals["sent"] += done["sent"]
        self.totals["failed"] += done["failed"]
        if self.observer is not None:
            self.observer("notify", dict(self.totals))
        if done["sent"]:
            log.info("notify_sent", messages=done["sent"])
        return done


async def send_test(config: Config, password: str | None, to: str, now: datetime) -> Outcome:
    """``notify test ADDR``: one message, straight to the server (no table)."""
    cfg = config.settings.notify
    msg = core.trial_message(
        cfg.from_, to, cfg.desk_url, make_msgid("lapor-uji", domain=domain_of(cfg.from_)), now
    )
    return (await Transport(cfg, password, mail_dir(config)).send_all([msg]))[0]


def password_for(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The SMTP password when ``smtp_user`` is set (the daemon refuses to start without
    it: exit 2, as for every missing credential)."""
    cfg = config.settings.notify
    if not cfg.enabled or cfg.sandbox or not cfg.smtp_user:
        return None
    password = load_smtp_password(environ)
    if password is None:
        raise ConfigError(
            f"{config.path}: notify.smtp_user is set but SMTP_PASSWORD is not "
            "(environment, or a file in $CREDENTIALS_DIRECTORY)"
        )
    return password


def sender_for(
    config: Config,
    password: str | None,
    db: Db[Any],
    mappings: Callable[[], Mappings],
    now: Callable[[], datetime],
    observe: Callable[[str, dict[str, int]], None] | None = None,
) -> Sender:
    cfg = config.settings.notify
    return Sender(
        config, db, mappings, now, Transport(cfg, password, mail_dir(config)), observer=observe
    )


async def job(sender: Sender) -> None:
    """The scheduled tick: a failure is logged and tried again at the next one."""
    try:
        await sender.tick()
    except ConnectorError as exc:
        log.warning("notify_job_failed", error=str(exc))
