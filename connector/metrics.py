"""The daemon's /metrics (Prometheus) and /healthz, on ``metrics.listen``.

Counters are fed from the cycles' own running totals (an observer in the SyncContext)
and from the LAPOR! client's per-request hook; gauges are read from the database by
``Monitor.refresh``, which runs on the event loop like every other transaction. The
HTTP server (wsgiref, on a thread) only reads what the loop last computed, so it never
touches the database. Labels are fixed vocabularies: never a tracking id or any content.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

from connector import __version__
from connector.health import Finding, HealthReport
from connector.logging import redact_text

log = structlog.get_logger("connector.metrics")

ACTIONS = ("created", "updated", "unchanged", "held", "quarantined")
RESULTS = ("sent", "replayed", "failed")
OUTBOX_STATES = ("pending", "sent", "failed")
# LAPOR! silent this long with requests failing: the daemon is degraded.
UNREACHABLE_AFTER_S = 10.0
# No answer from LAPOR! for this long (between pulls): ask /ping, which needs no token.
PROBE_IDLE_S = 20.0


class Metrics:
    """The connector's own registry (never the process-global one)."""

    def __init__(self, version: str = __version__):
        # The exposition lists the families in the order they are declared here: kept so
        # that a scrape's text stays the same release after release.
        r = self.registry = CollectorRegistry()
        self.build_info = Gauge(
            "lapor_connector_build_info", "Version of the connector", ["version"], registry=r
        )
        self.build_info.labels(version).set(1)
        self._cycles(r)
        self._backlog(r)
        self._lapor(r)
        self._health(r)
        self._tracker(r)
        self._running(r)
        self._last: dict[str, dict[str, int]] = {}

    def _cycles(self, r: CollectorRegistry) -> None:
        """What the pulls and pushes did, fed by ``progress``."""
        self.records = Counter(
            "lapor_connector_records",
            "Complaints processed by pulls, by decision",
            ["action"],
            registry=r,
        )
        self.followups = Counter(
            "lapor_connector_followups",
            "Follow-ups posted to LAPOR!, by result",
            ["result"],
            registry=r,
        )
        self.pull_last_success = Gauge(
            "lapor_connector_pull_last_success_timestamp_seconds",
            "End of the last successful pull (Unix time)",
            registry=r,
        )
        self.push_last_success = Gauge(
            "lapor_connector_push_last_success_timestamp_seconds",
            "End of the last successful push (Unix time)",
            registry=r,
        )
        # Each label at 0 from the start: its first increment then shows in a rate().
        for a in ACTIONS:
            self.records.labels(a)
        for res in RESULTS:
            self.followups.labels(res)

    def _backlog(self, r: CollectorRegistry) -> None:
        """What waits in the database, set by ``Monitor.refresh``."""
        self.outbox = Gauge(
            "lapor_connector_outbox_entries", "Outbox entries by state", ["state"], registry=r
        )
        self.quarantine = Gauge(
            "lapor_connector_quarantine_entries", "Records held in quarantine", registry=r
        )
        self.quarantine_by_reason = Gauge(
            "lapor_connector_quarantine_entries_by_reason",
            "Records held in quarantine, by reason",
            ["reason"],
            registry=r,
        )
        self.overdue = Gauge(
            "lapor_connector_overdue_tickets", "Tickets past their due date", registry=r
        )
        for st in OUTBOX_STATES:
            self.outbox.labels(st)

    def _lapor(self, r: CollectorRegistry) -> None:
        """The client's requests, fed by ``request``."""
        self.requests = Counter(
            "lapor_connector_lapor_requests",
            "HTTP requests to LAPOR!, by endpoint and HTTP code (or error class)",
            ["endpoint", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "lapor_connector_lapor_request_duration_seconds",
            "Duration of HTTP requests to LAPOR!",
            ["endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )

    def _health(self, r: CollectorRegistry) -> None:
        self.healthy = Gauge("lapor_connector_healthy", "1 when /healthz answers 200", registry=r)
        self.failures = Gauge(
            "lapor_connector_consecutive_failures",
            "Failed cycles in a row, by job",
            ["job"],
            registry=r,
        )
        for job in ("pull", "push"):
            self.failures.labels(job)

    def _tracker(self, r: CollectorRegistry) -> None:
        """An external tracker's queue of intents and its last answer."""
        self.intents = Gauge(
            "lapor_connector_tracker_intents",
            "Tracker intents (changes for an external tracker), by state",
            ["state"],
            registry=r,
        )
        self.tracker_contact = Gauge(
            "lapor_connector_tracker_last_contact_timestamp_seconds",
            "The last successful call to the tracker (Unix time)",
            registry=r,
        )

    def _running(self, r: CollectorRegistry) -> None:
        """The pull under way and the e-mail sent, fed by ``progress``."""
        self.pull_running = Gauge(
            "lapor_connector_pull_running_records",
            "Records fetched so far by the pull now running",
            registry=r,
        )
        self.notifications = Counter(
            "lapor_connector_notifications",
            "E-mail messages, by result (failed: refused for good)",
            ["result"],
            registry=r,
        )
        for res in ("sent", "failed"):
            self.notifications.labels(res)

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()

    # -- the SyncContext observer ---------------------------------------------------------

    def progress(self, kind: str, counts: Mapping[str, int]) -> None:
        """Running totals of a cycle; all zero starts a new cycle. Counters get the deltas."""
        if not any(counts.values()):
            self._last[kind] = dict(counts)
            return
        last = self._last.get(kind, {})
        delta = {k: max(0, int(v) - last.get(k, 0)) for k, v in counts.items()}
        self._last[kind] = dict(counts)
        if kind == "pull":
            for a in ACTIONS:
                if delta.get(a):
                    self.records.labels(a).inc(delta[a])
            self.pull_running.set(counts.get("fetched", 0))
        elif kind == "notify":
            for res in ("sent", "failed"):
                if delta.get(res):
                    self.notifications.labels(res).inc(delta[res])
        elif kind == "push":
            sent = delta.get("pushed", 0) - delta.get("replayed", 0)
            for res, n in (
                ("sent", sent),
                ("replayed", delta.get("replayed", 0)),
                ("failed", delta.get("failed", 0)),
            ):
                if n > 0:
                    self.followups.labels(res).inc(n)

    # -- the client's request hook ---------------------------------------------------------

    def request(self, endpoint: str, code: str, seconds: float) -> None:
        self.requests.labels(endpoint, code).inc()
        self.duration.labels(endpoint).observe(seconds)


class Reachability:
    """Whether LAPOR! answers: told about every request by the client's hook."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.last_answer: float | None = None
        self.failing_since: float | None = None
        self.last_error = ""

    def observe(self, code: str) -> None:
        # Any answer below 500 (429 included) means LAPOR! is there; 5xx and
        # connection errors mean it is not (maintenance answers 503).
        if code.isdigit() and int(code) < 500:
            self.last_answer, self.failing_since = self._clock(), None
        else:
            self.last_error = code
            if self.failing_since is None:
                self.failing_since = self._clock()

    def unreachable_for(self) -> float:
        return 0.0 if self.failing_since is None else self._clock() - self.failing_since

    def idle_for(self) -> float:
        return float("inf") if self.last_answer is None else self._clock() - self.last_answer


class Monitor:
    """Computes the health report and the gauges on the loop; serves them from a thread."""

    def __init__(
        self,
        metrics: Metrics,
        compute: Callable[[], HealthReport],
        failures: Callable[[], Mapping[str, int]],
        reach: Reachability,
        now: Callable[[], datetime],
        stale_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.metrics = metrics
        # The body is served from a thread; if the loop stops refreshing it (blocked, or
        # its timers frozen), what it says is old news: 503, whatever it said.
        self._stale_after = stale_after_s
        self._clock = clock
        self._refreshed: float | None = None
        self._compute = compute
        self._failures = failures
        self.reach = reach
        self._now = now
        self._body = json.dumps(
            {
                "healthy": False,
                "findings": [{"code": "starting", "message": "the daemon is starting"}],
            }
        ).encode()
        self._healthy = False
        self._server: WSGIServer | None = None
        self._reasons: set[str] = set()

    def refresh(self) -> HealthReport:
        """One transaction's worth of reading; call on the loop (as every DB access).
        Returns the report as served: the computed one with the daemon's own findings."""
        computed = self._compute()
        failures = dict(self._failures())
        for job, n in failures.items():
            self.metrics.failures.labels(job).set(n)
        rep = computed.with_findings(self._own_findings(failures))
        self._gauges(rep)
        self._body = json.dumps(rep.as_dict(), ensure_ascii=False, indent=2).encode()
        self._healthy = rep.healthy
        self._refreshed = self._clock()
        return rep

    def _own_findings(self, failures: Mapping[str, int]) -> tuple[Finding, ...]:
        """What only the daemon knows: its pulls failing, LAPOR! not answering."""
        found: list[Finding] = []
        if failures.get("pull"):
            found.append(
                Finding(
                    "pull_failing",
                    f"the last {failures['pull']} pull(s) failed; see the log (pull_failing)",
                )
            )
        down = self.reach.unreachable_for()
        if down >= UNREACHABLE_AFTER_S:
            found.append(
                Finding(
                    "lapor_unreachable",
                    f"LAPOR! has not answered for {int(down)} s ({self.reach.last_error})",
                )
            )
        return tuple(found)

    def _gauges(self, rep: HealthReport) -> None:
        m = self.metrics
        for job, gauge in ((rep.pull, m.pull_last_success), (rep.push, m.push_last_success)):
            if job.last_ok is not None:
                gauge.set(job.last_ok.finished_at.timestamp())
        by_state = rep.outbox.by_state()
        for st in OUTBOX_STATES:
            m.outbox.labels(st).set(by_state[st])
        m.quarantine.set(sum(rep.quarantine.values()))
        for reason in self._reasons - set(rep.quarantine):
            m.quarantine_by_reason.labels(reason).set(0)  # emptied since: 0, not the old count
        for reason, n in rep.quarantine.items():
            m.quarantine_by_reason.labels(reason).set(n)
        self._reasons |= set(rep.quarantine)
        m.overdue.set(rep.overdue.count)
        queue = rep.tracker.queue or {}
        for st in ("pending", "failed"):
            m.intents.labels(st).set(queue.get(st, 0))
        if queue.get("last_contact"):
            m.tracker_contact.set(datetime.fromisoformat(queue["last_contact"]).timestamp())
        m.healthy.set(1 if rep.healthy else 0)

    def failed(self, error: str) -> None:
        """The report itself could not be computed (e.g. the database is down)."""
        self.metrics.healthy.set(0)
        self._healthy = False
        self._body = json.dumps(
            {
                "healthy": False,
                "findings": [{"code": "storage_error", "message": redact_text(error)}],
            }
        ).encode()
        self._refreshed = self._clock()

    def served(self) -> tuple[bytes, bool]:
        """The /healthz body and whether it says healthy, as of now."""
        age = None if self._refreshed is None else self._clock() - self._refreshed
        if age is not None and age > self._stale_after:
            return json.dumps(
                {
                    "healthy": False,
                    "findings": [
                        {
                            "code": "health_stale",
                            "message": f"the health report has not been refreshed for "
                            f"{int(age)} s: the daemon is blocked or its timers stopped",
                        }
                    ],
                }
            ).encode(), False
        return self._body, self._healthy

    def should_probe(self, pulling: bool) -> bool:
        return not pulling and self.reach.idle_for() >= PROBE_IDLE_S

    # -- HTTP -------------------------------------------------------------------------------

    def wsgi(self) -> Callable[..., Iterable[bytes]]:
        metrics_app = make_wsgi_app(self.metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                return metrics_app(environ, start_response)
            if path == "/healthz":
                body, healthy = self.served()
                start_response(
                    "200 OK" if healthy else "503 Service Unavailable",
                    [
                        ("Content-Type", "application/json; charset=utf-8"),
                        ("Content-Length", str(len(body))),
                    ],
                )
                return [body]
            body = b"not found: /metrics or /healthz\n"
            start_response(
                "404 Not Found",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            )
            return [body]

        return app

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on a thread; raises OSError when the address cannot be bound."""
        server_cls: type[WSGIServer] = _BoundedServer
        if ":" in host:

            class _V6(_BoundedServer):
                address_family = socket.AF_INET6

            server_cls = _V6
        self._server = make_server(host, port, self.wsgi(), server_cls, handler_class=_QuietHandler)
        thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        thread.start()
        bound = self._server.server_address
        return str(bound[0]), int(bound[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


MAX_CONNECTIONS = 32  # far above any scraper's need; far below LimitNOFILE
READ_TIMEOUT_S = 5.0  # a client that sends nothing for this long is dropped


class _BoundedServer(ThreadingWSGIServer):
    """At most ``MAX_CONNECTIONS`` connections at once, each silent for at most
    ``READ_TIMEOUT_S``: a flood of half-open connections (slowloris) is turned away at
    the door and cannot take the file descriptors that the sync needs."""

    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: closed at once, no thread, no fd kept
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out or hung up: nothing to report (and no traceback)


class _QuietHandler(WSGIRequestHandler):
    timeout = READ_TIMEOUT_S  # the socket's timeout for every read

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds are not news


async def probe(client: Any) -> None:
    """Ask LAPOR!'s /ping; the client's request hook records the outcome."""
    try:
        await client.ping()
    except Exception as exc:  # the hook has recorded it; nothing else to do
        log.debug("health_probe_failed", error=exc.__class__.__name__)
