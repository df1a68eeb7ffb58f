"""Shared fixtures: a fake clock, the sandbox in-process, real SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event

from connector.lapor.client import LaporClient
from connector.sandbox import Faults, World, create_app
from connector.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Credentials
from connector.tracker.redmine_api import RedmineClient
from tests.seeds import CLOCK_ENV, frame_locals, seeds_in

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("LAPOR_TEST_PG_URL")  # set by .ci/run; without it: SQLite only
# A real Redmine 5 (`eval "$(.ci/redmine-start)"`). In CI (``CI`` set) the Redmine tests
# never skip: without a Redmine they fail, loudly.
REDMINE_URL = os.environ.get("LAPOR_TEST_REDMINE_URL")
needs_redmine = pytest.mark.skipif(
    not REDMINE_URL and not os.environ.get("CI"),
    reason='no Redmine: set LAPOR_TEST_REDMINE_URL etc. (eval "$(.ci/redmine-start)")',
)


def require_redmine() -> str:
    """The Redmine's URL; fails (never skips) when none is running."""
    if not REDMINE_URL:
        pytest.fail("no Redmine for the Redmine leg: CI must start one (.ci/redmine-start)")
    return REDMINE_URL


@contextlib.asynccontextmanager
async def redmine_clients() -> AsyncIterator[tuple[RedmineClient, RedmineClient]]:
    """The connector's and an officer's client of the test Redmine (.ci/redmine-start)."""
    url = require_redmine()
    field = int(os.environ["LAPOR_TEST_REDMINE_FIELD_ID"])
    connector = RedmineClient(url, os.environ["LAPOR_TEST_REDMINE_KEY"], tracking_field_id=field)
    officer = RedmineClient(
        url, os.environ["LAPOR_TEST_REDMINE_OFFICER_KEY"], tracking_field_id=field
    )
    async with connector, officer:
        yield connector, officer


DEMO = Credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
BASE = "http://sandbox.test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): the test's subject is SQLite itself (its file, its "
        "lock); exempt from running on every backend",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    """A failed test's report names its seeds: worlds, random generators, the fake clock."""
    report = yield
    if report.failed:
        roots = list(getattr(item, "funcargs", {}).values())
        if call.excinfo is not None:
            roots.extend(frame_locals(call.excinfo.tb))
        found = seeds_in(roots)
        if found:
            report.sections.append(("seeds", "\n".join(found)))
    return report


def pytest_report_header(config: Any) -> str:
    return (
        "storage backends: sqlite + postgresql"
        if PG_URL
        else "storage backends: sqlite only (set LAPOR_TEST_PG_URL for the PostgreSQL leg)"
    )


class FakeTime:
    """One clock for the sandbox and the client; sleeping advances it instantly."""

    def __init__(self) -> None:
        # From the wall clock (so days and holidays vary between runs), or a failed run's
        # start, which the report names (tests/seeds.py).
        pinned = os.environ.get(CLOCK_ENV)
        self.start = float(pinned) if pinned else float(int(time.time()))
        self.t = self.start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def world(fake_time: FakeTime) -> World:
    return World(seed=7, complaints=40, faults=Faults(rate_limit_per_minute=0), clock=fake_time)


def make_client(
    world: World,
    fake_time: FakeTime,
    *,
    transport: Any = None,
    creds: Credentials = DEMO,
    **kw: Any,
) -> LaporClient:
    """A client of the in-process sandbox on the fake clock; ``kw`` go to ``LaporClient``
    (``sleep=`` to watch the waits of the retries and the request budget)."""
    kw.setdefault("requests_per_minute", 0)
    kw.setdefault("sleep", fake_time.sleep)
    return LaporClient(
        BASE,
        creds,
        transport=transport or httpx.ASGITransport(app=create_app(world)),
        clock=fake_time,
        rng=lambda: 0.5,
        wall=lambda: datetime.fromtimestamp(fake_time.t, UTC),
        **kw,
    )


@pytest.fixture
def client(world: World, fake_time: FakeTime) -> LaporClient:
    return make_client(world, fake_time)


def _pg_database() -> Iterator[str]:
    import psycopg

    assert PG_URL is not None
    name = "t_" + uuid.uuid4().hex[:12]
    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
_BACKEND = pytest.StashKey[str]()  # the backend a test runs on, set by ``database``

# -- every test that opens a database runs on every backend --------------------------------
#
# A test that opens a SQLite database must take the ``db_url`` fixture (so it also runs on
# PostgreSQL), or a fixture built on ``database``, or be marked ``sqlite_only``. Seen two
# ways, both cheap: a SQLAlchemy engine connecting to SQLite in this process, and a SQLite
# file left in the test's ``tmp_path`` (a connector run as a subprocess).

_SQLITE_CONNECTS = [0]

# Tests in files being rewritten on other branches, converted when those are merged (the
# patch is in the merge notes). An entry fails once its test runs on every backend: then
# remove it. Keep this empty.
_AWAITING_CONVERSION: set[str] = set()


@event.listens_for(Engine, "connect")
def _count_sqlite(dbapi_connection: Any, record: Any) -> None:
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        _SQLITE_CONNECTS[0] += 1


def _sqlite_files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(16) == b"SQLite format 3\x00":
                    found.append(path)
    return found


@pytest.fixture(autouse=True)
def _every_backend(request: pytest.FixtureRequest) -> Iterator[None]:
    before = _SQLITE_CONNECTS[0]
    yield
    node = request.node
    backend = node.stash.get(_BACKEND, None)
    sqlite_only = node.get_closest_marker("sqlite_only") is not None
    if node.nodeid.split("[")[0] in _AWAITING_CONVERSION:
        if backend is not None or sqlite_only:
            pytest.fail(
                f"{node.nodeid} is converted now: remove it from "
                "_AWAITING_CONVERSION in tests/conftest.py",
                pytrace=False,
            )
        return
    if sqlite_only:
        return
    if backend == "sqlite":
        return
    tmp = node.funcargs.get("tmp_path")
    files = _sqlite_files(tmp) if isinstance(tmp, Path) and tmp.exists() else []
    if _SQLITE_CONNECTS[0] > before or files:
        where = f" ({', '.join(str(f.relative_to(tmp)) for f in files)})" if files else ""
        pytest.fail(
            f"{node.nodeid} opened a SQLite database{where} "
            + (f"on the {backend} leg" if backend else "without the db_url fixture")
            + ": take `db_url` so it runs on every backend, or mark it "
            "`@pytest.mark.sqlite_only(reason=...)` when SQLite itself is the subject",
            pytrace=False,
        )


@contextlib.contextmanager
def database(backend: str, tmp_path: Path, node: pytest.Item) -> Iterator[str]:
    """A fresh database on ``backend`` (one of ``BACKENDS``) for the test ``node``: for a
    fixture parametrized over more than the backends (``db_url`` is the usual way)."""
    node.stash[_BACKEND] = backend
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/var/connector.db"
    else:
        yield from _pg_database()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path, request.node) as url:
        yield url


@pytest.fixture
def another_db(db_url: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """More fresh databases on the backend of ``db_url``: a second site, a restored backup."""
    numbers = itertools.count(1)
    with contextlib.ExitStack() as stack:

        def make() -> str:
            if db_url.startswith("sqlite"):
                return f"sqlite:///{tmp_path}/var/another-{next(numbers)}.db"
            return stack.enter_context(contextlib.contextmanager(_pg_database)())

        yield make


Overrides = Mapping[str, Mapping[str, str | int | float | bool]]


def write_config(
    directory: Path,
    db_url: str,
    extra: str = "",
    *,
    sandbox: str = "",
    mappings_src: Path | None = None,
    settings: Overrides | None = None,
) -> Path:
    """A settings file and a copy of the shipped mappings in ``directory``.

    ``settings`` overrides keys by section (``{"lapor": {"page_size": 10}}``); ``extra`` is
    raw TOML appended for further sections.
    """
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(mappings_src or ROOT / "mappings", directory / "mappings", dirs_exist_ok=True)
    sections: dict[str, dict[str, str | int | float | bool]] = {
        "lapor": {"base_url": "sandbox", "requests_per_minute": 0},
        "storage": {"url": db_url},
        "log": {"level": "debug", "format": "json"},
        "sandbox": {"rate_limit_per_minute": 0},
    }
    for section, values in (settings or {}).items():
        sections.setdefault(section, {}).update(values)
    text = ""
    for section, values in sections.items():
        text += f"[{section}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
        if section == "sandbox":
            text += f"{sandbox}\n"
    path = directory / "settings.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def _toml(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    return repr(value)


def systemd_exposure(unit: Path) -> float:
    """``systemd-analyze security``'s overall exposure of a unit file (lower is better);
    skips where systemd-analyze is missing, but fails under CI."""
    import re
    import subprocess

    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI"):
            pytest.fail(f"systemd-analyze is missing: CI must rate {unit.name}'s hardening")
        pytest.skip("systemd-analyze is not installed here; the unit text was checked")
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert match, r.stdout[-500:] + r.stderr[-500:]
    return float(match.group(1))
