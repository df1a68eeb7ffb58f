"""What the commands print for a person: the ``sync`` line and the ``status`` text.

The parts return data (``run_cycle``'s counts, ``status.report``); only the CLI formats it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from connector.health import HealthReport, PullHealth
from connector.timeutil import human_iso, iso

if TYPE_CHECKING:  # not imported at run time: `status` need not load the sync
    from connector.sync.cycle import CycleResult


def summary_line(pulled: CycleResult, pushed: CycleResult) -> str:
    """The counts of ``sync ok: …`` from a pull's and a push's results."""
    keys_pull = ("fetched", "created", "updated", "unchanged", "held", "quarantined")
    keys_push = ("pushed", "failed")
    parts = [f"{k}={pulled.counts.get(k, 0)}" for k in keys_pull]
    parts += [f"{k}={pushed.counts.get(k, 0)}" for k in keys_push]
    duration = pulled.duration_s + pushed.duration_s
    parts.append(f"duration={duration:.2f}s")
    return " ".join(parts)


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{int(seconds)} s"


def _when(moment: datetime | None) -> str:
    return human_iso(iso(moment))


def render_status(rep: HealthReport) -> str:
    """``status`` for a person (``status --json`` prints the report's JSON form)."""
    lines = [f"Status: {'OK' if rep.healthy else 'DEGRADED'}  (at {_when(rep.now)})"]
    for f in rep.findings:
        lines.append(f"  ! {f.code}: {f.message}")
    lines.append(f"Settings: {rep.settings}")
    lines.append(f"Database: {rep.database}")
    lines += _jobs(rep)
    lines.append(f"Watermark: {_when(rep.watermark)}")
    if rep.restored:
        lines.append(
            f"Restored?: {rep.restored.message} (first seen {human_iso(rep.restored.first_seen)})"
        )
    if rep.restored_watermark:
        lines.append(f"Restored?: {rep.restored_watermark.message}")
    lines.append("Tickets by agency:")
    for agency, by_status in sorted(rep.tickets.items()):
        parts = ", ".join(f"{k}={v}" for k, v in sorted(by_status.items()))
        lines.append(f"  {agency:<14} {parts}")
    ob = rep.outbox
    lines.append(
        f"Outbox: pending={ob.pending} sent={ob.sent} failed={ob.failed} "
        f"unconfirmed={ob.unconfirmed} dismissed={ob.dismissed} "
        f"held_back={ob.held_back}"
    )
    for failure in ob.failures:
        lines.append(f"  failed #{failure.id} laporan {failure.tracking_id}: {failure.code}")
    q, ages = rep.quarantine, rep.quarantine_oldest_age_s
    lines.append(
        "Quarantine: "
        + (
            ", ".join(f"{k}={v} (oldest {_human(ages.get(k))})" for k, v in sorted(q.items()))
            or "empty"
        )
    )
    sweep = rep.last_sweep
    lines.append(f"Last sweep: {human_iso(sweep.isoformat()) if sweep else 'never'}")
    mp = rep.mapping
    error = f"; error: {mp.error}" if mp.error else ""
    lines.append(
        f"Mapping: files {mp.files_version or 'INVALID'}, daemon loaded "
        f"{mp.loaded_version or '-'}{error}"
    )
    lines += _tracker(rep)
    od = rep.overdue
    lines.append(f"Overdue (no follow-up on LAPOR! by the due time): {od.count}")
    for t in od.tickets[:10]:
        lines.append(f"  laporan {t['tracking_id']} {t['agency']}: due {human_iso(t['due_at'])}")
    if od.count > 10:
        lines.append(f"  ... {od.count - 10} more (`status --json`)")
    return "\n".join(lines)


def _jobs(rep: HealthReport) -> list[str]:
    lines = []
    for kind, info in (("pull", rep.pull), ("push", rep.push)):
        last = info.last
        if last is None:
            lines.append(f"Last {kind}: never")
        else:
            res = "ok" if last.ok else f"FAILED ({last.error})"
            lines.append(f"Last {kind}: {_when(last.finished_at)} ({info.last_age_s} s ago) {res}")
        run = info.running if isinstance(info, PullHealth) else None
        if run:
            c = run.counts
            lines.append(
                f"Pull running since {human_iso(run.started_at)}: pages={c['pages']} "
                f"fetched={c['fetched']} created={c['created']} "
                f"updated={c['updated']} quarantined={c['quarantined']} "
                f"(last progress {run.progress_age_s} s ago)"
            )
    return lines


def _tracker(rep: HealthReport) -> list[str]:
    """An external tracker's queue (the built-in one has none)."""
    tr = rep.tracker.queue
    if tr is None or "pending" not in tr:
        return []
    down = tr["unreachable"]
    lines = [
        f"Tracker ({rep.tracker.kind}): pending={tr['pending']} failed={tr['failed']} "
        f"last contact {human_iso(tr['last_contact'])}"
        + (f"; unreachable since {human_iso(down['since'])}" if down else "")
    ]
    for f in tr["failures"][:10]:
        lines.append(f"  failed #{f['id']} laporan {f['tracking_id']} ({f['kind']}): {f['reason']}")
    return lines
