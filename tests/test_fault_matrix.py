"""The fault matrix: each row a fault against the sandbox, driven like the daemon drives it.

For every row: nothing lost, nothing duplicated (both sides), and the operator told once.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import structlog.testing
from sqlalchemy import Connection, text

from connector.daemon import Coordinator
from connector.errors import StorageBusy
from connector.sandbox import Faults, World, create_app
from connector.store import state
from tests.conftest import FakeTime, write_config
from tests.factories import free_port
from tests.harness import Harness
from tests.pgprivate import PrivatePg
from tests.pgprivate import available as pg_available
from tests.seeds import SeededRandom
from tests.waits import wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def world(fake_time: FakeTime) -> World:
    return World(seed=41, complaints=60, faults=Faults(rate_limit_per_minute=0), clock=fake_time)


@pytest.fixture
def h(tmp_path: Path, db_url: str, world: World, fake_time: FakeTime) -> Harness:
    return Harness(tmp_path / "site", db_url, world, fake_time)


@pytest.fixture
def h15(tmp_path: Path, db_url: str, world: World, fake_time: FakeTime) -> Harness:
    """Pages of 15: several pages per pull."""
    return Harness(
        tmp_path / "site", db_url, world, fake_time, settings={"lapor": {"page_size": 15}}
    )


Logs = list[MutableMapping[str, Any]]  # as structlog.testing.capture_logs gives them


async def drive(
    h: Harness, rounds: int, during: Callable[[int], Any] | None = None, officer_every: int = 2
) -> Logs:
    """Run daemon-like cycles on the fake clock; an officer acts now and then."""

    async def cycle() -> None:
        await h.pull()
        await h.push()

    coord = Coordinator("sync", cycle, 60, 900, clock=h.time, rng=lambda: 0.0)
    rng = SeededRandom(rounds)
    with structlog.testing.capture_logs() as logs:
        for r in range(rounds):
            if during:
                during(r)
            h.world.tick()
            await coord.tick()
            if r % officer_every == 0:
                try:
                    opened = [t for t in h.tickets() if t["status"] in ("new", "in_progress")]
                    if opened:
                        t = rng.choice(opened)
                        h.officer(
                            t["id"],
                            status=rng.choice(["in_progress", "resolved"]),
                            reply=rng.choice([None, f"Balasan putaran {r}."]),
                        )
                except StorageBusy:
                    pass  # the officer's command failed whole; they try again later
            h.time.t += 61
    return logs


async def settle(h: Harness, faults_off: dict[str, Any] | None = None) -> None:
    h.world.set_faults(
        {
            "rate_429": 0,
            "rate_5xx": 0,
            "maintenance_s": 0,
            "move_rate": 0,
            "late_commit_rate": 0,
            "duplicate_rate": 0,
            "drop_post_rate": 0,
            **(faults_off or {}),
        }
    )
    for _ in range(3):
        h.time.t += 3600  # past any push backoff
        await h.pull()
        await h.push()


def told_once(logs: Logs) -> None:
    events = [e["event"] for e in logs]
    assert events.count("sync_failing") <= 1
    assert events.count("sync_recovered") == events.count("sync_failing")
    assert not [e for e in logs if e.get("log_level") == "error" and e["event"] != "sync_failing"]


def whole(h: Harness) -> None:
    h.check_consistent()
    h.check_follow_ups_once()
    assert all(e["state"] in ("sent", "failed") for e in h.outbox())


class Row(NamedTuple):
    fires: str  # the knob of Faults the sandbox counts (World.fired) when the fault happens
    faults: dict[str, Any]


ROWS: dict[str, Row] = {
    "429_storm_with_retry_after": Row("rate_429", {"rate_429": 0.5, "retry_after_s": 9}),
    "500s": Row("rate_5xx", {"rate_5xx": 0.3}),
    "token_expiring_after_n_uses": Row("token_max_uses", {"token_max_uses": 3}),
    "records_moving_while_paging": Row("move_rate", {"move_rate": 1.0}),
    "late_commits": Row("late_commit_rate", {"late_commit_s": 20, "late_commit_rate": 1.0}),
    "duplicated_record_on_a_page": Row("duplicate_rate", {"duplicate_rate": 1.0}),
    # Extra keys are the default everywhere (test_client); this row: exactly the spec's keys.
    "no_extra_keys": Row("extra_keys", {"extra_keys": False}),
    "server_clock_10_min_ahead": Row("clock_offset_s", {"clock_offset_s": 600}),
    "server_clock_10_min_behind": Row("clock_offset_s", {"clock_offset_s": -600}),
    "post_answers_lost": Row("drop_post_rate", {"drop_post_rate": 1.0}),
    # Dirty data (spec: "as clean as the 1708 SMS gateway makes it"): repaired or retried,
    # never a stall; after settling, none of it is left in quarantine.
    "zero_dates": Row("zero_date_rate", {"zero_date_rate": 0.3}),
    "lone_surrogates": Row("surrogate_rate", {"surrogate_rate": 0.3}),
    "nul_bytes": Row("nul_rate", {"nul_rate": 0.3}),
    "truncated_details": Row("truncated_rate", {"truncated_rate": 0.2}),
    "404_once": Row("not_found_once_rate", {"not_found_once_rate": 0.3}),
    "records_from_a_clock_a_day_ahead": Row("future_rate", {"future_rate": 0.2, "future_s": 86400}),
}
DIRTY = {
    "zero_dates",
    "lone_surrogates",
    "nul_bytes",
    "truncated_details",
    "404_once",
    "records_from_a_clock_a_day_ahead",
}


@pytest.mark.parametrize("row", sorted(ROWS))
async def test_fault_row(h15: Harness, row: str) -> None:
    h = h15
    fires, faults = ROWS[row]
    h.world.set_faults(faults)
    logs = await drive(h, 6)
    assert h.world.fired[fires] > 0, f"{row}: the sandbox never injected it"
    told_once(logs)
    await settle(h, {k: 0.0 for k in faults if k.endswith("_rate")})
    whole(h)
    if row in DIRTY:
        assert not [q for q in h.quarantine() if q["reason"] != "outside_instansi"]
    if row == "no_extra_keys":
        some = next(iter(h.world.records.values()))
        assert not [k for k in h.world.summary(some) if k.startswith("x_")]
    if row == "records_from_a_clock_a_day_ahead":
        wm = h.store.run(state.get_watermark)
        assert wm is not None and wm <= h.world.now()


async def test_commits_hours_late_are_found_by_the_sweep(h15: Harness) -> None:
    h = h15
    await drive(h, 2)
    h.world.set_faults({"late_commit_s": 3 * 3600, "late_commit_rate": 0.5})
    logs = await drive(h, 4)
    assert h.world.fired["late_commit_rate"] > 0
    told_once(logs)
    h.world.set_faults({"late_commit_rate": 0.0})
    with structlog.testing.capture_logs() as swept:
        await h.sweep()
    assert [e for e in swept if e["event"] == "late_record_recovered"]
    await settle(h)
    whole(h)


async def test_503_maintenance_longer_than_a_cycle(h: Harness) -> None:
    def during(r: int) -> None:
        if r == 2:
            h.world.set_faults({"maintenance_s": 150})  # about three cycles

    logs = await drive(h, 8, during)
    assert h.world.fired["maintenance_s"] > 0
    events = [e["event"] for e in logs]
    assert events.count("sync_failing") == 1 and events.count("sync_recovered") == 1
    await settle(h)
    whole(h)


class Timeouts(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, rate: float):
        self.inner, self.rate, self.rng = inner, rate, SeededRandom(3)
        self.fired = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.rng.random() < self.rate:
            self.fired += 1
            raise httpx.ReadTimeout("simulated", request=request)
        return await self.inner.handle_async_request(request)


async def test_timeouts(tmp_path: Path, db_url: str, world: World, fake_time: FakeTime) -> None:
    timeouts = Timeouts(httpx.ASGITransport(app=create_app(world)), 0.25)
    h = Harness(tmp_path / "site", db_url, world, fake_time, transport=timeouts)
    told_once(await drive(h, 5))
    assert timeouts.fired > 0
    timeouts.rate = 0.0
    await settle(h)
    whole(h)


class Clock(httpx.AsyncBaseTransport):
    """Each request takes 2 s of the fake clock: cursors (TTL 15 s) expire mid-feed."""

    def __init__(self, inner: httpx.AsyncBaseTransport, time: FakeTime):
        self.inner, self.time = inner, time

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.time.t += 2
        return await self.inner.handle_async_request(request)


async def test_cursor_expiry_mid_feed(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    world.set_faults({"cursor_ttl_s": 15})
    h = Harness(
        tmp_path / "site",
        db_url,
        world,
        fake_time,
        transport=Clock(httpx.ASGITransport(app=create_app(world)), fake_time),
        settings={"lapor": {"page_size": 10}},
    )
    pulled = await h.pull()
    assert pulled["pages"] > len(h.visible()) / 10  # restarts happened, and progress too
    assert world.fired["cursor_ttl_s"] > 0
    told_once(await drive(h, 3))
    await settle(h)
    whole(h)


async def test_malformed_records(h: Harness) -> None:
    h.world.set_faults({"malformed_rate": 0.25})
    told_once(await drive(h, 4))
    assert h.world.fired["malformed_rate"] > 0
    assert h.quarantine()
    await settle(h, {"malformed_rate": 0.0})
    from connector.store import state

    h.store.run(lambda c: state.request_retry(c, None))
    await settle(h)
    assert h.quarantine() == []
    whole(h)


def test_connection_refused_sync_exits_1_with_a_clear_message(tmp_path: Path, db_url: str) -> None:
    port = free_port()  # nobody listens there
    site = tmp_path / "site"
    cfg = write_config(site, db_url, "\n[sync]\noverlap_s = 300\n")
    cfg.write_text(
        cfg.read_text().replace(
            'base_url = "sandbox"', f'base_url = "http://127.0.0.1:{port}"\ncall_deadline_s = 3'
        )
    )
    env = {"LAPOR_CLIENT_ID": "x", "LAPOR_CLIENT_SECRET": "y", "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [sys.executable, "-m", "connector", "--config", str(cfg), "sync"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1
    assert "LAPOR! unavailable: ConnectError" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.sqlite_only(reason="SQLite's busy/locked errors")
async def test_sqlite_busy_or_locked(tmp_path: Path, world: World, fake_time: FakeTime) -> None:
    import sqlite3

    h = Harness(
        tmp_path / "site", f"sqlite:///{tmp_path}/busy.db", world, fake_time, extra_settings=""
    )
    h.store.engine.dispose()
    h.store.backend.busy_timeout_s = 0.2
    h.store.engine = h.store.backend.create_engine()
    blocker = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)

    def during(r: int) -> None:
        if r == 1:
            blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the lock
        if r == 3:
            blocker.execute("COMMIT")

    logs = await drive(h, 6, during)
    events = [e["event"] for e in logs]
    assert events.count("sync_failing") == 1 and events.count("sync_recovered") == 1
    failing = next(e for e in logs if e["event"] == "sync_failing")
    assert "storage busy" in failing["error"]
    await settle(h)
    whole(h)


def _postmaster_started(conn: Connection) -> Any:
    return conn.execute(text("SELECT pg_postmaster_start_time()")).scalar()


@pytest.mark.skipif(not pg_available(), reason="needs PostgreSQL 15 binaries (initdb)")
async def test_postgresql_restarted_mid_cycle(
    tmp_path: Path, world: World, fake_time: FakeTime
) -> None:
    import psycopg

    # A private server: restarting the shared one would break others' tests.
    pg = PrivatePg()
    try:
        with psycopg.connect(
            pg.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        ) as admin:
            admin.execute('CREATE DATABASE "restart"')
        url = pg.url.rsplit("/", 1)[0] + "/restart"
        h = Harness(tmp_path / "site", url, world, fake_time)
        h.store.lock_instance()  # as the daemon: the lease must survive the restart
        world.set_faults({"latency_ms": 20})
        started_at = h.store.run(_postmaster_started)

        def restart() -> None:
            # Some requests in: the first cycle is under way (it makes many more).
            wait_for(lambda: world.requests >= 10, 60, "the first cycle's requests", every=0.01)
            pg.restart()

        restarter = threading.Thread(target=restart)

        def during(r: int) -> None:
            if r == 0:
                restarter.start()  # lands in the middle of the first cycle
            if r == 2:
                restarter.join()
                world.set_faults({"latency_ms": 0})
                h.time.t += 1000  # past the coordinator's backoff

        logs = await drive(h, 5, during)
        assert h.store.run(_postmaster_started) > started_at, "the server never restarted"
        told_once(logs)
        await settle(h)
        whole(h)
        with h.store.begin() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        h.store.close()
    finally:
        pg.destroy()


@pytest.mark.parametrize("how", ["deleted", "unreadable"])
async def test_mapping_file_deleted_or_unreadable(h: Harness, how: str) -> None:
    agencies = h.config.mappings_dir / "agencies.toml"
    good_version = h.mappings().version
    with structlog.testing.capture_logs() as logs:
        agencies.unlink()
        if how == "unreadable":
            agencies.mkdir()  # reading fails (root reads any file mode, so use a folder)
        for _ in range(3):
            assert not h.mappings.reload_if_changed()
    errors = [e for e in logs if e["event"] == "mapping_invalid"]
    assert len(errors) == 1 and errors[0]["error"].startswith("agencies.toml: -: -:")
    assert h.mappings().version == good_version  # the last good mapping stays in force
    told_once(await drive(h, 3))
    await settle(h)
    whole(h)
