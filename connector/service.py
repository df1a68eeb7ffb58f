"""The daemon's wiring: settings, logging, store, client, jobs, shutdown.

``python scheduler.py`` and ``lapor-connector run`` both end up in ``main``.
Logic lives elsewhere (``daemon.py``, ``sync/``, ``systemd.py``); this module only connects it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection

from connector.daemon import Coordinator, Ticker
from connector.errors import (
    ConfigError,
    ConnectorError,
    Fatal,
    LeaseLost,
    RetryLater,
    StorageError,
)
from connector.health import HealthReport
from connector.logging import configure_for
from connector.metrics import Metrics, Monitor, Reachability, probe
from connector.notify import send as notify_send
from connector.runtime import Runtime, open_runtime
from connector.sandbox.app import run_generator
from connector.sandbox.demo_officer import DemoOfficer
from connector.settings import Config, is_loopback, load_config
from connector.status import OVERDUE_SHOWN, report
from connector.store import followups, state
from connector.sync.context import SyncContext
from connector.sync.cycle import CycleKind, run_cycle
from connector.sync.sweep import sweep_due
from connector.systemd import sd_notify, watchdog_interval
from connector.tracker.rows import OverdueJSON

log = structlog.get_logger("connector.service")
STOP_GRACE_S = 8.0  # then cut off; systemd and the contract allow 15 s
HEALTH_REFRESH_S = 5.0  # how fresh /healthz and the gauges are
OVERDUE_REFRESH_S = 60.0  # how fresh the overdue count in them is
NOTIFY_INTERVAL_S = 5.0  # the e-mail job: digest check, then what is ready to send
STORAGE_CHECK_S = 60.0  # how often the database file is checked (identity, quick_check)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scheduler.py", description="the connector daemon")
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(config)


def run(config: Config) -> int:
    configure_for(config)
    try:
        smtp_password = notify_send.password_for(config)
        rt = open_runtime(config, lock=True)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Fatal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        return asyncio.run(_serve(rt, smtp_password))
    finally:
        rt.store.close()


async def _serve(rt: Runtime, smtp_password: str | None = None) -> int:
    s = rt.config.settings.sync
    ctx = rt.context()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def write_mapping_state(c: Any) -> None:
        state.set_mapping_version(c, rt.mappings().version)
        state.set_mapping_error(c, rt.mappings.error)

    async def publish_mapping() -> None:
        await ctx.db(write_mapping_state)

    async def reload_mappings() -> None:
        before = rt.mappings.error
        # In a thread: a file system that hangs (NFS, a FIFO) must not freeze the loop.
        changed = await asyncio.to_thread(rt.mappings.reload_if_changed)
        if changed or rt.mappings.error != before:
            await publish_mapping()

    async def pull_or_sweep() -> Any:
        # The daily sweep takes a pull's turn: never beside a pull, same request budget.
        last = await ctx.db(state.get_last_sweep)
        kind = CycleKind.SWEEP if sweep_due(ctx.now(), last, s.sweep_interval_s) \
            else CycleKind.PULL
        return await run_cycle(ctx, kind)

    pull = Coordinator("pull", pull_or_sweep, s.pull_interval_s, s.max_backoff_s)
    push = Coordinator("push", lambda: run_cycle(ctx, CycleKind.PUSH), s.push_interval_s,
                       s.max_backoff_s)
    coordinators = [pull, push]
    tracker_job = None
    if ctx.sink.queued:
        # An external tracker: its own job, failures and recovery logged by its coordinator;
        # LAPOR! intake goes on whatever the tracker does.
        tracker_job = Coordinator("tracker", lambda: run_cycle(ctx, CycleKind.TRACKER),
                                  s.tracker_interval_s, s.max_backoff_s)
        coordinators.append(tracker_job)
    # One run of a job at a time (its ticker awaits it), plus the coordinator's own guard:
    # a cycle never overlaps itself. Monotonic time: wall-clock steps change nothing.
    scheduler = Ticker()
    scheduler.add("pull", pull.tick, s.pull_interval_s, s.jitter_s)
    scheduler.add("push", push.tick, s.push_interval_s, s.jitter_s)
    if tracker_job is not None:
        scheduler.add("tracker", tracker_job.tick, s.tracker_interval_s, s.jitter_s)
    scheduler.add("mappings", reload_mappings, rt.config.settings.mappings.reload_interval_s)
    if rt.config.settings.notify.enabled:  # e-mail: its own job, never in a cycle's way
        mailer = notify_send.sender_for(rt.config, smtp_password, ctx.db, rt.mappings, ctx.now,
                                        lambda kind, n: ctx.observer.progress(kind, n))
        scheduler.add("notify", lambda: notify_send.job(mailer), NOTIFY_INTERVAL_S)
    background: list[asyncio.Task[Any]] = []
    gen_stop = asyncio.Event()
    if rt.world is not None:
        background.append(asyncio.create_task(
            run_generator(rt.world, rt.config.settings.sandbox.generator_interval_s, gen_stop)))
        if s.demo_officer and rt.tracker.desk() is not None:
            officer = DemoOfficer()

            async def act() -> None:
                def tx(c: Any) -> Any:
                    return officer.act(c, rt.tracker.desk(), rt.mappings(), ctx.now())
                tid = await ctx.db(tx)
                if tid:
                    log.info("demo_officer_acted", tracking_id=tid)
            scheduler.add("demo_officer", act, max(5.0, s.push_interval_s))
    monitor = _start_metrics(rt, ctx, pull, push, tracker_job)
    probing: list[asyncio.Task[Any]] = []

    async def health() -> None:
        if monitor is None:
            return
        try:
            monitor.refresh()
        except ConnectorError as exc:
            monitor.failed(str(exc))
        if monitor.should_probe(pull.running is not None) and not any(
                not t.done() for t in probing):
            probing[:] = [asyncio.create_task(probe(rt.client))]

    if monitor is not None:
        scheduler.add("health", health, HEALTH_REFRESH_S)
        await health()

    lease_lost: list[LeaseLost] = []

    async def renew_lease() -> None:
        # An empty transaction: its commit renews the lease (fenced like every commit).
        try:
            await ctx.db(lambda c: None)
        except LeaseLost as exc:
            log.error("instance_lease_lost", error=str(exc))
            lease_lost.append(exc)
            stop.set()
        except RetryLater as exc:
            # The database is down or restarting: the lease is a row and survives it; the
            # next renewal takes it up again unless another connector took it over.
            log.warning("instance_lease_not_renewed", error=str(exc))

    if rt.store.backend.name == "postgresql":
        scheduler.add("lease", renew_lease, rt.config.settings.storage.lease_s / 3)
    storage_lost: list[str] = []

    async def check_storage() -> None:
        # The file deleted, replaced or corrupt under us: stop with a clear error rather
        # than go on writing into an unlinked file (every commit is fenced on it too).
        problem = await asyncio.to_thread(rt.store.backend.health_problem, rt.store.engine)
        if problem:
            log.error("storage_unusable", error=problem)
            storage_lost.append(problem)
            stop.set()

    scheduler.add("storage_check", check_storage, STORAGE_CHECK_S)
    wd = watchdog_interval()
    if wd:
        scheduler.add("watchdog", lambda: sd_notify("WATCHDOG=1"), wd)
    await publish_mapping()
    scheduler.start()
    log.info("daemon_started", storage=rt.store.backend.describe(),
             lapor="sandbox" if rt.config.sandbox_mode else rt.config.settings.lapor.base_url,
             mapping_version=rt.mappings().version)
    sd_notify("READY=1\nSTATUS=running")
    # First cycles right away rather than one interval after start.
    first = asyncio.create_task(_first_cycles(pull, push, health if monitor else None,
                                              tracker_job))
    await stop.wait()
    log.info("daemon_stopping")
    sd_notify("STOPPING=1")
    ctx.stopping.set()  # cycles end at their next commit point
    scheduler.pause()
    gen_stop.set()
    exit_code = 0
    inflight = [c.running for c in coordinators if c.running is not None] + [first]
    inflight = [t for t in inflight if t is not None and not t.done()]
    if inflight:
        _, pending = await asyncio.wait(inflight, timeout=STOP_GRACE_S)
        for task in pending:
            # Cut off mid-request: transactions run whole between awaits, so nothing is
            # half-written, and an unanswered POST is resent later with the same key.
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)
    await scheduler.aclose()
    for task in background:
        await task
    for task in probing:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if monitor is not None:
        monitor.stop()
    for c in coordinators:
        if c.fatal is not None:
            exit_code = 1
    if lease_lost or storage_lost:
        exit_code = 1
    await rt.aclose()
    log.info("daemon_stopped")
    return exit_code


def warn_if_exposed(listen: str) -> bool:
    """/healthz names tracking ids and LAPOR!'s error codes: for this host's eyes. A
    listener on any other address is worth a warning at every start."""
    host = listen.rpartition(":")[0].strip("[]")
    if not listen or is_loopback(host):
        return False
    log.warning("metrics_not_loopback", listen=listen,
                hint="anyone who reaches this address reads /metrics and /healthz; "
                     "prefer 127.0.0.1 with a local Prometheus, or a firewall")
    return True


def _start_metrics(rt: Runtime, ctx: SyncContext, pull: Coordinator,
                   push: Coordinator, tracker: Coordinator | None = None) -> Monitor | None:
    """/metrics and /healthz on metrics.listen; a port in use is logged, never fatal."""
    address = rt.config.settings.metrics.address
    if address is None:
        return None
    metrics, reach = Metrics(), Reachability()
    ctx.observer = metrics

    def on_request(endpoint: str, code: str, seconds: float) -> None:
        metrics.request(endpoint, code, seconds)
        reach.observe(code)

    rt.client.observer = on_request
    jobs = [c for c in (pull, push, tracker) if c is not None]
    monitor = Monitor(
        metrics, _health_report(rt, ctx, lambda: next(
            (str(c.error) for c in jobs if isinstance(c.error, StorageError)), None)),
        lambda: {"pull": pull.failures, "push": push.failures,
                 **({"tracker": tracker.failures} if tracker else {})}, reach, ctx.now)
    try:
        host, port = monitor.start(*address)
    except OSError as exc:
        log.error("metrics_unavailable", listen=rt.config.settings.metrics.listen,
                  error=str(exc))
        return None
    log.info("metrics_listening", listen=f"{host}:{port}", paths="/metrics /healthz")
    warn_if_exposed(rt.config.settings.metrics.listen)
    return monitor


@dataclass
class _Overdue:
    value: tuple[int, list[OverdueJSON]] | None = None
    at: float = 0.0


def _health_report(rt: Runtime, ctx: SyncContext,
                   storage_failure: Callable[[], str | None] | None = None,
                   ) -> Callable[[], HealthReport]:
    """The report behind /healthz and the gauges, every HEALTH_REFRESH_S. The mapping
    files' state comes from the daemon's own reload; the overdue query (the costly part,
    over every complaint) runs at most every OVERDUE_REFRESH_S: due times are minutes
    apart and pulls commit once a minute."""
    cache = _Overdue()

    def tx(conn: Connection) -> HealthReport:
        now, t = ctx.now(), ctx.monotonic()
        if cache.value is None or t - cache.at >= OVERDUE_REFRESH_S:
            cache.value, cache.at = followups.overdue(conn, now, OVERDUE_SHOWN), t
        return report(conn, rt.config, rt.tracker, now,
                      files=(None, rt.mappings.error) if rt.mappings.error else
                      (rt.mappings().version, None), overdue=cache.value,
                      storage_failure=storage_failure() if storage_failure else None)

    return lambda: rt.store.run(tx)


async def _first_cycles(pull: Coordinator, push: Coordinator,
                        then: Callable[[], Awaitable[None]] | None = None,
                        tracker: Coordinator | None = None) -> None:
    await pull.tick()
    if tracker is not None:
        await tracker.tick()
    await push.tick()
    if then is not None:
        await then()  # /healthz and the gauges reflect the first cycles at once
