"""One recorded cycle: run pull, sweep, push or the tracker worker, write its run record,
log its summary line, and return its counts (the CLI formats them)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import Connection

from connector.errors import ConnectorError
from connector.store import furthest, state
from connector.store.keys import StateKey
from connector.sync.context import SyncContext
from connector.sync.pull import pull
from connector.sync.push import push

log = structlog.get_logger("connector.cycle")


class CycleKind(enum.StrEnum):
    """What one cycle runs. Stored in the run record as its ``kind`` (a sweep as a pull)."""

    PULL = "pull"
    SWEEP = "sweep"  # a pull over a wider window
    PUSH = "push"
    TRACKER = "tracker"  # the tracker worker (external trackers)


@dataclass(frozen=True)
class CycleResult:
    """A finished cycle: the job's own counts and how long it took."""

    kind: CycleKind  # as run: a sweep is a sweep here (its run record says pull)
    counts: Mapping[str, int]
    duration_s: float

    @property
    def summary(self) -> dict[str, float]:
        """The counts as the run record and the cycle's log line carry them."""
        return {
            **self.counts,
            **({"sweep": 1} if self.kind is CycleKind.SWEEP else {}),
            "duration_s": self.duration_s,
        }


async def run_cycle(ctx: SyncContext, kind: CycleKind) -> CycleResult:
    """Run one pull, sweep, push or tracker-worker cycle; its run record is written
    whether it succeeds or fails.

    A sweep is a pull over a wider window: it is recorded as a pull (with ``sweep``), and
    its success is noted as the last sweep.
    """
    kind = CycleKind(kind)
    recorded = CycleKind.PULL if kind is CycleKind.SWEEP else kind
    started, t0 = ctx.now(), ctx.monotonic()
    sweep = kind is CycleKind.SWEEP
    try:
        if kind is CycleKind.TRACKER:
            from connector.sync.tracker_worker import work

            counts = (await work(ctx)).as_dict()
        elif kind is CycleKind.PUSH:
            counts = (await push(ctx)).as_dict()
        else:
            counts = (await pull(ctx, sweep=sweep)).as_dict()
            if sweep and not ctx.stopping.is_set():  # a sweep cut short by a stop is not done
                when = ctx.now()
                await ctx.db(lambda conn: state.set_last_sweep(conn, when))
    except (ConnectorError, OSError) as exc:
        await _record(
            ctx,
            recorded,
            started,
            False,
            {"duration_s": _dur(ctx, t0), **({"sweep": 1} if sweep else {})},
            str(exc),
        )
        raise
    result = CycleResult(kind, counts, _dur(ctx, t0))
    await _record(ctx, recorded, started, True, result.summary, None)
    log.info("sweep_cycle" if sweep else f"{recorded}_cycle", **result.summary)
    if recorded is CycleKind.PULL:
        await _remember_furthest(ctx)
    return result


def _dur(ctx: SyncContext, t0: float) -> float:
    return round(ctx.monotonic() - t0, 3)


async def _record(
    ctx: SyncContext,
    kind: CycleKind,
    started: datetime,
    ok: bool,
    summary: Mapping[str, float],
    error: str | None,
) -> None:
    try:
        await ctx.db(
            lambda conn: state.record_run(conn, kind, started, ctx.now(), ok, summary, error)
        )
    except ConnectorError:
        # The storage itself failed; the caller reports the original error.
        log.warning("run_record_failed", kind=kind)


async def _remember_furthest(ctx: SyncContext) -> None:
    """Note the watermark just committed outside the database, so that ``status`` can tell
    a restored database (its watermark behind this one). Never fails the cycle."""
    path = furthest.marker_path(ctx.config.database_url, ctx.config.attachments_dir)
    if path is None:
        return

    def read(conn: Connection) -> tuple[datetime | None, str | None]:
        return state.get_watermark(conn), state.get_value(conn, StateKey.DB_NONCE)

    try:
        watermark, nonce = await ctx.db(read)
    except ConnectorError:
        return  # the storage failed just now: the next pull notes it
    known = furthest.read(path)
    if watermark is None or not nonce or not furthest.advanced(known, watermark, nonce):
        return
    try:
        furthest.write(path, furthest.Furthest(watermark, nonce))
    except OSError as exc:
        log.warning("furthest_watermark_unwritten", path=str(path), error=exc.__class__.__name__)
