"""The health report behind ``status``: what operators need, and whether it is degraded."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection

from connector.domain import OutboxState
from connector.errors import ConnectorError
from connector.health import (
    Finding,
    HealthReport,
    JobHealth,
    MappingHealth,
    NotifyHealth,
    NotifyRefusal,
    OutboxFailure,
    OutboxHealth,
    OverdueHealth,
    PullHealth,
    PullRunning,
    RestoredHealth,
    RestoredWatermark,
    StorageHealth,
    TrackerHealth,
)
from connector.logging import redact_text
from connector.mappings import MappingError, load
from connector.notify import queue as notify_queue
from connector.settings import Config, load_credentials
from connector.store import followups, furthest, state
from connector.store.base import backend_for
from connector.store.keys import StateKey
from connector.store.sqlite import SqliteBackend
from connector.store.state import RunRecord
from connector.timeutil import iso
from connector.tracker.port import TrackerPort
from connector.tracker.rows import OverdueJSON, OverdueTicketJSON

OVERDUE_SHOWN = 50  # tickets listed under "overdue" in status (the count covers all)
QUARANTINE_MAX_AGE_S = 86400  # older quarantine makes status degraded: someone must look
# Less free space than this beside the SQLite database: the disk is full. SQLite keeps
# what its failed writes took (the WAL is not shrunk on a rollback), so after a
# "database or disk is full" next to nothing is left, and no run record saying so fits.
STORAGE_MIN_FREE_BYTES = 1 << 20
T = TypeVar("T")


def _age(run: RunRecord | None, now: datetime) -> float | None:
    return None if run is None else round((now - run.finished_at).total_seconds(), 1)


def _running(
    progress: dict[str, Any] | None, last: RunRecord | None, now: datetime
) -> PullRunning | None:
    """The pull now running (started after the last recorded pull ended), with its counts."""
    if progress is None or (
        last is not None and (datetime.fromisoformat(progress["started_at"]) <= last.finished_at)
    ):
        return None
    updated = datetime.fromisoformat(progress["updated_at"])
    counts = {k: v for k, v in progress.items() if k not in ("started_at", "updated_at")}
    return PullRunning(
        progress["started_at"],
        progress["updated_at"],
        counts,
        round((now - updated).total_seconds(), 1),
    )


TRACKER_UNREACHABLE_S = 600  # an external tracker silent this long makes status degraded


def report(
    conn: Connection,
    config: Config,
    tracker: TrackerPort,
    now: datetime,
    overdue_shown: int = OVERDUE_SHOWN,
    files: tuple[str | None, str | None] | None = None,
    overdue: tuple[int, list[OverdueJSON]] | None = None,
    storage_failure: str | None = None,
) -> HealthReport:
    """The health report. ``files`` is the mapping files' (version, error) and
    ``overdue`` the result of ``followups.overdue`` when the caller already has them (the
    daemon); otherwise both are read here. ``storage_failure``: the daemon's jobs are
    failing on the database itself (its error)."""
    findings: list[Finding] = []
    pull_health, push_health = _jobs(conn, config, now, findings)
    outbox = _outbox(conn, findings)
    refused_mail = tuple(
        NotifyRefusal(r["recipient"], r["count"], r["error"])
        for r in notify_queue.failed_recipients(conn)
    )
    if refused_mail:
        findings.append(
            Finding(
                "notify_failed",
                "e-mail refused for good by "
                + ", ".join(f"{r.recipient} ({r.error})" for r in refused_mail)
                + "; fix the address (users, agencies.toml email)",
            )
        )
    files_version, files_error = files if files is not None else _read_files(config)
    loaded_version, daemon_error = state.get_mapping_state(conn)
    mapping_error = files_error or daemon_error
    if mapping_error:
        findings.append(Finding("mapping_error", mapping_error))
    quarantine = state.quarantine_by_reason(conn)
    oldest = {r: round((now - t).total_seconds()) for r, t in state.quarantine_oldest(conn).items()}
    stuck = _stuck(oldest)
    if stuck:
        findings.append(
            Finding(
                "quarantine_old",
                "records in quarantine for more than a day ("
                + ", ".join(stuck)
                + "); see `quarantine list`",
            )
        )
    storage = _storage_health(config, storage_failure, findings)
    tracker_info = _tracker_health(conn, tracker, now, findings)
    overdue_health, counts = _tickets(conn, tracker, now, overdue_shown, overdue)
    return redact_report(
        _secrets(config),
        HealthReport(
            now=now,
            settings=str(config.path),
            database=config.database_display,
            findings=tuple(findings),
            pull=pull_health,
            push=push_health,
            watermark=state.get_watermark(conn),
            tickets=counts,
            outbox=outbox,
            quarantine=quarantine,
            quarantine_oldest_age_s=oldest,
            last_sweep=state.get_last_sweep(conn),
            mapping=MappingHealth(files_version, loaded_version, mapping_error),
            overdue=overdue_health,
            tracker=tracker_info,
            storage=storage,
            restored=_restored(conn),
            restored_watermark=_restored_watermark(conn, config),
            notify=NotifyHealth(notify_queue.counts(conn), refused_mail),
        ),
    )


def _jobs(
    conn: Connection, config: Config, now: datetime, findings: list[Finding]
) -> tuple[PullHealth, JobHealth]:
    """The pull's and the push's last runs; ``never_pulled`` or ``pull_stale``."""
    s = config.settings.sync
    last, last_ok = state.last_runs(conn, "pull")
    ok_age = _age(last_ok, now)
    limit = s.pull_interval_s * s.stale_after_intervals
    progress = state.pull_progress_at(conn)
    progress_age = (now - progress).total_seconds() if progress else None
    pull_health = PullHealth(
        last,
        _age(last, now),
        last_ok,
        ok_age,
        progress_age,
        _running(state.get_pull_running(conn), last, now),
    )
    # A long first pull (a backlog under the request budget) commits as it goes: it
    # is alive while its commits are recent, though no whole cycle has ended yet.
    if ok_age is not None and progress_age is not None:
        ok_age = min(ok_age, progress_age)
    if ok_age is None and progress_age is not None and progress_age <= limit:
        pass
    elif ok_age is None:
        findings.append(Finding("never_pulled", "no successful pull yet"))
    elif ok_age > limit:
        findings.append(
            Finding(
                "pull_stale",
                f"no successful pull for {int(ok_age)} s "
                f"(more than {s.stale_after_intervals} intervals)",
            )
        )
    last, last_ok = state.last_runs(conn, "push")
    return pull_health, JobHealth(last, _age(last, now), last_ok, _age(last_ok, now))


def _outbox(conn: Connection, findings: list[Finding]) -> OutboxHealth:
    counts = state.outbox_counts(conn)
    failed = state.list_outbox(conn, OutboxState.FAILED)
    if failed:
        findings.append(
            Finding(
                "push_failed",
                f"{len(failed)} follow-up(s) refused by LAPOR!; see "
                "`outbox list`, then `outbox retry ID` or "
                "`outbox dismiss ID --reason TEXT`",
            )
        )
    return OutboxHealth(
        pending=counts.get("pending", 0),
        sent=counts.get("sent", 0),
        failed=counts.get("failed", 0),
        unconfirmed=counts.get("unconfirmed", 0),
        dismissed=counts.get("dismissed", 0),
        held_back=state.held_back(conn),
        failures=tuple(
            OutboxFailure(f["id"], f["tracking_id"], f["last_error"], f["attempts"]) for f in failed
        ),
    )


def _tickets(
    conn: Connection,
    tracker: TrackerPort,
    now: datetime,
    shown: int,
    overdue: tuple[int, list[OverdueJSON]] | None,
) -> tuple[OverdueHealth, dict[str, dict[str, int]]]:
    """Overdue is LAPOR!'s notion (stored due periods), whatever the tracker; the tracker
    only names its ticket. The count covers all, the list the first few."""
    reporting = tracker.reporting()
    overdue_count, first = overdue or followups.overdue(conn, now, shown)
    refs = reporting.refs(conn, [o["tracking_id"] for o in first]) if reporting else {}
    tickets: list[OverdueTicketJSON] = [{"id": refs.get(o["tracking_id"]), **o} for o in first]
    counts: dict[str, dict[str, int]] = {}
    for agency, status, n in reporting.counts(conn) if reporting is not None else []:
        counts.setdefault(agency, {})[status] = n
    return OverdueHealth(overdue_count, tuple(tickets)), counts


# Where a report quotes others' words (LAPOR!'s `kode`, a tracker's refusal, an error's
# message): there it is masked as the logs mask it, for `status` and for /healthz alike.
_QUOTING = frozenset({"error", "message", "code", "reason", "detail"})


def redact_report(secrets: tuple[str, ...], value: T, key: str = "") -> T:
    """``value`` with every quoted text masked; records are rebuilt, never changed."""
    out: Any = value
    if is_dataclass(value) and not isinstance(value, type):
        out = replace(
            value,
            **{
                f.name: redact_report(secrets, getattr(value, f.name), f.name)
                for f in fields(value)
                if f.init
            },
        )
    elif isinstance(value, Mapping):
        out = {k: redact_report(secrets, v, str(k)) for k, v in value.items()}
    elif isinstance(value, list | tuple):
        out = type(value)(redact_report(secrets, v, key) for v in value)
    elif isinstance(value, str) and key in _QUOTING:
        out = redact_text(value, secrets)
    return cast(T, out)


def _secrets(config: Config) -> tuple[str, ...]:
    try:
        return (load_credentials(config).client_secret,)
    except ConnectorError:
        return ()


def _restored(conn: Connection) -> RestoredHealth | None:
    """Whether the database looks restored from a backup: LAPOR! already had follow-ups
    that this database had never tried to send (each was recognised, not sent again).
    Not a degradation: the next pulls re-read LAPOR! from the restored watermark."""
    seen = state.restored(conn)
    if seen is None:
        return None
    return RestoredHealth(
        seen["first_seen"],
        seen["last_seen"],
        seen["followups_found"],
        iso(state.get_watermark(conn)),
        f"the database looks restored from a backup: {seen['followups_found']} "
        "follow-up(s) were already on LAPOR! though this database had never "
        "sent them (recognised, not sent again); the pulls re-read LAPOR! from "
        "the watermark. With the built-in tracker, officers' changes made after "
        "the backup and not yet on LAPOR! are lost: see the README (Restore)",
    )


def _restored_watermark(conn: Connection, config: Config) -> RestoredWatermark | None:
    """Whether the watermark went back: behind the furthest one this connector committed
    for this same database (its nonce), which a file outside the database remembers."""
    known = furthest.read(furthest.marker_path(config.database_url, config.attachments_dir))
    watermark = state.get_watermark(conn)
    if known is None or not furthest.behind(
        known, watermark, state.get_value(conn, StateKey.DB_NONCE)
    ):
        return None
    at, ahead = iso(watermark), iso(known.watermark)
    return RestoredWatermark(
        at,
        ahead or "",
        f"the database looks restored from a backup: its watermark ({at or 'none'}) is "
        f"behind {ahead}, the furthest this connector has committed; the next pulls re-read "
        f"LAPOR! from {at or 'the start'}, which brings back every complaint changed since "
        "(nothing to do). With the built-in tracker, officers' changes made after the "
        "backup and not yet on LAPOR! are lost: see the README (Restore)",
    )


def free_bytes(config: Config) -> int | None:
    """Free space (for this user) on the SQLite database's filesystem; None elsewhere."""
    backend = backend_for(config.database_url)
    if not isinstance(backend, SqliteBackend) or backend.path is None:
        return None
    try:
        return shutil.disk_usage(backend.path.parent).free
    except OSError:
        return None


def _storage_health(config: Config, failure: str | None, findings: list[Finding]) -> StorageHealth:
    """``storage_error``: the daemon's last cycle failed on the database, or (what the
    ``status`` command can see itself: a full disk leaves no room to record a failed run)
    the SQLite database's disk is (nearly) full."""
    free = free_bytes(config)
    problems = [] if failure is None else [f"the database refused the last cycle ({failure})"]
    if free is not None and free < STORAGE_MIN_FREE_BYTES:
        problems.append(f"{free // 1024} KiB free on the database's disk")
    if problems:
        findings.append(
            Finding(
                "storage_error",
                "; ".join(problems) + ": every cycle rolls back whole and "
                "is retried; free space there (or fix the database) and "
                "the daemon goes on by itself",
            )
        )
    return StorageHealth(free, failure)


def _read_files(config: Config) -> tuple[str | None, str | None]:
    try:
        return load(config.mappings_dir).version, None
    except MappingError as exc:
        return None, "; ".join(exc.problems)


def _stuck(oldest: Mapping[str, int]) -> list[str]:
    """The reasons held longer than a day that need somebody."""
    old = [r for r, age in oldest.items() if age > QUARANTINE_MAX_AGE_S]
    if not old:
        return []
    from connector.sync.core import SETTLED_REASONS  # the pull's core: only when needed

    return sorted(r for r in old if r not in SETTLED_REASONS)


def _tracker_health(
    conn: Connection, tracker: TrackerPort, now: datetime, findings: list[Finding]
) -> TrackerHealth:
    """The tracker intents (external trackers): pending, failed, and the last contact."""
    from connector.store import intents
    from connector.tracker.sink import sink_for

    if not sink_for(tracker).queued:
        return TrackerHealth(tracker.kind)
    info = intents.health(conn)
    down = info["unreachable"]
    if down is not None:
        age = (now - datetime.fromisoformat(down["since"])).total_seconds()
        if age >= TRACKER_UNREACHABLE_S:
            findings.append(
                Finding(
                    "tracker_unreachable",
                    f"the {tracker.kind} tracker has not answered for "
                    f"{int(age)} s ({down['reason']}); "
                    f"{info['pending']} change(s) wait",
                )
            )
    if info["failed"]:
        first = info["failures"][0]
        findings.append(
            Finding(
                "tracker_failed",
                f"{info['failed']} change(s) refused by the {tracker.kind} "
                f"tracker, e.g. laporan {first['tracking_id']}: "
                f"{first['reason']}; fix it there, then `intents retry`",
            )
        )
    return TrackerHealth(tracker.kind, info)
