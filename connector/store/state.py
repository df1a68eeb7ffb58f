"""The connector's own state: links, watermark, outbox, quarantine, runs.

Plain functions over an open transaction, so a shell can combine them with
tracker writes and commit everything at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, delete, func, insert, select, update

from connector.domain import FollowUpPlan, Held, LinkState, OutboxState, OwnPost
from connector.store.keys import StateKey
from connector.store.schema import kv, links, outbox, quarantine, runs
from connector.timeutil import as_utc, iso, utcnow

# Statements with their parameters bound at execution: compiled once, cached (hot path).
_KV_UPDATE = update(kv).where(kv.c.key == bindparam("k"))
_LINK_UPDATE = update(links).where(links.c.tracking_id == bindparam("tid"))
_QUARANTINE_DELETE = delete(quarantine).where(quarantine.c.tracking_id == bindparam("tid"))

# Entries still to be delivered, in order per complaint; "failed" holds back the later ones.
OPEN_STATES = (OutboxState.PENDING, OutboxState.UNCONFIRMED)


# -- key/value ----------------------------------------------------------------------------


def get_value(conn: Connection, key: str) -> str | None:
    return conn.execute(select(kv.c.value).where(kv.c.key == key)).scalar_one_or_none()


def set_value(conn: Connection, key: str, value: str) -> None:
    if conn.execute(_KV_UPDATE, {"k": key, "value": value}).rowcount == 0:
        conn.execute(insert(kv), {"key": key, "value": value})


def get_watermark(conn: Connection) -> datetime | None:
    raw = get_value(conn, StateKey.WATERMARK)
    return datetime.fromisoformat(raw) if raw else None


def advance_watermark(
    conn: Connection, candidate: datetime, now: datetime | None = None
) -> datetime:
    """Move the watermark forward only (never back); note when the pull last committed."""
    set_value(conn, StateKey.PULL_PROGRESS, (now or utcnow()).isoformat())
    current = get_watermark(conn)
    if current is None or candidate > current:
        set_value(conn, StateKey.WATERMARK, as_utc(candidate).isoformat())
        return candidate
    return current


def set_pull_running(
    conn: Connection, started: datetime, now: datetime, counts: dict[str, int]
) -> None:
    set_value(
        conn,
        StateKey.PULL_RUNNING,
        json.dumps({"started_at": iso(started), "updated_at": iso(now), **counts}),
    )


def get_pull_running(conn: Connection) -> dict[str, Any] | None:
    raw = get_value(conn, StateKey.PULL_RUNNING)
    return json.loads(raw) if raw else None


def pull_progress_at(conn: Connection) -> datetime | None:
    """When a pull last committed (a running one too)."""
    raw = get_value(conn, StateKey.PULL_PROGRESS)
    return datetime.fromisoformat(raw) if raw else None


def get_last_sweep(conn: Connection) -> datetime | None:
    raw = get_value(conn, StateKey.LAST_SWEEP)
    return datetime.fromisoformat(raw) if raw else None


def set_last_sweep(conn: Connection, when: datetime) -> None:
    set_value(conn, StateKey.LAST_SWEEP, when.isoformat())


def get_mapping_state(conn: Connection) -> tuple[str | None, str | None]:
    """(the version the daemon or `sync` loaded, why the daemon refused the last edit)."""
    return (
        get_value(conn, StateKey.MAPPING_VERSION),
        get_value(conn, StateKey.MAPPING_ERROR) or None,
    )


def set_mapping_version(conn: Connection, version: str) -> None:
    set_value(conn, StateKey.MAPPING_VERSION, version)


def set_mapping_error(conn: Connection, error: str | None) -> None:
    set_value(conn, StateKey.MAPPING_ERROR, error or "")


# -- links --------------------------------------------------------------------------------


def _link(r: Any) -> LinkState:
    return LinkState(
        tracking_id=r.tracking_id,
        ticket_ref=r.ticket_ref,
        agency=r.agency,
        lapor_status=r.lapor_status,
        lapor_updated_at=as_utc(r.lapor_updated_at),
        unit_ids=tuple(json.loads(r.unit_ids)),
        seen_followups=frozenset(json.loads(r.seen_followups)),
        closed=r.closed,
        content_hash=r.content_hash,
    )


def get_links(conn: Connection, ids: list[str]) -> dict[str, LinkState]:
    if not ids:
        return {}
    return {
        r.tracking_id: _link(r)
        for r in conn.execute(select(links).where(links.c.tracking_id.in_(ids)))
    }


def get_link(conn: Connection, tracking_id: str) -> LinkState | None:
    return get_links(conn, [tracking_id]).get(tracking_id)


def _link_values(link: LinkState, now: datetime) -> dict[str, Any]:
    return {
        "ticket_ref": link.ticket_ref,
        "agency": link.agency,
        "lapor_status": link.lapor_status,
        "lapor_updated_at": link.lapor_updated_at,
        "unit_ids": json.dumps(list(link.unit_ids)),
        "seen_followups": json.dumps(sorted(link.seen_followups, key=_num)),
        "closed": link.closed,
        "updated_at": now,
        "content_hash": link.content_hash,
    }


def insert_links(conn: Connection, new: list[LinkState], now: datetime) -> None:
    if new:
        conn.execute(
            insert(links),
            [
                {"tracking_id": link.tracking_id, "created_at": now, **_link_values(link, now)}
                for link in new
            ],
        )


def save_link(conn: Connection, link: LinkState, now: datetime) -> None:
    done = conn.execute(_LINK_UPDATE, {"tid": link.tracking_id, **_link_values(link, now)}).rowcount
    if not done:
        insert_links(conn, [link], now)


def add_seen(conn: Connection, tracking_id: str, followup_id: str) -> None:
    link = get_link(conn, tracking_id)
    if link is not None and followup_id not in link.seen_followups:
        conn.execute(
            update(links)
            .where(links.c.tracking_id == tracking_id)
            .values(
                seen_followups=json.dumps(sorted(link.seen_followups | {followup_id}, key=_num))
            )
        )


def _num(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (0, value)


# -- quarantine -------------------------------------------------------------------------------


def get_held(conn: Connection, ids: list[str]) -> dict[str, Held]:
    if not ids:
        return {}
    return {
        r.tracking_id: _held(r)
        for r in conn.execute(select(quarantine).where(quarantine.c.tracking_id.in_(ids)))
    }


def _held(r: Any) -> Held:
    return Held(
        r.reason,
        as_utc(r.lapor_updated_at) if r.lapor_updated_at else None,
        tuple(json.loads(r.unit_ids)),
        r.retry_requested,
        r.attempts,
        as_utc(r.last_seen),
    )


def hold(
    conn: Connection,
    tracking_id: str,
    reason: str,
    detail: str,
    updated_at: datetime | None,
    unit_ids: tuple[int, ...],
    now: datetime,
) -> bool:
    """Quarantine a record; returns True when it is newly quarantined."""
    # Cut to the columns' sizes here, so that both backends store the same (a reason can be
    # an error code from LAPOR!, of any length).
    values = {
        "reason": reason[:40],
        "detail": detail[:500],
        "lapor_updated_at": updated_at,
        "unit_ids": json.dumps(list(unit_ids)),
        "last_seen": now,
        "retry_requested": False,
    }
    # A retry without a summary at hand keeps what the feed last said of the record.
    kept = {
        k: v
        for k, v in values.items()
        if not (k == "lapor_updated_at" and v is None)
        and not (k == "unit_ids" and not unit_ids and updated_at is None)
    }
    done = conn.execute(
        update(quarantine)
        .where(quarantine.c.tracking_id == tracking_id)
        .values(attempts=quarantine.c.attempts + 1, **kept)
    ).rowcount
    if not done:
        conn.execute(
            insert(quarantine).values(tracking_id=tracking_id, attempts=1, first_seen=now, **values)
        )
    return not done


def release(conn: Connection, tracking_id: str) -> None:
    conn.execute(_QUARANTINE_DELETE, {"tid": tracking_id})


def retry_candidates(conn: Connection) -> dict[str, Held]:
    return {r.tracking_id: _held(r) for r in conn.execute(select(quarantine))}


def request_retry(conn: Connection, tracking_id: str | None) -> int:
    q = update(quarantine).values(retry_requested=True)
    if tracking_id is not None:
        q = q.where(quarantine.c.tracking_id == tracking_id)
    return conn.execute(q).rowcount


def list_quarantine(conn: Connection) -> list[dict[str, Any]]:
    return [
        {
            "tracking_id": r.tracking_id,
            "reason": r.reason,
            "detail": r.detail,
            "attempts": r.attempts,
            "retry_requested": r.retry_requested,
            "first_seen": iso(r.first_seen),
            "last_seen": iso(r.last_seen),
        }
        for r in conn.execute(
            select(quarantine).order_by(quarantine.c.first_seen, quarantine.c.tracking_id)
        )
    ]


def quarantine_by_reason(conn: Connection) -> dict[str, int]:
    return dict(
        conn.execute(select(quarantine.c.reason, func.count()).group_by(quarantine.c.reason)).all()
    )


def quarantine_oldest(conn: Connection) -> dict[str, datetime]:
    """The first_seen of the oldest entry of each reason."""
    return {
        reason: as_utc(first)
        for reason, first in conn.execute(
            select(quarantine.c.reason, func.min(quarantine.c.first_seen)).group_by(
                quarantine.c.reason
            )
        )
    }


# -- outbox ------------------------------------------------------------------------------------


def enqueue(
    conn: Connection, plan: FollowUpPlan, key: str, failed_with: str | None, now: datetime
) -> bool:
    """Add an outbox entry unless this change is already there (idempotent by change id);
    ``failed_with`` is the failure's code as LAPOR! names it."""
    exists = conn.execute(select(outbox.c.id).where(outbox.c.change_id == plan.change_id)).first()
    if exists:
        return False
    conn.execute(
        insert(outbox).values(
            change_id=plan.change_id,
            tracking_id=plan.tracking_id,
            ticket_ref=plan.ticket_ref,
            idempotency_key=key,
            lapor_status=plan.lapor_status,
            text=plan.text,
            state=OutboxState.FAILED if failed_with else OutboxState.PENDING,
            attempts=0,
            next_attempt_at=now,
            last_error=failed_with,
            remote_id=None,
            sent_at=None,
            created_at=min(now, as_utc(plan.at)) if plan.at is not None else now,
            unit_id=plan.unit_id,
            key_changes=0,
            checks=0,
        )
    )
    return True


def note_restored(conn: Connection, now: datetime) -> None:
    """One more follow-up LAPOR! had that this database did not know it had sent."""
    seen = restored(conn)
    set_value(
        conn,
        StateKey.RESTORE_EVIDENCE,
        json.dumps(
            {
                "first_seen": seen["first_seen"] if seen else iso(now),
                "last_seen": iso(now),
                "followups_found": (seen["followups_found"] if seen else 0) + 1,
            }
        ),
    )


def restored(conn: Connection) -> dict[str, Any] | None:
    raw = get_value(conn, StateKey.RESTORE_EVIDENCE)
    return json.loads(raw) if raw else None


def db_nonce(conn: Connection) -> str:
    """This database's nonce (made by migration 0003; made here if it is missing)."""
    value = get_value(conn, StateKey.DB_NONCE)
    if not value:
        value = secrets.token_hex(5)
        set_value(conn, StateKey.DB_NONCE, value)
    return value


def rotate_nonce(conn: Connection) -> str:
    """A new nonce: LAPOR! showed that another copy of this database used our keys."""
    value = secrets.token_hex(5)
    set_value(conn, StateKey.DB_NONCE, value)
    return value


@dataclass(frozen=True)
class OutboxEntry:
    """An undelivered outbox entry, as the push reads it (times aware, in UTC)."""

    id: int
    change_id: str
    tracking_id: str
    idempotency_key: str
    lapor_status: str
    text: str
    state: OutboxState
    unit_id: int | None  # None: made before units were fixed at creation
    attempts: int
    checks: int  # verifications that did not find it on LAPOR!
    key_changes: int
    created_at: datetime
    first_attempt_at: datetime | None  # the first POST of any key
    key_first_used_at: datetime | None  # the first POST with the current key


def _entry(r: Row[Any]) -> OutboxEntry:
    return OutboxEntry(
        id=r.id,
        change_id=r.change_id,
        tracking_id=r.tracking_id,
        idempotency_key=r.idempotency_key,
        lapor_status=r.lapor_status,
        text=r.text,
        state=OutboxState(r.state),
        unit_id=r.unit_id,
        attempts=r.attempts,
        checks=r.checks,
        key_changes=r.key_changes,
        created_at=as_utc(r.created_at),
        first_attempt_at=_utc_or_none(r.first_attempt_at),
        key_first_used_at=_utc_or_none(r.key_first_used_at),
    )


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


def due_entries(conn: Connection, now: datetime, limit: int) -> list[OutboxEntry]:
    """The oldest undelivered entry of each complaint, if it is due: strictly in order.

    A failed entry counts as undelivered: it holds back the later ones of its complaint
    until it is sent, retried or dismissed.
    """
    firsts = (
        select(func.min(outbox.c.id).label("id"))
        .where(outbox.c.state.in_((*OPEN_STATES, OutboxState.FAILED)))
        .group_by(outbox.c.tracking_id)
        .subquery()
    )
    q = (
        select(outbox)
        .join(firsts, firsts.c.id == outbox.c.id)
        .where(outbox.c.state.in_(OPEN_STATES), outbox.c.next_attempt_at <= now)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return [_entry(r) for r in conn.execute(q)]


def held_back(conn: Connection) -> int:
    """Undelivered entries waiting behind a failed earlier entry of the same complaint."""
    blockers = (
        select(outbox.c.tracking_id, func.min(outbox.c.id).label("id"))
        .where(outbox.c.state == OutboxState.FAILED)
        .group_by(outbox.c.tracking_id)
        .subquery()
    )
    q = (
        select(func.count())
        .select_from(outbox)
        .join(blockers, blockers.c.tracking_id == outbox.c.tracking_id)
        .where(outbox.c.state.in_(OPEN_STATES), outbox.c.id > blockers.c.id)
    )
    return int(conn.execute(q).scalar_one())


def start_attempt(conn: Connection, entry_id: int, now: datetime) -> None:
    """Note the first POST with the current key (committed before it is sent)."""
    conn.execute(
        update(outbox)
        .where(outbox.c.id == entry_id, outbox.c.key_first_used_at.is_(None))
        .values(
            first_attempt_at=func.coalesce(outbox.c.first_attempt_at, now), key_first_used_at=now
        )
    )


def set_unit(conn: Connection, entry_id: int, unit_id: int) -> None:
    """Fix the posting unit of an entry made before units were fixed at creation."""
    conn.execute(
        update(outbox)
        .where(outbox.c.id == entry_id, outbox.c.unit_id.is_(None))
        .values(unit_id=unit_id)
    )


def change_key(conn: Connection, entry_id: int, new_key: str, now: datetime) -> None:
    """LAPOR! may have forgotten the old key and our post is not there: a fresh key."""
    conn.execute(
        update(outbox)
        .where(outbox.c.id == entry_id)
        .values(
            idempotency_key=new_key,
            key_first_used_at=now,
            key_changes=outbox.c.key_changes + 1,
            state=OutboxState.PENDING,
            checks=0,
        )
    )


def mark_unconfirmed(conn: Connection, entry_id: int, delay_s: float, now: datetime) -> None:
    """A success answer we could not read: delivered, to be confirmed by reading LAPOR!."""
    conn.execute(
        update(outbox)
        .where(outbox.c.id == entry_id)
        .values(
            state=OutboxState.UNCONFIRMED,
            last_error="answer_unreadable",
            attempts=outbox.c.attempts + 1,
            next_attempt_at=now + timedelta(seconds=delay_s),
        )
    )


def mark_check_missed(conn: Connection, entry_id: int, delay_s: float, now: datetime) -> int:
    """An unconfirmed entry not found on LAPOR! (yet); returns the checks so far."""
    conn.execute(
        update(outbox)
        .where(outbox.c.id == entry_id)
        .values(checks=outbox.c.checks + 1, next_attempt_at=now + timedelta(seconds=delay_s))
    )
    return int(conn.execute(select(outbox.c.checks).where(outbox.c.id == entry_id)).scalar_one())


def taken_remote_ids(conn: Connection, tracking_id: str, entry_id: int) -> frozenset[str]:
    """Follow-up ids already claimed by other entries of the complaint."""
    q = select(outbox.c.remote_id).where(
        outbox.c.tracking_id == tracking_id,
        outbox.c.id != entry_id,
        outbox.c.remote_id.is_not(None),
    )
    return frozenset(r for (r,) in conn.execute(q))


def dismiss(conn: Connection, entry_id: int, reason: str, now: datetime) -> int:
    """An operator accepts a failed entry as final; the reason is kept."""
    return conn.execute(
        update(outbox)
        .where(outbox.c.id == entry_id, outbox.c.state == OutboxState.FAILED)
        .values(state=OutboxState.DISMISSED, dismiss_reason=reason[:500], dismissed_at=now)
    ).rowcount


def own_posts(conn: Connection, tracking_ids: list[str]) -> dict[str, tuple[OwnPost, ...]]:
    """Pending entries per complaint: posts that may have reached LAPOR! unacknowledged."""
    out: dict[str, list[OwnPost]] = {}
    if tracking_ids:
        q = select(outbox.c.tracking_id, outbox.c.lapor_status, outbox.c.text).where(
            outbox.c.tracking_id.in_(tracking_ids), outbox.c.state.in_(OPEN_STATES)
        )
        for r in conn.execute(q):
            out.setdefault(r.tracking_id, []).append(OwnPost(r.lapor_status, r.text))
    return {k: tuple(v) for k, v in out.items()}


def last_queued_status(conn: Connection, tracking_id: str) -> str | None:
    """The LAPOR! status of the complaint's latest outbox entry not refused."""
    q = (
        select(outbox.c.lapor_status)
        .where(outbox.c.tracking_id == tracking_id, outbox.c.state != OutboxState.FAILED)
        .order_by(outbox.c.id.desc())
        .limit(1)
    )
    return conn.execute(q).scalar_one_or_none()


def mark_sent(conn: Connection, entry_id: int, remote_id: str, now: datetime) -> None:
    conn.execute(
        update(outbox)
        .where(outbox.c.id == entry_id)
        .values(
            state=OutboxState.SENT,
            remote_id=remote_id,
            sent_at=now,
            last_error=None,
            attempts=outbox.c.attempts + 1,
        )
    )


def mark_failed(conn: Connection, entry_id: int, code: str) -> None:
    conn.execute(
        update(outbox)
        .where(outbox.c.id == entry_id)
        .values(state=OutboxState.FAILED, last_error=code[:100], attempts=outbox.c.attempts + 1)
    )


def mark_retry(conn: Connection, entry_id: int, code: str, delay_s: float, now: datetime) -> None:
    conn.execute(
        update(outbox)
        .where(outbox.c.id == entry_id)
        .values(
            last_error=code[:100],
            attempts=outbox.c.attempts + 1,
            next_attempt_at=now + timedelta(seconds=delay_s),
        )
    )


def retry_failed(conn: Connection, entry_id: int | None, now: datetime) -> int:
    q = (
        update(outbox)
        .where(outbox.c.state == OutboxState.FAILED)
        .values(state=OutboxState.PENDING, next_attempt_at=now, checks=0)
    )
    if entry_id is not None:
        q = q.where(outbox.c.id == entry_id)
    return conn.execute(q).rowcount


def list_outbox(conn: Connection, state: str | None = None) -> list[dict[str, Any]]:
    q = select(outbox).order_by(outbox.c.id)
    if state:
        q = q.where(outbox.c.state == state)
    return [
        {
            "id": r.id,
            "tracking_id": r.tracking_id,
            "ticket_id": r.ticket_ref,
            "lapor_status": r.lapor_status,
            "state": r.state,
            "attempts": r.attempts,
            "last_error": r.last_error,
            "remote_id": r.remote_id,
            "next_attempt_at": iso(r.next_attempt_at),
            "created_at": iso(r.created_at),
            "sent_at": iso(r.sent_at),
            "idempotency_key": r.idempotency_key,
            "unit_id": r.unit_id,
            "first_attempt_at": iso(r.first_attempt_at),
            "key_changes": r.key_changes,
            "dismiss_reason": r.dismiss_reason,
            "dismissed_at": iso(r.dismissed_at),
        }
        for r in conn.execute(q)
    ]


def outbox_counts(conn: Connection) -> dict[str, int]:
    return dict(conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state)).all())


# -- runs ---------------------------------------------------------------------------------------


def record_run(
    conn: Connection,
    kind: str,
    started: datetime,
    finished: datetime,
    ok: bool,
    summary: Mapping[str, float],
    error: str | None,
) -> None:
    conn.execute(
        insert(runs).values(
            kind=kind,
            started_at=started,
            finished_at=finished,
            ok=ok,
            summary=json.dumps(dict(summary)),
            error=(error or None) and error[:300],
        )
    )
    # Keep the table small: the last 500 runs of each kind are plenty for `status`.
    old = select(runs.c.id).where(runs.c.kind == kind).order_by(runs.c.id.desc()).offset(500)
    conn.execute(delete(runs).where(runs.c.id.in_(old.scalar_subquery())))


@dataclass(frozen=True)
class RunRecord:
    """One recorded cycle (the ``runs`` table), times aware in UTC."""

    started_at: datetime
    finished_at: datetime
    ok: bool
    summary: Mapping[str, float]  # the cycle's counts and its duration_s
    error: str | None

    def as_dict(self) -> dict[str, object]:
        """As ``status --json`` shows it."""
        return {
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "ok": self.ok,
            "summary": dict(self.summary),
            "error": self.error,
        }


def last_runs(conn: Connection, kind: str) -> tuple[RunRecord | None, RunRecord | None]:
    """(last run, last successful run) of a kind."""

    def one(q: Select[Any]) -> RunRecord | None:
        r = conn.execute(q.order_by(runs.c.id.desc()).limit(1)).first()
        if r is None:
            return None
        return RunRecord(
            as_utc(r.started_at), as_utc(r.finished_at), r.ok, json.loads(r.summary), r.error
        )

    base = select(runs).where(runs.c.kind == kind)
    return one(base), one(base.where(runs.c.ok.is_(True)))
