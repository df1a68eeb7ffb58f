"""One recorded cycle: run pull or push, write its run record, log its summary line."""

from __future__ import annotations

from typing import Any

import structlog

from connector.errors import ConnectorError
from connector.store import state
from connector.sync.context import SyncContext
from connector.sync.pull import pull
from connector.sync.push import push

log = structlog.get_logger("connector.cycle")


async def run_cycle(ctx: SyncContext, kind: str) -> dict[str, Any]:
    """Run one pull, sweep, push or tracker-worker cycle; its run record is written
    whether it succeeds or fails.

    A sweep is a pull over a wider window: it is recorded as a pull (with ``sweep``), and
    its success is noted as the last sweep.
    """
    started, t0 = ctx.now(), ctx.monotonic()
    sweep = kind == "sweep"
    try:
        if kind == "tracker":
            from connector.sync.tracker_worker import work

            stats: dict[str, Any] = dict((await work(ctx)).as_dict())
        elif kind == "push":
            stats = dict((await push(ctx)).as_dict())
        else:
            stats = dict((await pull(ctx, sweep=sweep)).as_dict())
            if sweep:
                stats["sweep"] = 1
            if sweep and not ctx.stopping.is_set():  # a sweep cut short by a stop is not done
                when = ctx.now().isoformat()
                await ctx.db(lambda conn: state.set_value(conn, state.LAST_SWEEP, when))
            kind = "pull"
    except (ConnectorError, OSError) as exc:
        await _record(ctx, kind if kind in ("push", "tracker") else "pull", started, False,
                      {"duration_s": _dur(ctx, t0), **({"sweep": 1} if sweep else {})}, str(exc))
        raise
    stats["duration_s"] = _dur(ctx, t0)
    await _record(ctx, kind, started, True, stats, None)
    log.info("sweep_cycle" if sweep else f"{kind}_cycle", **stats)
    return stats


def _dur(ctx: SyncContext, t0: float) -> float:
    return round(ctx.monotonic() - t0, 3)


async def _record(ctx: SyncContext, kind: str, started: Any, ok: bool, summary: dict[str, Any],
                  error: str | None) -> None:
    try:
        await ctx.db(lambda conn: state.record_run(conn, kind, started, ctx.now(), ok, summary,
                                                   error))
    except ConnectorError:
        # The storage itself failed; the caller reports the original error.
        log.warning("run_record_failed", kind=kind)


def summary_line(pulled: dict[str, Any], pushed: dict[str, Any]) -> str:
    keys_pull = ("fetched", "created", "updated", "unchanged", "held", "quarantined")
    keys_push = ("pushed", "failed")
    parts = [f"{k}={pulled.get(k, 0)}" for k in keys_pull]
    parts += [f"{k}={pushed.get(k, 0)}" for k in keys_push]
    duration = float(pulled.get("duration_s", 0)) + float(pushed.get("duration_s", 0))
    parts.append(f"duration={duration:.2f}s")
    return " ".join(parts)
