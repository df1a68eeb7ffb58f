"""The health report behind ``status``: what operators need, and whether it is degraded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from connector.mappings import MappingError, load
from connector.settings import Config
from connector.store import state
from connector.timeutil import iso
from connector.tracker.builtin import BuiltinTracker

MAPPING_VERSION = "mapping_version"
MAPPING_ERROR = "mapping_error"


def _age(run: dict[str, Any] | None, now: datetime) -> float | None:
    return None if run is None else round((now - run.pop("_finished")).total_seconds(), 1)


def report(conn: Connection, config: Config, tracker: BuiltinTracker,
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
    failed = state.list_outbox(conn, "failed")
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
    overdue = tracker.overdue(conn, now)
    counts: dict[str, dict[str, int]] = {}
    for agency, status, n in tracker.counts(conn):
        counts.setdefault(agency, {})[status] = n
    return {
        "healthy": not findings,
        "findings": findings,
        "now": iso(now),
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
        "mapping": {"files_version": files_version,
                    "loaded_version": state.get_value(conn, MAPPING_VERSION),
                    "error": mapping_error},
        "overdue": {"count": len(overdue), "tickets": overdue[:50]},
    }


def render(rep: dict[str, Any]) -> str:
    lines = [f"Status: {'OK' if rep['healthy'] else 'DEGRADED'}  (at {rep['now']})"]
    for f in rep["findings"]:
        lines.append(f"  ! {f['code']}: {f['message']}")
    for kind in ("pull", "push"):
        info = rep[kind]
        last = info["last"]
        if last is None:
            lines.append(f"Last {kind}: never")
        else:
            res = "ok" if last["ok"] else f"FAILED ({last['error']})"
            lines.append(f"Last {kind}: {last['finished_at']} ({info['last_age_s']} s ago) {res}")
    lines.append(f"Watermark: {rep['watermark'] or '-'}")
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
    q = rep["quarantine"]
    lines.append("Quarantine: " + (", ".join(f"{k}={v}" for k, v in sorted(q.items())) or "empty"))
    mp = rep["mapping"]
    error = f"; error: {mp['error']}" if mp["error"] else ""
    lines.append(f"Mapping: files {mp['files_version'] or 'INVALID'}, daemon loaded "
                 f"{mp['loaded_version'] or '-'}{error}")
    lines.append(f"Overdue tickets (new, past due): {rep['overdue']['count']}")
    return "\n".join(lines)
