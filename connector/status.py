"""The health report behind ``status``: what operators need, and whether it is degraded."""

from __future__ import annotations

import shutil
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from connector.domain import OutboxState
from connector.errors import ConnectorError
from connector.logging import redact_text
from connector.mappings import MappingError, load
from connector.notify import queue as notify_queue
from connector.settings import Config, load_credentials
from connector.store import followups, state
from connector.store.base import backend_for
from connector.store.sqlite import SqliteBackend
from connector.sync.core import SETTLED_REASONS
from connector.timeutil import iso
from connector.tracker.port import TrackerPort
from connector.tracker.rows import OverdueJSON, OverdueTicketJSON

OVERDUE_SHOWN = 50  # tickets listed under "overdue" in status (the count covers all)
QUARANTINE_MAX_AGE_S = 86400  # older quarantine makes status degraded: someone must look
# Less free space than this beside the SQLite database: the disk is full. SQLite keeps
# what its failed writes took (the WAL is not shrunk on a rollback), so after a
# "database or disk is full" next to nothing is left, and no run record saying so fits.
STORAGE_MIN_FREE_BYTES = 1 << 20


def _age(run: dict[str, Any] | None, now: datetime) -> float | None:
    return None if run is None else round((now - run.pop("_finished")).total_seconds(), 1)


def _running(progress: dict[str, Any] | None, last: dict[str, Any] | None,
             now: datetime) -> dict[str, Any] | None:
    """The pull now running (started after the last recorded pull ended), with its counts."""
    if progress is None or (last is not None and (
            datetime.fromisoformat(progress["started_at"])
            <= datetime.fromisoformat(last["finished_at"]))):
        return None
    updated = datetime.fromisoformat(progress["updated_at"])
    return {**progress, "progress_age_s": round((now - updated).total_seconds(), 1)}


TRACKER_UNREACHABLE_S = 600  # an external tracker silent this long makes status degraded


def report(conn: Connection, config: Config, tracker: TrackerPort,
           now: datetime, overdue_shown: int = OVERDUE_SHOWN,
           files: tuple[str | None, str | None] | None = None,
           overdue: tuple[int, list[OverdueJSON]] | None = None,
           storage_failure: str | None = None) -> dict[str, Any]:
    """The health report. ``files`` is the mapping files' (version, error) and
    ``overdue`` the result of ``followups.overdue`` when the caller already has them (the
    daemon); otherwise both are read here. ``storage_failure``: the daemon's jobs are
    failing on the database itself (its error)."""
    s = config.settings.sync
    findings: list[dict[str, str]] = []
    pulls = {}
    for kind, interval in (("pull", s.pull_interval_s), ("push", s.push_interval_s)):
        last, last_ok = state.last_runs(conn, kind)
        last_age, ok_age = _age(last, now), _age(last_ok, now)
        pulls[kind] = {"last": last, "last_age_s": last_age, "last_ok": last_ok,
                       "last_ok_age_s": ok_age}
        if kind == "pull":
            limit = interval * s.stale_after_intervals
            progress = state.pull_progress_at(conn)
            progress_age = (now - progress).total_seconds() if progress else None
            pulls[kind]["progress_age_s"] = progress_age
            pulls[kind]["running"] = _running(state.get_pull_running(conn), last, now)
            # A long first pull (a backlog under the request budget) commits as it goes: it
            # is alive while its commits are recent, though no whole cycle has ended yet.
            if ok_age is not None and progress_age is not None:
                ok_age = min(ok_age, progress_age)
            if ok_age is None and progress_age is not None and progress_age <= limit:
                pass
            elif ok_age is None:
                findings.append({"code": "never_pulled",
                                 "message": "no successful pull yet"})
            elif ok_age > limit:
                findings.append({"code": "pull_stale",
                                 "message": f"no successful pull for {int(ok_age)} s "
                                            f"(more than {s.stale_after_intervals} intervals)"})
    outbox = state.outbox_counts(conn)
    failed = state.list_outbox(conn, OutboxState.FAILED)
    if failed:
        findings.append({"code": "push_failed",
                         "message": f"{len(failed)} follow-up(s) refused by LAPOR!; see "
                                    "`outbox list`, then `outbox retry ID` or "
                                    "`outbox dismiss ID --reason TEXT`"})
    refused_mail = notify_queue.failed_recipients(conn)
    if refused_mail:
        findings.append({"code": "notify_failed",
                         "message": "e-mail refused for good by "
                                    + ", ".join(f"{r['recipient']} ({r['error']})"
                                                for r in refused_mail)
                                    + "; fix the address (users, agencies.toml email)"})
    files_version, files_error = files if files is not None else _read_files(config)
    loaded_version, daemon_error = state.get_mapping_state(conn)
    mapping_error = files_error or daemon_error
    if mapping_error:
        findings.append({"code": "mapping_error", "message": mapping_error})
    quarantine = state.quarantine_by_reason(conn)
    oldest = {r: round((now - t).total_seconds()) for r, t in
              state.quarantine_oldest(conn).items()}
    stuck = sorted(r for r, age in oldest.items()
                   if age > QUARANTINE_MAX_AGE_S and r not in SETTLED_REASONS)
    if stuck:
        findings.append({"code": "quarantine_old",
                         "message": "records in quarantine for more than a day ("
                                    + ", ".join(stuck) + "); see `quarantine list`"})
    storage = _storage_health(config, storage_failure, findings)
    swept = state.get_last_sweep(conn)
    last_sweep = swept.isoformat() if swept else None
    tracker_info = _tracker_health(conn, tracker, now, findings)
    reporting = tracker.reporting()
    # Overdue is LAPOR!'s notion (stored due periods), whatever the tracker; the tracker
    # only names its ticket. The count covers all, the list the first few.
    overdue_count, first = overdue or followups.overdue(conn, now, overdue_shown)
    refs = reporting.refs(conn, [o["tracking_id"] for o in first]) if reporting else {}
    tickets: list[OverdueTicketJSON] = [{"id": refs.get(o["tracking_id"]), **o} for o in first]
    counts: dict[str, dict[str, int]] = {}
    for agency, status, n in (reporting.counts(conn) if reporting is not None else []):
        counts.setdefault(agency, {})[status] = n
    return redact_report(_secrets(config), {
        "healthy": not findings,
        "findings": findings,
        "now": iso(now),
        "settings": str(config.path),
        "database": config.database_display,
        "pull": pulls["pull"],
        "push": pulls["push"],
        "watermark": iso(state.get_watermark(conn)),
        "tickets": counts,
        "outbox": {"pending": outbox.get("pending", 0), "sent": outbox.get("sent", 0),
                   "failed": outbox.get("failed", 0),
                   "unconfirmed": outbox.get("unconfirmed", 0),
                   "dismissed": outbox.get("dismissed", 0),
                   "held_back": state.held_back(conn),
                   "failures": [{"id": f["id"], "tracking_id": f["tracking_id"],
                                 "code": f["last_error"], "attempts": f["attempts"]}
                                for f in failed]},
        "quarantine": quarantine,
        "quarantine_oldest_age_s": oldest,
        "last_sweep": last_sweep,
        "mapping": {"files_version": files_version,
                    "loaded_version": loaded_version,
                    "error": mapping_error},
        "overdue": {"count": overdue_count, "tickets": tickets},
        "tracker": tracker_info,
        "storage": storage,
        "restored": _restored(conn),
        "notify": {**notify_queue.counts(conn), "refused": refused_mail},
    })


# Where a report quotes others' words (LAPOR!'s `kode`, a tracker's refusal, an error's
# message): there it is masked as the logs mask it, for `status` and for /healthz alike.
_QUOTING = frozenset({"error", "message", "code", "reason", "detail"})


def redact_report(secrets: tuple[str, ...], value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: redact_report(secrets, v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_report(secrets, v, key) for v in value]
    if isinstance(value, str) and key in _QUOTING:
        return redact_text(value, secrets)
    return value


def _secrets(config: Config) -> tuple[str, ...]:
    try:
        return (load_credentials(config).client_secret,)
    except ConnectorError:
        return ()


def _restored(conn: Connection) -> dict[str, Any] | None:
    """Whether the database looks restored from a backup: LAPOR! already had follow-ups
    that this database had never tried to send (each was recognised, not sent again).
    Not a degradation: the next pulls re-read LAPOR! from the restored watermark."""
    seen = state.restored(conn)
    if seen is None:
        return None
    return {**seen, "watermark": iso(state.get_watermark(conn)),
            "message": f"the database looks restored from a backup: {seen['followups_found']} "
                       "follow-up(s) were already on LAPOR! though this database had never "
                       "sent them (recognised, not sent again); the pulls re-read LAPOR! from "
                       "the watermark. With the built-in tracker, officers' changes made after "
                       "the backup and not yet on LAPOR! are lost: see the README (Restore)"}


def free_bytes(config: Config) -> int | None:
    """Free space (for this user) on the SQLite database's filesystem; None elsewhere."""
    backend = backend_for(config.database_url)
    if not isinstance(backend, SqliteBackend) or backend.path is None:
        return None
    try:
        return shutil.disk_usage(backend.path.parent).free
    except OSError:
        return None


def _storage_health(config: Config, failure: str | None,
                    findings: list[dict[str, str]]) -> dict[str, Any]:
    """``storage_error``: the daemon's last cycle failed on the database, or (what the
    ``status`` command can see itself: a full disk leaves no room to record a failed run)
    the SQLite database's disk is (nearly) full."""
    free = free_bytes(config)
    problems = [] if failure is None else [f"the database refused the last cycle ({failure})"]
    if free is not None and free < STORAGE_MIN_FREE_BYTES:
        problems.append(f"{free // 1024} KiB free on the database's disk")
    if problems:
        findings.append({"code": "storage_error",
                         "message": "; ".join(problems) + ": every cycle rolls back whole and "
                                    "is retried; free space there (or fix the database) and "
                                    "the daemon goes on by itself"})
    return {"free_bytes": free, "error": failure}


def _read_files(config: Config) -> tuple[str | None, str | None]:
    try:
        return load(config.mappings_dir).version, None
    except MappingError as exc:
        return None, "; ".join(exc.problems)


def _tracker_health(conn: Connection, tracker: TrackerPort, now: datetime,
                    findings: list[dict[str, str]]) -> dict[str, Any]:
    """The tracker intents (external trackers): pending, failed, and the last contact."""
    from connector.store import intents
    from connector.tracker.sink import sink_for

    info: dict[str, Any] = {"kind": tracker.kind}
    if not sink_for(tracker).queued:
        return info
    info.update(intents.health(conn))
    down = info["unreachable"]
    if down is not None:
        age = (now - datetime.fromisoformat(down["since"])).total_seconds()
        if age >= TRACKER_UNREACHABLE_S:
            findings.append({"code": "tracker_unreachable",
                             "message": f"the {tracker.kind} tracker has not answered for "
                                        f"{int(age)} s ({down['reason']}); "
                                        f"{info['pending']} change(s) wait"})
    if info["failed"]:
        first = info["failures"][0]
        findings.append({"code": "tracker_failed",
                         "message": f"{info['failed']} change(s) refused by the {tracker.kind} "
                                    f"tracker, e.g. laporan {first['tracking_id']}: "
                                    f"{first['reason']}; fix it there, then `intents retry`"})
    return info
