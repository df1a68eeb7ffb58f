"""One instance, really: the SQLite lock file and the PostgreSQL lease with fencing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from connector.errors import InstanceLocked, LeaseLost, StorageBusy
from connector.runtime import open_store
from connector.settings import load_config
from connector.store import Store
from tests.conftest import ROOT, write_config
from tests.pgprivate import PrivatePg, available
from tests.waits import wait_for


@pytest.mark.sqlite_only(reason="the SQLite lock file")
def test_sqlite_lock_sits_beside_the_database_whatever_the_path_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "data" / "connector.db"
    real.parent.mkdir()
    (tmp_path / "link.db").symlink_to(real)
    (tmp_path / "linkdir").symlink_to(real.parent)
    monkeypatch.chdir(tmp_path)
    first = Store(f"sqlite:///{real}")
    first.lock_instance()
    try:
        assert (real.parent / "connector.db.lock").exists()
        for url in (
            "sqlite:///data/connector.db",
            "sqlite:///./data/connector.db",
            f"sqlite:///{tmp_path}/link.db",
            "sqlite:///linkdir/connector.db",
            f"sqlite:///{tmp_path}/data/../data/connector.db",
        ):
            other = Store(url)
            with pytest.raises(InstanceLocked, match="already running"):
                other.lock_instance()
            other.close()
        assert not (tmp_path / "link.db.lock").exists()
    finally:
        first.close()
    again = Store("sqlite:///link.db")
    again.lock_instance()  # released with the first
    again.close()


@pytest.mark.sqlite_only(reason="the SQLite lock file")
def test_settings_relative_path_locks_beside_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(tmp_path / "site", "sqlite:///./var/c.db")
    monkeypatch.chdir(tmp_path)  # not the settings folder: the path is relative to the file
    store = open_store(load_config(cfg, environ={}), lock=True)
    try:
        assert (tmp_path / "site" / "var" / "c.db.lock").exists()
    finally:
        store.close()


@pytest.mark.sqlite_only(reason="the SQLite lock file (the PostgreSQL lease: tests below)")
def test_the_lock_is_taken_before_migrating(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "site", f"sqlite:///{tmp_path}/fresh.db")
    config = load_config(cfg, environ={})
    holder = Store(config.database_url)
    holder.lock_instance()  # a running connector that has not migrated (yet)
    try:
        with pytest.raises(InstanceLocked):
            open_store(config, lock=True)
        assert inspect(holder.engine).get_table_names() == []  # the refused one migrated nothing
    finally:
        holder.close()


# -- PostgreSQL: a private server, started and restarted by the test ---------------------------

needs_pg = pytest.mark.skipif(not available(), reason="needs PostgreSQL 15 binaries (initdb)")


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePg]:
    server = PrivatePg()
    try:
        yield server
    finally:
        server.destroy()


def _fresh_db(pg: PrivatePg, name: str) -> str:
    import psycopg

    admin = pg.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg.url.rsplit("/", 1)[0] + "/" + name


def _commit(store: Store, tries: int = 50) -> None:
    """One fenced transaction, retried while the server comes back."""
    for _ in range(tries):
        try:
            store.run(lambda c: c.execute(text("UPDATE connector_state SET value = value")))
            return
        except StorageBusy:
            time.sleep(0.2)
    raise AssertionError("storage did not come back")


def _lease_expiry(url: str) -> float:
    """When the lease expires (epoch seconds), read by a store that holds no lease: the
    holder's own transactions renew it."""
    probe = Store(url)
    try:
        return float(
            probe.run(
                lambda c: c.execute(
                    text("SELECT extract(epoch FROM expires_at) FROM connector_lease")
                ).scalar_one()
            )
        )
    finally:
        probe.close()


def _renewed_since_start(probe: Store, lease_s: float) -> bool:
    """Whether the lease was renewed after the server (re)started."""
    try:
        return bool(
            probe.run(
                lambda c: c.execute(
                    text(
                        "SELECT expires_at - make_interval(secs => :s)"
                        " > pg_postmaster_start_time() "
                        "FROM connector_lease"
                    ),
                    {"s": lease_s},
                ).scalar()
            )
        )
    except StorageBusy:  # the server is still coming back
        return False


@needs_pg
def test_pg_lease_survives_a_restart_and_refuses_a_second_instance(pg: PrivatePg) -> None:
    url = _fresh_db(pg, "lease_restart")
    first = Store(url, lease_s=30)
    first.lock_instance()
    first.upgrade()
    try:
        second = Store(url, lease_s=30)
        with pytest.raises(InstanceLocked, match="already running"):
            second.lock_instance()
        pg.restart()
        _commit(first)  # re-acquired: the lease is a row, the holder renews it
        with pytest.raises(InstanceLocked):
            second.lock_instance()  # and still nobody runs beside it
        second.close()
    finally:
        first.close()
    third = Store(url, lease_s=30)
    third.lock_instance()  # a clean stop hands the lease over at once
    third.close()


@needs_pg
def test_pg_lease_taken_over_after_expiry_fences_the_old_holder(pg: PrivatePg) -> None:
    url = _fresh_db(pg, "lease_fence")
    old = Store(url, lease_s=1)
    old.lock_instance()
    old.upgrade()
    expires = _lease_expiry(url)
    pg.stop()
    # The database is down longer than the lease: until it expired, by the machine's clock.
    wait_for(lambda: time.time() > expires, 30, "the lease to expire", every=0.05)
    pg.start()
    new = Store(url, lease_s=30)
    new.lock_instance()  # expired: the newcomer takes over
    try:
        with pytest.raises(LeaseLost):
            old.run(
                lambda c: c.execute(
                    text("INSERT INTO connector_state (key, value) VALUES ('stale', 'x')")
                )
            )
        with pytest.raises(LeaseLost):
            old.run(lambda c: None)  # for good
        assert (
            new.run(
                lambda c: c.execute(
                    text("SELECT count(*) FROM connector_state WHERE key = 'stale'")
                ).scalar()
            )
            == 0
        )
    finally:
        old.close()
        new.close()


@needs_pg
def test_pg_daemon_keeps_its_lease_over_a_restart_and_stops_when_it_is_taken(
    pg: PrivatePg, tmp_path: Path
) -> None:
    url = _fresh_db(pg, "lease_daemon")
    cfg = write_config(tmp_path / "site", url, sandbox="complaints = 5\ngenerator = false")
    log = tmp_path / "daemon.log"
    env = {
        **os.environ,
        "LAPOR_CONNECTOR_STORAGE__LEASE_S": "3",
        "LAPOR_CONNECTOR_LOG__LEVEL": "info",
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "connector", "--config", str(cfg), "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        probe = Store(url)
        deadline = time.monotonic() + 60
        while True:
            try:
                owner = probe.run(
                    lambda c: c.execute(text("SELECT owner FROM connector_lease")).scalar()
                )
                if owner and probe.run(
                    lambda c: c.execute(text("SELECT count(*) FROM runs")).scalar()
                ):
                    break
            except Exception:  # tables not there yet
                pass
            assert daemon.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        pg.restart()
        # The daemon must renew its lease over the restart (3 s, renewed every second).
        wait_for(
            lambda: _renewed_since_start(probe, 3),
            60,
            "the daemon to renew its lease after the restart",
            every=0.2,
        )
        assert daemon.poll() is None
        second = subprocess.run(
            [sys.executable, "-m", "connector", "--config", str(cfg), "sync"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1 and "already running" in second.stderr
        assert (
            probe.run(lambda c: c.execute(text("SELECT owner FROM connector_lease")).scalar())
            == owner
        )
        # Another connector takes the lease (as after an expiry): the daemon stops by itself.
        probe.run(lambda c: c.execute(text("UPDATE connector_lease SET owner = 'other:1:x'")))
        assert daemon.wait(timeout=30) == 1
        events = [
            json.loads(line).get("event")
            for line in log.read_text().splitlines()
            if line.startswith("{")
        ]
        assert "instance_lease_lost" in events
        probe.close()
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()


def test_db_upgrade_refuses_beside_a_running_connector(
    tmp_path: Path, db_url: str, capsys: Any
) -> None:
    from connector.cli import main

    cfg = write_config(tmp_path / "site", db_url)
    config = load_config(cfg, environ={})
    holder = Store(config.database_url)
    holder.lock_instance()
    try:
        assert main(["--config", str(cfg), "db", "upgrade"]) == 1
        assert "already running" in capsys.readouterr().err
    finally:
        holder.close()
    assert main(["--config", str(cfg), "db", "upgrade"]) == 0
