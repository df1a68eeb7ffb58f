"""The tracker worker: applies tracker intents outside any database transaction.

The same pattern as the LAPOR! outbox. Each intent is applied through the port
(idempotent: find-or-create, set-state, marker-checked messages), strictly in order per
complaint; the attempt is committed before the call, the result after it. A kill at any
moment leaves the intent pending, and the next try repeats it harmlessly.

- The tracker unreachable (``RetryLater``): the intent waits with backoff, the batch
  stops, and the job's own backoff applies; LAPOR! intake goes on meanwhile.
- The tracker refuses it (permissions, a workflow, a missing project): the intent is
  failed (``IntentState.FAILED``), visible in ``status`` with the reason, and retried on
  a slow schedule or by ``intents retry``. Later intents of that complaint wait behind it.
- A fatal error (the API key refused) goes to the coordinator: a person must act.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import structlog

from connector.errors import ConnectorError, Fatal, RetryLater
from connector.lapor.policy import backoff
from connector.store import intents
from connector.sync.context import SyncContext
from connector.tracker.port import Intent

log = structlog.get_logger("connector.tracker")
BATCH = 50
MAX_PER_CYCLE = 1000
REFUSED_RETRY_S = 900.0  # an admin may fix a workflow: try a refused intent again


@dataclass
class WorkStats:
    applied: int = 0
    failed: int = 0
    deferred: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def work(ctx: SyncContext) -> WorkStats:
    """Apply what is due. Raises ``RetryLater`` when the tracker is unreachable."""
    stats = WorkStats()
    max_backoff = ctx.config.settings.sync.max_backoff_s
    while stats.applied + stats.failed < MAX_PER_CYCLE:
        stored = await ctx.db(lambda conn: intents.due(conn, ctx.now(), BATCH))
        due = [Intent.of(i) for i in stored]
        if not due:
            break
        for intent in due:
            if ctx.stopping.is_set():
                return stats
            await _apply_one(ctx, intent, stats, max_backoff)
            ctx.observer.progress("tracker", stats.as_dict())
    return stats


async def _apply_one(
    ctx: SyncContext, intent: Intent, stats: WorkStats, max_backoff: float
) -> None:
    port = ctx.tracker
    await ctx.db(lambda conn: intents.start(conn, intent.id))
    try:
        ref = await port.apply(intent)
    except Fatal:
        raise
    except RetryLater as exc:
        now, delay = ctx.now(), backoff(intent.attempts, 30.0, max_backoff, 0.0)
        error = str(exc)
        await ctx.db(lambda conn: intents.retry_later(conn, intent.id, error, delay, now))
        stats.deferred += 1
        log.warning(
            "tracker_intent_deferred",
            tracking_id=intent.tracking_id,
            intent=intent.id,
            kind=intent.kind,
            error=error,
        )
        raise
    except (ConnectorError, KeyError, ValueError) as exc:
        # Refused (or a payload this tracker cannot map): visible, never skipped.
        reason = (
            str(exc)
            if isinstance(exc, ConnectorError)
            else (f"cannot apply: {exc.__class__.__name__}")
        )
        now = ctx.now()
        delay = min(max_backoff * 8, REFUSED_RETRY_S * 2 ** min(intent.attempts - 1, 4))
        await ctx.db(lambda conn: intents.fail(conn, intent.id, reason, delay, now))
        stats.failed += 1
        log.warning(
            "tracker_intent_failed",
            tracking_id=intent.tracking_id,
            intent=intent.id,
            kind=intent.kind,
            reason=reason,
        )
        return
    now = ctx.now()
    await ctx.db(
        lambda conn: intents.done(conn, intent.id, intent.tracking_id, ref, port.kind, now)
    )
    stats.applied += 1
