"""Builders shared by several test modules: tests import them from here, never from another
test module (importing one would also run its module-level set-up and re-bind its
fixtures). Sections: the core's records, LAPOR!'s wire records, loopback servers and the
client over them, the daemon as a subprocess, the desk, the operator guide."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, TypeVar, Unpack

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from connector import cli, settings
from connector.desk import accounts
from connector.desk.accounts import Role
from connector.desk.web import create_app as create_desk
from connector.lapor import models as m
from connector.lapor.client import LaporClient
from connector.mappings import load
from connector.sandbox import World, create_app
from connector.store import schema
from connector.sync import core
from tests.conftest import DEMO, ROOT
from tests.harness import Harness

T = TypeVar("T")

MAPPINGS = load(Path(__file__).resolve().parent.parent / "mappings")
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
UNITS = {6411001: 6411, 6411003: 6411, 6411777: 6411, 6400103: 64}  # 6411777: ours, unmapped


def narrow(kind: type[T], value: object) -> T:
    """``value`` as the type the test expects it to be: a failed assertion otherwise (for
    the type checker, where a test reads an attribute only one member of a union has)."""
    assert isinstance(value, kind), f"expected a {kind.__name__}, got {value!r}"
    return value


def linked(d: core.Decision) -> core.Linked:
    """A decision that keeps a link (create, update, unchanged), not one set aside."""
    assert not isinstance(d, core.SetAside), f"expected a linked decision, got {d!r}"
    return d


def complaint(
    tid: str,
    status: str,
    units: tuple[int, ...],
    fus: tuple[m.FollowUp, ...],
    at: datetime,
    deadline: datetime | None = None,
) -> m.Complaint:
    """A complaint disposed to ``units`` (keys of ``UNITS``), as a detail request reads it."""
    return m.Complaint(
        tracking_id=tid,
        title="t",
        body="b",
        classification="pengaduan",
        category=m.Category(101, "Pelayanan Puskesmas", 1),
        status=status,
        anonymous=False,
        confidential=False,
        reporter=m.Reporter("N", None, None),
        channel="web",
        location=None,
        dispositions=tuple(m.Disposition(u, "u", UNITS[u], T0) for u in units),
        attachments=(),
        follow_ups=fus,
        submitted_at=T0,
        updated_at=at,
        deadline=deadline,
    )


# -- LAPOR!'s wire records -----------------------------------------------------------------


def good_record() -> dict[str, Any]:
    """A valid detail record as LAPOR! sends it (spec field names)."""
    return {
        "tracking_id": 4100001,
        "judul": "t",
        "isi": "b",
        "klasifikasi": "pengaduan",
        "kategori": {"id": 1, "nama": "K", "induk_id": None},
        "status": "terdisposisi",
        "anonim": False,
        "rahasia": False,
        "pelapor": {"nama": "N", "email": None, "telepon": None},
        "sumber": "web",
        "lokasi": None,
        "disposisi": [
            {
                "unit_id": 6411001,
                "unit_nama": "u",
                "instansi_id": 6411,
                "tanggal": "2026-11-27 10:00:00",
            }
        ],
        "lampiran": [],
        "tindak_lanjut": [],
        "dibuat": "2026-11-27 09:00:00",
        "diperbarui": "2026-11-27 10:00:00",
        "batas_tindak_lanjut": None,
    }


# -- loopback servers, and the client over them ----------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
JSON_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def free_port() -> int:
    """A loopback port nobody listens on (at the moment of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    """GET ``url``: (status, body); (0, "") while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


@contextmanager
def served(world: World) -> Iterator[str]:
    """The sandbox app on a loopback port, in a thread of this process."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(world), host="127.0.0.1", port=port, log_level="error", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the sandbox server did not start")
            threading.Event().wait(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[str]:
    """A bare TCP server on loopback that answers with ``handle``: its base URL."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


def replying(data: bytes, seen: list[bytes] | None = None) -> Handler:
    """A server that reads each request's head (its first line noted in ``seen``),
    writes ``data`` as it is, and closes the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(head.split(b"\r\n")[0])
        writer.write(data)
        await writer.drain()
        writer.close()

    return handle


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


class Deadlines(TypedDict, total=False):
    """The client's time limits a wire test may set."""

    timeout_s: float
    call_deadline_s: float


def wire_client(
    base: str, transport: httpx.AsyncBaseTransport | None = None, **kw: Unpack[Deadlines]
) -> LaporClient:
    """A LAPOR! client on the demo credentials without a request budget or real waits."""
    return LaporClient(
        base,
        DEMO,
        transport=transport,
        requests_per_minute=0,
        sleep=no_sleep,
        rng=lambda: 0.5,
        **kw,
    )


# -- the daemon as a subprocess ---------------------------------------------------------------


class Daemon:
    """``scheduler.py`` on the site's settings, its output in a log file of the site."""

    def __init__(self, site: Path, fmt: str = "json", level: str = "debug"):
        self.site = site
        self.log = site / f"daemon-{fmt}.log"
        env = {
            **os.environ,
            "LAPOR_CONNECTOR_LOG__FORMAT": fmt,
            "LAPOR_CONNECTOR_LOG__LEVEL": level,
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scheduler.py"), "--config", str(site / "settings.toml")],
            cwd=site,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        return code, time.monotonic() - t0


def query(site: Path, sql: str) -> list[tuple[Any, ...]]:
    """``sql`` on the site's database, whichever backend; [] while it is not there yet."""
    url = tomllib.loads((site / "settings.toml").read_text("utf-8"))["storage"]["url"]
    if url.startswith("sqlite:///"):
        path = site / url.removeprefix("sqlite:///")  # relative to the site, as the daemon
        if not path.exists():
            return []
        url = f"sqlite:///{path}"
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    except DBAPIError:  # not migrated yet, or busy for a moment
        return []
    finally:
        engine.dispose()


def count(site: Path, sql: str) -> int:
    """The first column of the first row of ``sql`` (a COUNT), 0 while there is none."""
    rows = query(site, sql)
    return int(rows[0][0]) if rows else 0


# -- the desk -------------------------------------------------------------------------------

PASSWORD = "sandi-yang-panjang-1"
HOSTILE_TITLE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
HOSTILE_BODY = 'Lihat <a href="javascript:alert(3)">ini</a>\nbaris kedua'


@functools.cache
def password_hash() -> str:
    """PASSWORD's argon2id hash, made once per run (it takes a moment, on purpose)."""
    return accounts.hash_new(PASSWORD)


def add_user(
    h: Harness,
    login: str,
    role: Role,
    agencies: list[str],
    email: str | None = None,
    must_change: bool = False,
) -> None:
    """A desk account with PASSWORD."""
    h.store.run(
        lambda c: accounts.add_user(
            c,
            login,
            f"Petugas {login}",
            role,
            agencies,
            email,
            password_hash(),
            h.ctx.now(),
            must_change=must_change,
        )
    )


class Site:
    """The harness (sandbox, pull, push) and the desk over the same database."""

    def __init__(self, h: Harness):
        self.h = h
        self.app = create_desk(h.config, h.store, h.mappings, h.tracker, clock=h.ctx.now)

    def client(self, address: str = "10.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 4000))
        return httpx.AsyncClient(transport=transport, base_url="http://desk.test")

    def add_user(
        self, login: str, role: Role, agencies: list[str], must_change: bool = False
    ) -> None:
        add_user(self.h, login, role, agencies, must_change=must_change)

    def tickets(self) -> list[Any]:
        return self.h.store.run(lambda c: list(c.execute(select(schema.tickets))))

    def audit(self) -> list[Any]:
        return self.h.store.run(lambda c: list(c.execute(select(schema.desk_audit))))


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no field {name}"
    return found.group(1)


async def login(c: httpx.AsyncClient, user: str, password: str = PASSWORD) -> httpx.Response:
    page = await c.get("/masuk")
    return await c.post(
        "/masuk", data={"login": user, "password": password, "csrf": csrf_of(page.text)}
    )


# -- the operator guide ---------------------------------------------------------------------

GUIDE = ROOT / "docs" / "panduan-operator.md"
PROGRAM = "lapor-connector"
# Placeholders in prose, and what a reader would type for them.
PLACEHOLDERS = {"ID": "1", "[NOMOR]": "4511084"}


def _program_at(tokens: list[str]) -> int | None:
    """Index of the connector's own program in a shell line (not `-u lapor-connector`)."""
    if "systemctl" in tokens or (tokens and tokens[0] == "journalctl"):
        return None
    for i, t in enumerate(tokens):
        if (t == PROGRAM or t.endswith("/" + PROGRAM)) and (i == 0 or tokens[i - 1] != "-u"):
            return i if i + 1 < len(tokens) else None
    return None


def fenced_lines(text: str) -> Iterator[str]:
    """Lines of ```sh blocks, backslash continuations joined, comments dropped."""
    for block in re.findall(r"```(?:sh|bash|console)?\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line:
                yield line


def guide_commands(text: str | None = None, *, inline: bool = False) -> list[list[str]]:
    """argv (after the program) of every connector command in the guide's code."""
    text = GUIDE.read_text(encoding="utf-8") if text is None else text
    lines = list(fenced_lines(text))
    if inline:
        for span in re.findall(r"`([^`\n]*\blapor-connector [^`\n]+)`", text):
            for k, v in PLACEHOLDERS.items():
                span = re.sub(rf"(?<![\w-]){re.escape(k)}(?![\w-])", v, span)
            lines.append(span)
    out = []
    for line in lines:
        tokens = shlex.split(line)
        at = _program_at(tokens)
        if at is not None:
            out.append(tokens[at + 1 :])
    return out


def run_as_guide(
    argv: list[str], system_config: Path, cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> int:
    """A guide command as an operator types it: no --config, from some other folder."""
    monkeypatch.setattr(settings, "SYSTEM_CONFIG", system_config)
    monkeypatch.delenv(settings.CONFIG_ENV, raising=False)
    monkeypatch.chdir(cwd)
    return cli.main(argv)
