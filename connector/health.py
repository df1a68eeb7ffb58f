"""The health report as frozen records: ``status.report`` builds it once; the ``status``
command, /healthz and the gauges read it and never change it. A reader that adds
findings (the daemon's own: failing jobs, LAPOR! unreachable) makes a new report with
``with_findings``. ``as_dict`` is its JSON form (``status --json``, /healthz), whose
keys are the fields' names, in this order.

Parts that other modules hand over as JSON (the tracker's queue, overdue tickets, a run's
counts) stay mappings here: this module only carries them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from connector.store.state import RunRecord
from connector.timeutil import iso
from connector.tracker.rows import OverdueTicketJSON


@dataclass(frozen=True)
class Finding:
    """Something an operator must look at; any finding makes the report degraded."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class PullRunning:
    """The pull now running (started after the last recorded pull ended)."""

    started_at: str
    updated_at: str
    counts: Mapping[str, int]  # as the pull last committed them (pages, fetched, ...)
    progress_age_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            **self.counts,
            "progress_age_s": self.progress_age_s,
        }


def _run(run: RunRecord | None) -> dict[str, object] | None:
    return None if run is None else run.as_dict()


@dataclass(frozen=True)
class JobHealth:
    """A job's last run and last successful run, and how long ago each ended."""

    last: RunRecord | None = None
    last_age_s: float | None = None
    last_ok: RunRecord | None = None
    last_ok_age_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "last": _run(self.last),
            "last_age_s": self.last_age_s,
            "last_ok": _run(self.last_ok),
            "last_ok_age_s": self.last_ok_age_s,
        }


@dataclass(frozen=True)
class PullHealth(JobHealth):
    progress_age_s: float | None = None  # since a pull last committed (a running one too)
    running: PullRunning | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "progress_age_s": self.progress_age_s,
            "running": None if self.running is None else self.running.as_dict(),
        }


@dataclass(frozen=True)
class OutboxFailure:
    id: int
    tracking_id: str
    code: str | None  # LAPOR!'s refusal, as it named it
    attempts: int


@dataclass(frozen=True)
class OutboxHealth:
    pending: int = 0
    sent: int = 0
    failed: int = 0
    unconfirmed: int = 0
    dismissed: int = 0
    held_back: int = 0  # waiting behind a failed earlier entry of their complaint
    failures: tuple[OutboxFailure, ...] = ()

    def by_state(self) -> dict[str, int]:
        return {
            "pending": self.pending,
            "sent": self.sent,
            "failed": self.failed,
            "unconfirmed": self.unconfirmed,
            "dismissed": self.dismissed,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.by_state(),
            "held_back": self.held_back,
            "failures": [
                {"id": f.id, "tracking_id": f.tracking_id, "code": f.code, "attempts": f.attempts}
                for f in self.failures
            ],
        }


@dataclass(frozen=True)
class MappingHealth:
    files_version: str | None = None  # None: the files are invalid
    loaded_version: str | None = None  # what the daemon (or `sync`) last loaded
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_version": self.files_version,
            "loaded_version": self.loaded_version,
            "error": self.error,
        }


@dataclass(frozen=True)
class OverdueHealth:
    count: int = 0  # all of them
    tickets: tuple[OverdueTicketJSON, ...] = ()  # the first few

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "tickets": [dict(t) for t in self.tickets]}


@dataclass(frozen=True)
class TrackerHealth:
    kind: str
    queue: Mapping[str, Any] | None = None  # intents.health (external trackers only)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **(self.queue or {})}


@dataclass(frozen=True)
class StorageHealth:
    free_bytes: int | None = None  # on the SQLite database's filesystem
    error: str | None = None  # the daemon's jobs fail on the database

    def as_dict(self) -> dict[str, Any]:
        return {"free_bytes": self.free_bytes, "error": self.error}


@dataclass(frozen=True)
class RestoredHealth:
    """LAPOR! already had follow-ups that this database had never tried to send."""

    first_seen: str
    last_seen: str
    followups_found: int
    watermark: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "followups_found": self.followups_found,
            "watermark": self.watermark,
            "message": self.message,
        }


@dataclass(frozen=True)
class RestoredWatermark:
    """The watermark is behind the furthest one this connector ever committed for this
    database (noted outside it): restored from a backup. Not a degradation: the next pulls
    re-read LAPOR! from the restored watermark."""

    watermark: str | None
    furthest_watermark: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "watermark": self.watermark,
            "furthest_watermark": self.furthest_watermark,
            "message": self.message,
        }


@dataclass(frozen=True)
class NotifyRefusal:
    recipient: str  # masked
    count: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"recipient": self.recipient, "count": self.count, "error": self.error}


@dataclass(frozen=True)
class NotifyHealth:
    counts: Mapping[str, int] = field(default_factory=dict)  # messages by state
    refused: tuple[NotifyRefusal, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**self.counts, "refused": [r.as_dict() for r in self.refused]}


@dataclass(frozen=True)
class HealthReport:
    now: datetime
    settings: str
    database: str
    findings: tuple[Finding, ...] = ()
    pull: PullHealth = PullHealth()
    push: JobHealth = JobHealth()
    watermark: datetime | None = None
    tickets: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    outbox: OutboxHealth = OutboxHealth()
    quarantine: Mapping[str, int] = field(default_factory=dict)  # entries by reason
    quarantine_oldest_age_s: Mapping[str, int] = field(default_factory=dict)
    last_sweep: datetime | None = None
    mapping: MappingHealth = MappingHealth()
    overdue: OverdueHealth = OverdueHealth()
    tracker: TrackerHealth = TrackerHealth("builtin")
    storage: StorageHealth = StorageHealth()
    restored: RestoredHealth | None = None
    restored_watermark: RestoredWatermark | None = None
    notify: NotifyHealth = NotifyHealth()

    @property
    def healthy(self) -> bool:
        return not self.findings

    def with_findings(self, extra: tuple[Finding, ...]) -> HealthReport:
        return replace(self, findings=self.findings + extra) if extra else self

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``status --json`` and /healthz print it."""
        return {
            "healthy": self.healthy,
            "findings": [f.as_dict() for f in self.findings],
            "now": iso(self.now),
            "settings": self.settings,
            "database": self.database,
            "pull": self.pull.as_dict(),
            "push": self.push.as_dict(),
            "watermark": iso(self.watermark),
            "tickets": {a: dict(by) for a, by in self.tickets.items()},
            "outbox": self.outbox.as_dict(),
            "quarantine": dict(self.quarantine),
            "quarantine_oldest_age_s": dict(self.quarantine_oldest_age_s),
            "last_sweep": None if self.last_sweep is None else self.last_sweep.isoformat(),
            "mapping": self.mapping.as_dict(),
            "overdue": self.overdue.as_dict(),
            "tracker": self.tracker.as_dict(),
            "storage": self.storage.as_dict(),
            "restored": None if self.restored is None else self.restored.as_dict(),
            "restored_watermark": None
            if self.restored_watermark is None
            else self.restored_watermark.as_dict(),
            "notify": self.notify.as_dict(),
        }
