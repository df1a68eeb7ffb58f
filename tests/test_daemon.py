"""The daemon as a real subprocess: start, pull, live mapping reload, stop, single instance."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.daemon import Coordinator
from connector.errors import LaporUnavailable
from connector.sandbox import World, data
from tests.conftest import ROOT, systemd_exposure, write_config
from tests.factories import Daemon, count, free_port
from tests.waits import until, wait_for

pytestmark = pytest.mark.slow

FAST = """
[sync]
pull_interval_s = 2
push_interval_s = 2
jitter_s = 0.2
demo_officer = true
[mappings]
reload_interval_s = 0.5
"""
SANDBOX = "complaints = 30\ngenerator_interval_s = 1\n"


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[Path]:
    """A daemon's site on each backend."""
    s = tmp_path / "site"
    write_config(s, db_url, FAST, sandbox=SANDBOX)
    yield s


def test_starts_pulls_pushes_stops_and_refuses_a_second_instance(site: Path) -> None:
    d = Daemon(site, level="info")
    try:
        wait_for(lambda: count(site, "SELECT count(*) FROM tickets") > 0, what="tickets")
        wait_for(
            lambda: count(site, "SELECT count(*) FROM runs WHERE kind='pull' AND ok") > 0,
            what="a recorded pull",
        )
        wait_for(
            lambda: count(site, "SELECT count(*) FROM outbox WHERE state='sent'") > 0,
            what="demo officer follow-ups sent",
        )
        second = subprocess.run(
            [sys.executable, str(ROOT / "scheduler.py"), "--config", str(site / "settings.toml")],
            cwd=site,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0 and "already running" in second.stderr
        beside = subprocess.run(
            [sys.executable, "-m", "connector", "--config", str(site / "settings.toml"), "sync"],
            cwd=site,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert beside.returncode == 1 and "already running" in beside.stderr
    finally:
        code, took = d.stop()
    assert code == 0 and took < 15
    text = d.text()
    assert "daemon_stopped" in text and "Traceback" not in text
    summaries = [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") and '"pull_cycle"' in line
    ]
    assert summaries and {
        "fetched",
        "created",
        "updated",
        "unchanged",
        "held",
        "quarantined",
        "duration_s",
    } <= set(summaries[0])


def test_live_mapping_reload_bad_then_good(site: Path) -> None:
    agencies = site / "mappings" / "agencies.toml"
    good = agencies.read_text()
    narrowed = good.replace(
        "lapor_unit_ids = [6411019, 6411021, 6411022, 6411023, 6411024, 6411025]",
        "lapor_unit_ids = [6411019]",
    )
    agencies.write_text(narrowed)
    d = Daemon(site, level="info")
    try:
        wait_for(
            lambda: count(site, "SELECT count(*) FROM runs WHERE kind='pull' AND ok") > 0,
            what="first pull",
        )
        n0 = count(site, "SELECT count(*) FROM tickets")
        agencies.write_text(narrowed.replace('code = "DKP2KB"', 'code = "dinkes"'))
        wait_for(lambda: "mapping_invalid" in d.text(), 20, "the invalid mapping to be logged")
        expected = subprocess.run(
            [
                sys.executable,
                "-m",
                "connector",
                "--config",
                str(site / "settings.toml"),
                "mappings",
                "check",
            ],
            cwd=site,
            capture_output=True,
            text=True,
        ).stderr.strip()
        assert expected and expected.split(": ")[0] == "agencies.toml"
        assert expected in d.text().replace('\\"', '"')  # the same message `mappings check` gives
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "connector",
                "--config",
                str(site / "settings.toml"),
                "status",
                "--json",
            ],
            cwd=site,
            capture_output=True,
            text=True,
        )
        assert status.returncode == 1 and "mapping_error" in status.stdout
        # Routing goes on with the last good mapping.
        wait_for(lambda: count(site, "SELECT count(*) FROM tickets") > n0, 30, "new tickets")
        agencies.write_text(good)  # now extends routing to the kecamatan units
        wait_for(lambda: "mapping_loaded" in d.text(), 20, "the good mapping")
        wait_for(
            lambda: (
                count(site, "SELECT count(*) FROM quarantine WHERE reason='unmapped_unit'") == 0
            ),
            30,
            "held complaints to be routed",
        )
        assert count(site, "SELECT count(*) FROM tickets WHERE agency='SETDA'") > 0
    finally:
        code, _ = d.stop()
    assert code == 0


def personal_strings() -> list[str]:
    """Identity and text the sandbox world carries today (same seed, same day)."""
    w = World(seed=6411, complaints=30)
    found: set[str] = set()
    for r in w.records.values():
        found.update({r["isi"], r["judul"]})
        if r["pelapor"]:
            found.update(v for v in r["pelapor"].values() if v)
    # Whatever the generator adds later comes from these pools.
    found.update(data.REPORTER_REPLIES + data.OBJECTIONS)
    found.update(f"{a} {b}" for a in data.FIRST_NAMES for b in data.LAST_NAMES)
    from connector.sandbox.demo_officer import DemoOfficer

    found.update(DemoOfficer.REPLIES)
    found.update({"rahasia-demo-6411", "Perbaikan sudah dilaksanakan", "Laporan sudah kami terima"})
    return sorted(found)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_debug_logs_carry_no_personal_data(site: Path, fmt: str) -> None:
    d = Daemon(site, fmt=fmt, level="debug")
    try:
        wait_for(
            lambda: count(site, "SELECT count(*) FROM outbox WHERE state='sent'") > 1,
            what="follow-ups sent",
        )
        # The rows are committed before the lines that tell of them are written.
        wait_for(
            lambda: "record_synced" in d.text() and "followup_sent" in d.text(),
            30,
            "the log lines of the synced records and sent follow-ups",
        )
    finally:
        code, _ = d.stop()
    assert code == 0
    text = d.text()
    assert "record_synced" in text and "followup_sent" in text
    leaks = [s for s in personal_strings() if s in text]
    assert not leaks
    assert not re.search(r"[\w.]+@contoh\.id", text)
    assert not re.search(r"(?<!\d)08\d{9,}", text)
    assert "Bearer " not in text.replace("Bearer [redacted]", "")
    sync = subprocess.run(
        [sys.executable, "-m", "connector", "--config", str(site / "settings.toml"), "sync"],
        cwd=site,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "LAPOR_CONNECTOR_LOG__FORMAT": fmt,
            "LAPOR_CONNECTOR_LOG__LEVEL": "debug",
        },
    )
    assert sync.returncode == 0
    assert not [s for s in personal_strings() if s in sync.stderr + sync.stdout]


# -- the coordinator, without a process ----------------------------------------------------


@pytest.mark.anyio
async def test_coordinator_logs_failure_once_recovery_once_and_backs_off() -> None:
    import structlog.testing

    now = [0.0]
    outcomes = [LaporUnavailable("down")] * 4 + [None, None]
    calls = []

    async def job() -> None:
        calls.append(now[0])
        result = outcomes.pop(0) if outcomes else None
        if result is not None:
            raise result

    c = Coordinator(
        "pull", job, interval_s=10, max_backoff_s=100, clock=lambda: now[0], rng=lambda: 0.0
    )
    with structlog.testing.capture_logs() as logs:
        for _ in range(60):
            await c.tick()
            now[0] += 5
    events = [e["event"] for e in logs]
    assert events.count("pull_failing") == 1 and events.count("pull_recovered") == 1
    gaps = [b - a for a, b in itertools.pairwise(calls)][:4]
    assert gaps == sorted(gaps) and gaps[0] >= 10 and gaps[3] >= 80  # backs off on its own
    assert c.failures == 0


@pytest.mark.anyio
async def test_a_recovered_storage_failure_is_no_longer_fatal() -> None:
    """Issue 23 (15): a disk that filled and was freed again leaves the clean stop at 0."""
    from connector.errors import StorageError

    outcomes: list[Exception | None] = [StorageError("storage error: database or disk is full")]

    async def job() -> None:
        result = outcomes.pop(0) if outcomes else None
        if result is not None:
            raise result

    now = [0.0]
    c = Coordinator(
        "pull", job, interval_s=10, max_backoff_s=100, clock=lambda: now[0], rng=lambda: 0.0
    )
    await c.tick()
    assert c.fatal is not None and c.failures == 1
    assert isinstance(c.error, StorageError)  # /healthz names it (storage_error) meanwhile
    now[0] += 1000
    await c.tick()
    assert c.fatal is None and c.failures == 0 and c.error is None


def test_sd_notify_ready_watchdog_stopping(site: Path, tmp_path: Path) -> None:
    import socket as socketlib

    address = str(tmp_path / "notify.sock")
    sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), "--config", str(site / "settings.toml")],
        cwd=site,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    got: list[str] = []
    try:
        while not any("WATCHDOG=1" in g for g in got):
            got.append(sock.recv(4096).decode())
        assert "READY=1" in got[0]
        proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in g for g in got):
            got.append(sock.recv(4096).decode())
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


def test_systemd_unit_is_hardened() -> None:

    unit = ROOT / "deploy" / "lapor-connector.service"
    text = unit.read_text()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "LoadCredential=LAPOR_CLIENT_SECRET",
        "User=lapor-connector",
        "WatchdogSec=",
        "MemoryMax=",
        "LimitNOFILE=",
        "ExecStart=/opt/lapor-connector/.venv/bin/lapor-connector --config "
        "/etc/lapor-connector/settings.toml run",
    ):
        assert line in text
    # One configuration: no path through the environment (commands would not see it), and a
    # fixed user rather than DynamicUser (operators run commands as it with sudo -u).
    assert "Environment=" not in text and "DynamicUser=yes" not in text
    assert systemd_exposure(unit) <= 2.0


def test_daemon_keeps_trying_when_lapor_refuses_connections(tmp_path: Path, db_url: str) -> None:
    port = free_port()  # nobody listens there
    site = tmp_path / "site"
    cfg = write_config(
        site,
        db_url,
        "[sync]\npull_interval_s = 1\npush_interval_s = 1\njitter_s = 0.1\nmax_backoff_s = 2\n",
    )
    cfg.write_text(
        cfg.read_text().replace(
            'base_url = "sandbox"', f'base_url = "http://127.0.0.1:{port}"\ncall_deadline_s = 1'
        )
    )
    env = {
        **os.environ,
        "LAPOR_CLIENT_ID": "x",
        "LAPOR_CLIENT_SECRET": "sangat-rahasia-99",
        "LAPOR_CONNECTOR_LOG__LEVEL": "info",
    }
    log = site / "refused.log"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), "--config", str(cfg)],
        cwd=site,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: count(site, "SELECT count(*) FROM runs WHERE kind='pull'") >= 3,
            40,
            "several failed pulls",
        )
        assert proc.poll() is None  # still running, still trying
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    text = log.read_text()
    assert code == 0
    assert text.count('"pull_failing"') == 1  # told once, not at every attempt
    assert "ConnectError" in text and "sangat-rahasia-99" not in text
    status = subprocess.run(
        [sys.executable, "-m", "connector", "--config", str(cfg), "status", "--json"],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
    )
    assert status.returncode == 1 and "sangat-rahasia-99" not in status.stdout


@pytest.mark.anyio
async def test_coordinator_survives_a_bug_reports_it_once_and_backs_off() -> None:
    import structlog.testing

    now = [0.0]
    calls = []

    async def job() -> None:
        calls.append(now[0])
        raise KeyError("a bug")

    c = Coordinator(
        "push", job, interval_s=10, max_backoff_s=60, clock=lambda: now[0], rng=lambda: 0.0
    )
    with structlog.testing.capture_logs() as logs:
        for _ in range(40):
            await c.tick()
            now[0] += 5
    assert [e["event"] for e in logs].count("push_crashed") == 1
    assert len(calls) < 10 and c.running is None


def test_daemon_runs_the_sweep_in_a_pulls_turn(tmp_path: Path, db_url: str) -> None:
    s = tmp_path / "site"
    # Intervals under a day do not wait for the quiet hour WITA.
    write_config(
        s,
        db_url,
        FAST.replace("demo_officer = true", "demo_officer = false\nsweep_interval_s = 3"),
        sandbox=SANDBOX,
    )
    d = Daemon(s, level="info")
    try:
        wait_for(
            lambda: (
                count(s, "SELECT count(*) FROM connector_state WHERE key = 'last_sweep_at'") > 0
            ),
            what="a sweep",
        )
        wait_for(lambda: '"pull_cycle"' in d.text(), what="an ordinary pull as well")
    finally:
        code, _ = d.stop()
    assert code == 0
    sweeps = [
        json.loads(line)
        for line in d.text().splitlines()
        if line.startswith("{") and '"sweep_cycle"' in line
    ]
    assert sweeps and sweeps[0]["sweep"] == 1


@pytest.mark.parametrize("step_s", [-3600.0, 3600.0])
def test_jobs_keep_their_cadence_when_the_wall_clock_steps(
    monkeypatch: pytest.MonkeyPatch, step_s: float
) -> None:
    """Issue 23 item 5: a step of the wall clock (faked here: time.time and every
    datetime.now jump by an hour) must not stop or rush any job."""
    import asyncio
    import datetime as dt

    from connector.daemon import Ticker

    real_time = time.time
    offset = [0.0]

    class Stepped(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return dt.datetime.fromtimestamp(real_time() + offset[0], tz)

    monkeypatch.setattr(time, "time", lambda: real_time() + offset[0])
    monkeypatch.setattr(dt, "datetime", Stepped)
    runs: dict[str, list[float]] = {"pull": [], "watchdog": []}

    async def pull() -> None:
        runs["pull"].append(time.monotonic())
        if len(runs["pull"]) == 3:
            offset[0] = step_s  # the clock steps while the daemon runs

    async def main() -> None:
        ticker = Ticker(rng=lambda: 0.5)
        ticker.add("pull", pull, 0.05, jitter_s=0.02)
        ticker.add("watchdog", lambda: runs["watchdog"].append(time.monotonic()), 0.05)
        ticker.start()
        await until(
            lambda: len(runs["pull"]) >= 8 and len(runs["watchdog"]) >= 8,
            10,
            "eight runs of each job",
        )
        ticker.pause()
        paused_at = len(runs["pull"])
        await asyncio.sleep(0.2)
        assert len(runs["pull"]) == paused_at
        await ticker.aclose()

    asyncio.run(main())
    assert len(runs["pull"]) >= 8 and len(runs["watchdog"]) >= 8
    gaps = [b - a for a, b in itertools.pairwise(runs["pull"])]
    assert all(0.04 < g < 0.5 for g in gaps)


def test_a_job_that_raises_keeps_running() -> None:
    import asyncio

    from connector.daemon import Ticker

    calls = []

    def boom() -> None:
        calls.append(1)
        raise RuntimeError("a bug")

    async def main() -> None:
        ticker = Ticker(rng=lambda: 0.0)
        ticker.add("boom", boom, 0.02)
        ticker.start()
        await until(lambda: len(calls) >= 3, 10, "three runs of the failing job")
        await ticker.aclose()

    asyncio.run(main())
    assert len(calls) >= 3
