"""Shared fixtures: a fake clock, the sandbox in-process, real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.lapor.client import LaporClient
from connector.sandbox import Faults, World, create_app
from connector.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Credentials

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("LAPOR_TEST_PG_URL")  # set by .ci/run; without it: SQLite only
# A real Redmine 5 (`eval "$(.ci/redmine-start)"`). In CI (``CI`` set) the Redmine tests
# never skip: without a Redmine they fail, loudly.
REDMINE_URL = os.environ.get("LAPOR_TEST_REDMINE_URL")
needs_redmine = pytest.mark.skipif(
    not REDMINE_URL and not os.environ.get("CI"),
    reason="no Redmine: set LAPOR_TEST_REDMINE_URL etc. (eval \"$(.ci/redmine-start)\")")


def require_redmine() -> str:
    """The Redmine's URL; fails (never skips) when none is running."""
    if not REDMINE_URL:
        pytest.fail("no Redmine for the Redmine leg: CI must start one (.ci/redmine-start)")
    return REDMINE_URL
DEMO = Credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
BASE = "http://sandbox.test"


def pytest_report_header(config: Any) -> str:
    return ("storage backends: sqlite + postgresql" if PG_URL else
            "storage backends: sqlite only (set LAPOR_TEST_PG_URL for the PostgreSQL leg)")


class FakeTime:
    """One clock for the sandbox and the client; sleeping advances it instantly."""

    def __init__(self) -> None:
        self.t = float(int(time.time()))
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


def make_client(world: World, fake_time: FakeTime, *, transport: Any = None,
                creds: Credentials = DEMO, **kw: Any) -> LaporClient:
    kw.setdefault("requests_per_minute", 0)
    return LaporClient(
        BASE, creds, transport=transport or httpx.ASGITransport(app=create_app(world)),
        clock=fake_time, sleep=fake_time.sleep, rng=lambda: 0.5,
        wall=lambda: datetime.fromtimestamp(fake_time.t, UTC), **kw)


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


@pytest.fixture(params=BACKENDS)
def db_url(request: Any, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/var/connector.db"
    else:
        yield from _pg_database()


Overrides = Mapping[str, Mapping[str, str | int | float | bool]]


def write_config(directory: Path, db_url: str, extra: str = "", *, sandbox: str = "",
                 mappings_src: Path | None = None, settings: Overrides | None = None) -> Path:
    """A settings file and a copy of the shipped mappings in ``directory``.

    ``settings`` overrides keys by section (``{"lapor": {"page_size": 10}}``); ``extra`` is
    raw TOML appended for further sections.
    """
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(mappings_src or ROOT / "mappings", directory / "mappings",
                    dirs_exist_ok=True)
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
