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
from collections.abc import Callable, Sequence
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
from connector.runtime import Openers, Runtime, open_runtime
from connector.sandbox.app import run_generator
from connector.sandbox.demo_officer import DemoOfficer
from connector.settings import Config, is_loopback, load_config
from connector.status import OVERDUE_SHOWN, report
from connector.store import followups, state
from connector.sync.context import Observer, SyncContext
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
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(Daemon(config, smtp_password).run())


class _Observed:
    """What the metrics listen to, given to the context and the client as they are made."""

    def __init__(self) -> None:
        self.metrics, self.reach = Metrics(), Reachability()

    def request(self, endpoint: str, code: str, seconds: float) -> None:
        self.metrics.request(endpoint, code, seconds)
        self.reach.observe(code)


class Daemon:
    """The owner of one run: every part it opens goes on one exit stack, so each is closed
    once, in reverse order, whether the run ends by a signal, a lost lease, or a start-up
    that failed half-way."""

    def __init__(
        self, config: Config, smtp_password: str | None = None, openers: Openers = Openers()
    ) -> None:
        self.config = config
        self._smtp_password = smtp_password
        self._openers = openers
        self.stop = asyncio.Event()  # a signal, a lost lease or lost storage sets it
        # Metrics only when they are served; a port in use still counts (as before).
        self._observed = _Observed() if config.settings.metrics.address is not None else None

    async def run(self) -> int:
        async with contextlib.AsyncExitStack() as stack:
            try:
                rt = open_runtime(
                    self.config,
                    stack,
                    self._openers,
                    self._observed.request if self._observed else None,
                )
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            except Fatal as exc:
                print(f"error: {exc}", file=sys.stderr)
                return exc.exit_code
            jobs = Jobs(
                rt,
                self.stop,
                self._smtp_password,
                self._observed.metrics if self._observed else None,
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop.set)
            first = await jobs.start(stack, self._serve_metrics(stack, jobs))
            await self.stop.wait()
            code = await jobs.drain(first)
        log.info("daemon_stopped")
        return code

    def _serve_metrics(self, stack: contextlib.AsyncExitStack, jobs: Jobs) -> Monitor | None:
        """/metrics and /healthz on metrics.listen; a port in use is logged, never fatal."""
        settings = self.config.settings.metrics
        if self._observed is None or settings.address is None:
            return None
        monitor = Monitor(
            self._observed.metrics,
            _health_report(jobs.rt, jobs.ctx, jobs.storage_failure),
            jobs.failures,
            self._observed.reach,
            jobs.ctx.now,
        )
        try:
            host, port = monitor.start(*settings.address)
        except OSError as exc:
            log.error("metrics_unavailable", listen=settings.listen, error=str(exc))
            return None
        stack.callback(monitor.stop)
        log.info("metrics_listening", listen=f"{host}:{port}", paths="/metrics /healthz")
        warn_if_exposed(settings.listen)
        return monitor


class Jobs:
    """The daemon's jobs over opened parts (it owns none of them): each job a method,
    each run of it one coordinator tick or one ticker call."""

    def __init__(
        self, rt: Runtime, stop: asyncio.Event, smtp_password: str | None, observer: Observer | None
    ) -> None:
        self.rt, self.stop = rt, stop
        self.ctx = rt.context(observer)
        self._smtp_password = smtp_password
        s = rt.config.settings.sync
        self.pull = Coordinator("pull", self.pull_or_sweep, s.pull_interval_s, s.max_backoff_s)
        self.push = Coordinator(
            "push", lambda: run_cycle(self.ctx, CycleKind.PUSH), s.push_interval_s, s.max_backoff_s
        )
        self.tracker: Coordinator | None = None
        if self.ctx.sink.queued:
            # An external tracker: its own job, failures and recovery logged by its
            # coordinator; LAPOR! intake goes on whatever the tracker does.
            self.tracker = Coordinator(
                "tracker",
                lambda: run_cycle(self.ctx, CycleKind.TRACKER),
                s.tracker_interval_s,
                s.max_backoff_s,
            )
        self.coordinators = [c for c in (self.pull, self.push, self.tracker) if c is not None]
        # One run of a job at a time (its ticker awaits it), plus the coordinator's own
        # guard: a cycle never overlaps itself. Monotonic time: wall-clock steps change nothing.
        self.scheduler = Ticker()
        self.monitor: Monitor | None = None
        self._probe: asyncio.Task[Any] | None = None
        self._gen_stop = asyncio.Event()
        self.lease_lost: LeaseLost | None = None
        self.storage_lost: str | None = None
        self._officer: DemoOfficer | None = None

    def failures(self) -> dict[str, int]:
        return {c.name: c.failures for c in self.coordinators}

    def storage_failure(self) -> str | None:
        return next(
            (str(c.error) for c in self.coordinators if isinstance(c.error, StorageError)), None
        )

    async def start(
        self, stack: contextlib.AsyncExitStack, monitor: Monitor | None
    ) -> asyncio.Task[None]:
        """Schedule every job, publish the mapping, start; the first cycles at once."""
        rt, s = self.rt, self.rt.config.settings
        self._schedule()
        if rt.world is not None:
            generator = asyncio.create_task(
                run_generator(rt.world, s.sandbox.generator_interval_s, self._gen_stop)
            )
            stack.push_async_callback(self._end_generator, generator)
        self.monitor = monitor
        stack.push_async_callback(self._end_probe)
        if monitor is not None:
            self.scheduler.add("health", self.health, HEALTH_REFRESH_S)
            await self.health()
        if rt.store.backend.name == "postgresql":
            self.scheduler.add("lease", self.renew_lease, s.storage.lease_s / 3)
        self.scheduler.add("storage_check", self.check_storage, STORAGE_CHECK_S)
        wd = watchdog_interval()
        if wd:
            self.scheduler.add("watchdog", lambda: sd_notify("WATCHDOG=1"), wd)
        await self.publish_mapping()
        self.scheduler.start()
        stack.push_async_callback(self.scheduler.aclose)
        log.info(
            "daemon_started",
            storage=rt.store.backend.describe(),
            lapor="sandbox" if rt.config.sandbox_mode else s.lapor.base_url,
            mapping_version=rt.mappings().version,
        )
        sd_notify("READY=1\nSTATUS=running")
        # First cycles right away rather than one interval after start.
        return asyncio.create_task(self.first_cycles())

    def _schedule(self) -> None:
        s, rt = self.rt.config.settings.sync, self.rt
        self.scheduler.add("pull", self.pull.tick, s.pull_interval_s, s.jitter_s)
        self.scheduler.add("push", self.push.tick, s.push_interval_s, s.jitter_s)
        if self.tracker is not None:
            self.scheduler.add("tracker", self.tracker.tick, s.tracker_interval_s, s.jitter_s)
        self.scheduler.add(
            "mappings", self.reload_mappings, rt.config.settings.mappings.reload_interval_s
        )
        if rt.config.settings.notify.enabled:  # e-mail: its own job, never in a cycle's way
            mailer = notify_send.sender_for(
                rt.config,
                self._smtp_password,
                self.ctx.db,
                rt.mappings,
                self.ctx.now,
                lambda kind, n: self.ctx.observer.progress(kind, n),
            )
            self.scheduler.add("notify", lambda: notify_send.job(mailer), NOTIFY_INTERVAL_S)
        if rt.world is not None and s.demo_officer and rt.tracker.desk() is not None:
            self._officer = DemoOfficer()
            self.scheduler.add("demo_officer", self.demo_officer, max(5.0, s.push_interval_s))

    async def drain(self, first: asyncio.Task[None]) -> int:
        """Stop at the next commit points, then cut off what outlives the grace; the exit
        code. The exit stack closes the rest."""
        log.info("daemon_stopping")
        sd_notify("STOPPING=1")
        self.ctx.stopping.set()  # cycles end at their next commit point
        self.scheduler.pause()
        self._gen_stop.set()
        inflight = [c.running for c in self.coordinators if c.running is not None] + [first]
        inflight = [t for t in inflight if t is not None and not t.done()]
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=STOP_GRACE_S)
            for task in pending:
                # Cut off mid-request: transactions run whole between awaits, so nothing
                # is half-written, and an unanswered POST is resent later with the same key.
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        lost = self.lease_lost is not None or self.storage_lost is not None
        return 1 if lost or any(c.fatal is not None for c in self.coordinators) else 0

    async def _end_generator(self, task: asyncio.Task[None]) -> None:
        self._gen_stop.set()
        await task

    async def _end_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe

    # -- the jobs ---------------------------------------------------------------------------

    async def pull_or_sweep(self) -> Any:
        # The daily sweep takes a pull's turn: never beside a pull, same request budget.
        last = await self.ctx.db(state.get_last_sweep)
        due = sweep_due(self.ctx.now(), last, self.rt.config.settings.sync.sweep_interval_s)
        return await run_cycle(self.ctx, CycleKind.SWEEP if due else CycleKind.PULL)

    async def first_cycles(self) -> None:
        await self.pull.tick()
        if self.tracker is not None:
            await self.tracker.tick()
        await self.push.tick()
        if self.monitor is not None:
            await self.health()  # /healthz and the gauges reflect the first cycles at once

    def _write_mapping_state(self, c: Connection) -> None:
        state.set_mapping_version(c, self.rt.mappings().version)
        state.set_mapping_error(c, self.rt.mappings.error)

    async def publish_mapping(self) -> None:
        await self.ctx.db(self._write_mapping_state)

    async def reload_mappings(self) -> None:
        before = self.rt.mappings.error
        # In a thread: a file system that hangs (NFS, a FIFO) must not freeze the loop.
        changed = await asyncio.to_thread(self.rt.mappings.reload_if_changed)
        if changed or self.rt.mappings.error != before:
            await self.publish_mapping()

    async def demo_officer(self) -> None:
        officer = self._officer
        assert officer is not None  # scheduled only with one

        def tx(c: Connection) -> Any:
            return officer.act(c, self.rt.tracker.desk(), self.rt.mappings(), self.ctx.now())

        tid = await self.ctx.db(tx)
        if tid:
            log.info("demo_officer_acted", tracking_id=tid)

    async def health(self) -> None:
        monitor = self.monitor
        if monitor is None:
            return
        try:
            monitor.refresh()
        except ConnectorError as exc:
            monitor.failed(str(exc))
        probing = self._probe is not None and not self._probe.done()
        if monitor.should_probe(self.pull.running is not None) and not probing:
            self._probe = asyncio.create_task(probe(self.rt.client))

    async def renew_lease(self) -> None:
        # An empty transaction: its commit renews the lease (fenced like every commit).
        try:
            await self.ctx.db(lambda c: None)
        except LeaseLost as exc:
            log.error("instance_lease_lost", error=str(exc))
            self.lease_lost = exc
            self.stop.set()
        except RetryLater as exc:
            # The database is down or restarting: the lease is a row and survives it; the
            # next renewal takes it up again unless another connector took it over.
            log.warning("instance_lease_not_renewed", error=str(exc))

    async def check_storage(self) -> None:
        # The file deleted, replaced or corrupt under us: stop with a clear error rather
        # than go on writing into an unlinked file (every commit is fenced on it too).
        store = self.rt.store
        problem = await asyncio.to_thread(store.backend.health_problem, store.engine)
        if problem:
            log.error("storage_unusable", error=problem)
            self.storage_lost = problem
            self.stop.set()


def warn_if_exposed(listen: str) -> bool:
    """/healthz names tracking ids and LAPOR!'s error codes: for this host's eyes. A
    listener on any other address is worth a warning at every start."""
    host = listen.rpartition(":")[0].strip("[]")
    if not listen or is_loopback(host):
        return False
    log.warning(
        "metrics_not_loopback",
        listen=listen,
        hint="anyone who reaches this address reads /metrics and /healthz; "
        "prefer 127.0.0.1 with a local Prometheus, or a firewall",
    )
    return True


@dataclass
class _Overdue:
    value: tuple[int, list[OverdueJSON]] | None = None
    at: float = 0.0


def _health_report(
    rt: Runtime,
    ctx: SyncContext,
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
        return report(
            conn,
            rt.config,
            rt.tracker,
            now,
            files=(None, rt.mappings.error) if rt.mappings.error else (rt.mappings().version, None),
            overdue=cache.value,
            storage_failure=storage_failure() if storage_failure else None,
        )

    return lambda: rt.store.run(tx)
