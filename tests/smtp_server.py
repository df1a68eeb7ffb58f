"""A real SMTP server on loopback (aiosmtpd, on its own thread) for the notification
tests, with answers the test chooses per recipient."""

from __future__ import annotations

import email
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.factories import free_port


@dataclass
class Received:
    rcpt: list[str]
    message: Message
    raw: str

    @property
    def text(self) -> str:
        """Every part decoded: what a reader of the message could see."""
        parts = [str(self.message["Subject"])]
        for part in self.message.walk():
            if part.get_content_maintype() == "text":
                payload = part.get_payload(decode=True)  # a leaf part's bytes
                assert isinstance(payload, bytes)
                parts.append(payload.decode(part.get_content_charset() or "utf-8"))
        return "\n".join(parts).replace("\r\n", "\n")


@dataclass
class Handler:
    received: list[Received] = field(default_factory=list)
    rcpt_answers: dict[str, list[str]] = field(default_factory=dict)  # address: answers, in turn
    data_delay_s: float = 0.0  # stored, then the 250 waits this long (a crash window)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        answers = self.rcpt_answers.get(address.lower())
        if answers:
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if not answer.startswith("250"):
                return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.content.decode("utf-8", "replace")
        with self.lock:
            self.received.append(
                Received(list(envelope.rcpt_tos), email.message_from_string(raw), raw)
            )
        if self.data_delay_s:
            import asyncio

            await asyncio.sleep(self.data_delay_s)
        return "250 2.0.0 Ok: queued"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt]


class SMTPServer:
    def __init__(self, port: int = 0) -> None:
        self.handler = Handler()
        self.port = port or free_port()
        self.controller: Controller | None = None

    def start(self) -> SMTPServer:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while len(self.handler.received) < n and time.monotonic() < end:
            time.sleep(0.02)
