"""The daemon owns its parts: each one it opens is closed exactly once, whether the run
ends by a stop or its start-up fails half-way."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connector.errors import ConfigError, StorageError
from connector.lapor.client import LaporClient
from connector.mapping_reload import MappingHolder
from connector.mappings import LOCAL_STATUSES
from connector.metrics import Monitor
from connector.runtime import Openers, open_store
from connector.service import Daemon
from connector.settings import Config, load_config
from connector.store import Store, state
from connector.tracker.builtin import BuiltinTracker
from connector.tracker.port import TrackerPort
from tests.conftest import write_config
from tests.smtp_server import free_port

Closed = Counter[str]


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> Closed:
    """How often each kind of part was closed (the real close runs too)."""
    seen: Closed = Counter()

    def counting(cls: type, name: str, label: str) -> None:
        real = getattr(cls, name)
        if asyncio.iscoroutinefunction(real):

            async def aclose(self: Any) -> None:
                seen[label] += 1
                await real(self)

            monkeypatch.setattr(cls, name, aclose)
        else:

            def close(self: Any) -> None:
                seen[label] += 1
                real(self)

            monkeypatch.setattr(cls, name, close)

    counting(Store, "close", "store")
    counting(LaporClient, "aclose", "client")
    counting(Monitor, "stop", "metrics")
    return seen


class _Tracker(BuiltinTracker):
    closed = 0

    async def aclose(self) -> None:
        type(self).closed += 1
        await super().aclose()


def _config(tmp_path: Path, db_url: str) -> Config:
    return load_config(
        write_config(
            tmp_path / "site",
            db_url,
            sandbox="complaints = 3\n",
            settings={"metrics": {"listen": f"127.0.0.1:{free_port()}"}},
        )
    )


def _openers(
    opened: list[str], tracker: Callable[[Config, MappingHolder], TrackerPort] | None = None
) -> Openers:
    def store(config: Config) -> Store:
        s = open_store(config, lock=True)
        opened.append("store")
        return s

    def client(config: Config, world: Any) -> LaporClient:
        from connector.runtime import make_client

        c = make_client(config, world)
        opened.append("client")
        return c

    def builtin(config: Config, holder: MappingHolder) -> TrackerPort:
        opened.append("tracker")
        return _Tracker(LOCAL_STATUSES)

    return Openers(store=store, client=client, tracker=tracker or builtin)


def _lock_is_free(config: Config) -> None:
    open_store(config, lock=True).close()  # raises when a part still holds the lock


def test_a_tracker_that_fails_to_open_closes_what_was_opened_once(
    tmp_path: Path, db_url: str, closed: Closed, capsys: pytest.CaptureFixture[str]
) -> None:
    config, opened = _config(tmp_path, db_url), list[str]()

    def failing(config: Config, holder: MappingHolder) -> TrackerPort:
        raise ConfigError("tracker: cannot be opened")

    code = asyncio.run(Daemon(config, openers=_openers(opened, failing)).run())
    assert code == 2 and "error: tracker: cannot be opened" in capsys.readouterr().err
    assert opened == ["store", "client"]
    assert closed == Counter({"store": 1, "client": 1})
    _lock_is_free(config)


def test_a_start_that_fails_after_the_jobs_began_closes_every_part_once(
    tmp_path: Path, db_url: str, closed: Closed, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, opened = _config(tmp_path, db_url), list[str]()
    _Tracker.closed = 0

    def refused(conn: Any, version: str) -> None:
        raise StorageError("storage error: refused")

    monkeypatch.setattr(state, "set_mapping_version", refused)  # the first write at start
    with pytest.raises(StorageError):
        asyncio.run(Daemon(config, openers=_openers(opened)).run())
    assert opened == ["store", "client", "tracker"]
    assert closed == Counter({"store": 1, "client": 1, "metrics": 1}) and _Tracker.closed == 1
    _lock_is_free(config)


def test_a_stopped_daemon_closes_every_part_once(
    tmp_path: Path, db_url: str, closed: Closed
) -> None:
    config, opened = _config(tmp_path, db_url), list[str]()
    _Tracker.closed = 0

    async def run_then_stop() -> int:
        daemon = Daemon(config, openers=_openers(opened))
        running = asyncio.create_task(daemon.run())
        while not opened or closed:  # started, and not yet stopping
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        daemon.stop.set()
        return await running

    assert asyncio.run(run_then_stop()) == 0
    assert closed == Counter({"store": 1, "client": 1, "metrics": 1}) and _Tracker.closed == 1
    _lock_is_free(config)
