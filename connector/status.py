"""The health report behind ``status``: what operators need, and whether it is degraded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from connector.domain import OutboxState
from connector.mappings import MappingError, load
from connector.settings import Config
from connector.store import state
from connector.sync.core import SETTLED_REASONS
from connector.timeutil import human_iso, iso
from connector.tracker.port import TrackerPort

MAPPING_VERSION = "mapping_version"
MAPPING_ERROR = "mapping_error"
QUARANTINE_MAX_AGE_S = 86400  # older quarantine makes status degraded: someone must look


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
           now: datetime) -> dict[str, Any]:
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
            raw = state.get_value(conn, state.PULL_PROGRESS)
            progress_age = (now - datetime.fromisoformat(raw)).total_seconds() if raw else None
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
    try:
        files_version: str | None = load(config.mappings_dir).version
        files_error = None
    except MappingError as exc:
        files_version, files_error = None, "; ".join(exc.problems)
    daemon_error = state.get_value(conn, MAPPING_ERROR) or None
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
    last_sweep = state.get_value(conn, state.LAST_SWEEP)
    tracker_info = _tracker_health(conn, tracker, now, findings)
    reporting = tracker.reporting()
    overdue = reporting.overdue(conn, now) if reporting is not None else []
    counts: dict[str, dict[str, int]] = {}
    for agency, status, n in (reporting.counts(conn) if reporting is not None else []):
        counts.setdefault(agency, {})[status] = n
    return {
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
                    "loaded_version": state.get_value(conn, MAPPING_VERSION),
                    "error": mapping_error},
        "overdue": {"count": len(overdue), "tickets": overdue[:50]},
        "tracker": tracker_info,
    }


def _tracker_health(conn: Connection, tracker: TrackerPort, now: datetime,
                    findings: list[dict[str, str]]) -> dict[str, Any]:
    """The tracker intents (external trackers): pending, failed, and the last contact."""
    from connector.store import intents

    info: dict[str, Any] = {"kind": tracker.kind}
    if tracker.inline is not None:
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


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{int(seconds)} s"


def render(rep: dict[str, Any]) -> str:
    lines = [f"Status: {'OK' if rep['healthy'] else 'DEGRADED'}  (at {human_iso(rep['now'])})"]
    for f in rep["findings"]:
        lines.append(f"  ! {f['code']}: {f['message']}")
    lines.append(f"Settings: {rep['settings']}")
    lines.append(f"Database: {rep['database']}")
    for kind in ("pull", "push"):
        info = rep[kind]
        last = info["last"]
        if last is None:
            lines.append(f"Last {kind}: never")
        else:
            res = "ok" if last["ok"] else f"FAILED ({last['error']})"
            lines.append(f"Last {kind}: {human_iso(last['finished_at'])} "
                         f"({info['last_age_s']} s ago) {res}")
        run = info.get("running")
        if run:
            lines.append(f"Pull running since {human_iso(run['started_at'])}: pages={run['pages']} "
                         f"fetched={run['fetched']} created={run['created']} "
                         f"updated={run['updated']} quarantined={run['quarantined']} "
                         f"(last progress {run['progress_age_s']} s ago)")
    lines.append(f"Watermark: {human_iso(rep['watermark'])}")
    lines.append("Tickets by agency:")
    for agency, by_status in sorted(rep["tickets"].items()):
        parts = ", ".join(f"{k}={v}" for k, v in sorted(by_status.items()))
        lines.append(f"  {agency:<14} {parts}")
    ob = rep["outbox"]
    lines.append(f"Outbox: pending={ob['pending']} sent={ob['sent']} failed={ob['failed']} "
                 f"unconfirmed={ob['unconfirmed']} dismissed={ob['dismissed']} "
                 f"held_back={ob['held_back']}")
    for f in ob["failures"]:
        lines.append(f"  failed #{f['id']} laporan {f['tracking_id']}: {f['code']}")
    q, ages = rep["quarantine"], rep.get("quarantine_oldest_age_s", {})
    lines.append("Quarantine: " + (", ".join(
        f"{k}={v} (oldest {_human(ages.get(k))})" for k, v in sorted(q.items())) or "empty"))
    sweep = rep.get("last_sweep")
    lines.append(f"Last sweep: {human_iso(sweep) if sweep else 'never'}")
    mp = rep["mapping"]
    error = f"; error: {mp['error']}" if mp["error"] else ""
    lines.append(f"Mapping: files {mp['files_version'] or 'INVALID'}, daemon loaded "
                 f"{mp['loaded_version'] or '-'}{error}")
    tr = rep.get("tracker") or {}
    if "pending" in tr:
        down = tr["unreachable"]
        lines.append(f"Tracker ({tr['kind']}): pending={tr['pending']} failed={tr['failed']} "
                     f"last contact {human_iso(tr['last_contact'])}"
                     + (f"; unreachable since {human_iso(down['since'])}" if down else ""))
        for f in tr["failures"][:10]:
            lines.append(f"  failed #{f['id']} laporan {f['tracking_id']} ({f['kind']}): "
                         f"{f['reason']}")
    od = rep["overdue"]
    lines.append(f"Overdue (no follow-up on LAPOR! by the due time): {od['count']}")
    for t in od["tickets"][:10]:
        lines.append(f"  laporan {t['tracking_id']} {t['agency']}: due {human_iso(t['due_at'])}")
    if od["count"] > 10:
        lines.append(f"  ... {od['count'] - 10} more (`status --json`)")
    return "\n".join(lines)
