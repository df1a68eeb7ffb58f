"""Attachment files of new tickets, downloaded beside the pull: its commits never wait for a
file. A failure is noted (``retry`` for a transient one, tried again on a later pull),
never the pull's failure. Metadata is kept where the sink keeps it (``Sink.files``: the
built-in tracker); with an external tracker the files stay in ``attachments.dir``."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from sqlalchemy import Connection
from structlog.typing import FilteringBoundLogger

from connector.errors import AttachmentRefused, Rejected, RetryLater, SkipRecord
from connector.lapor import models as m
from connector.sync import core
from connector.sync.context import SyncContext
from connector.tracker.rows import AttachmentMeta

log = structlog.get_logger("connector.pull")
# (ticket ref, tracking id, its files) of tickets a pull created.
NewFiles = list[tuple[str, str, tuple[m.Attachment, ...]]]


def note_due(ctx: SyncContext, conn: Connection, new_files: NewFiles) -> None:
    """Noted as due in the creating transaction: a download the pull does not wait for
    (cut at its deadline, or still running when the pull ends) is tried again later."""
    for ref, _tid, files in new_files:
        recorder(ctx, ref, [{**core.attachment_meta(a), "retry": True} for a in files])(conn)


def recorder(
    ctx: SyncContext, ref: str, meta: list[AttachmentMeta]
) -> Callable[[Connection], None]:
    files = ctx.sink.files()
    return lambda conn: files.record_attachments(conn, ref, meta) if files else None


async def download(
    ctx: SyncContext, new_files: NewFiles, stored: dict[str, str] | None = None
) -> None:
    """Fetch the files of new tickets (``stored``: those already on disk, by id)."""
    for ref, tid, files in new_files:
        rlog = log.bind(tracking_id=tid)  # once per record
        meta = [await _one(ctx, rlog, tid, att, stored) for att in files]
        await ctx.db(recorder(ctx, ref, meta))


async def _one(
    ctx: SyncContext,
    rlog: FilteringBoundLogger,
    tid: str,
    att: m.Attachment,
    stored: dict[str, str] | None,
) -> AttachmentMeta:
    cfg = ctx.config.settings.attachments
    entry = core.attachment_meta(att)
    if stored and att.id in stored:
        return {**entry, "stored": stored[att.id]}
    try:
        path = await ctx.client.download(
            att,
            ctx.config.attachments_dir / safe_dir(tid),
            max_bytes=cfg.max_bytes,
            allowed_types=cfg.allowed_types,
        )
        entry["stored"] = str(path)
    except (Rejected, AttachmentRefused, RetryLater, OSError) as exc:
        # A file that cannot be written (disk full, a name the file system refuses)
        # is this attachment's matter: noted for retry, never the pull's failure.
        entry["error"] = (
            "penulisan_gagal"
            if isinstance(exc, OSError)
            else getattr(exc, "kode", None) or "unavailable"
        )
        entry["retry"] = not isinstance(exc, Rejected | AttachmentRefused)
        rlog.warning("attachment_skipped", attachment=att.id, reason=entry["error"])
    return entry


class Downloads:
    """A pull's attachment downloads, one after another, beside it."""

    def __init__(self, ctx: SyncContext):
        self._ctx = ctx
        self._jobs: asyncio.Queue[Callable[[], Coroutine[Any, Any, None]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.queued: set[str] = set()  # ticket refs whose files this pull already fetches

    def add(self, new_files: NewFiles) -> None:
        if new_files:
            self.queued.update(ref for ref, _, _ in new_files)
            self.submit(lambda: download(self._ctx, new_files))

    def submit(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._jobs.put_nowait(job)

    async def _run(self) -> None:
        while (job := await self._jobs.get()) is not None:
            try:
                await job()
            except (RetryLater, OSError) as exc:  # noted for retry at the pull's commit
                log.warning("attachments_deferred", error=str(exc))
            except Exception as exc:  # a bug: the pull goes on, the files stay due
                log.error("attachments_crashed", exc_info=exc)

    async def finish(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for what is queued, then cancel the rest (it stays due)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._jobs.put_nowait(None)
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            log.warning("attachments_deferred", error="the pull ended before the downloads")
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def retry(ctx: SyncContext, downloads: Downloads, limit: int = 10) -> None:
    """Attachments that failed for a transient reason, tried again (a few per pull)."""
    files = ctx.sink.files()
    if not ctx.config.settings.attachments.download or files is None:
        return
    todo = await ctx.db(lambda conn: files.attachments_to_retry(conn, limit))
    for ref, tid, meta in todo:
        if ref not in downloads.queued:  # not this pull's own new tickets a second time
            downloads.submit(functools.partial(_again, ctx, ref, tid, meta))


async def _again(ctx: SyncContext, ref: str, tid: str, meta: list[AttachmentMeta]) -> None:
    try:
        complaint = await ctx.client.complaint(tid)
    except (SkipRecord, Rejected):
        return
    stored = {a["id"]: a["stored"] for a in meta if "stored" in a}
    await download(ctx, [(ref, tid, complaint.attachments)], stored)


def safe_dir(tracking_id: str) -> str:
    return "".join(c for c in tracking_id if c.isdigit()) or "unknown"
