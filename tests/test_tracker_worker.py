"""Intents and the tracker worker end to end: the real sandbox, a real database, and the
built-in tracker taken the long way (as an external tracker: intents, the worker, the
port's officer changes). Redmine itself: tests/test_redmine_sync.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import pytest

from connector.errors import RetryLater
from connector.sandbox import Faults, World
from connector.status import report
from connector.store import intents
from connector.sync.cycle import CycleKind, run_cycle
from connector.tracker.base import OfficerChange, Tracker
from connector.tracker.builtin import BuiltinTracker, OfficerAction
from connector.tracker.port import Intent, TicketPayload
from connector.tracker.redmine_api import RedmineRefused, RedmineUnavailable
from tests.conftest import FakeTime
from tests.harness import STATUSES, Harness

pytestmark = pytest.mark.anyio


class Outside(BuiltinTracker):
    """The built-in tracker without its in-transaction shortcut; it can be made
    unreachable, or refuse one complaint's changes, like a tracker over the network."""

    kind = "outside"

    def __init__(self) -> None:
        super().__init__(STATUSES)
        self.down = False
        self.refuse: set[str] = set()
        self.applied: list[tuple[str, str]] = []

    @property
    def inline(self) -> Tracker | None:  # type: ignore[override]
        return None

    async def apply(self, intent: Intent) -> str:
        if self.down:
            raise RedmineUnavailable("Redmine unavailable during apply: ConnectError")
        if intent.tracking_id in self.refuse:
            raise RedmineRefused(
                f"update of issue for {intent.tracking_id}",
                "ignored",
                errors=["status 'Closed' not applied (workflow)"],
            )
        self.applied.append((intent.tracking_id, intent.kind))
        return await super().apply(intent)

    async def changes_since(
        self, cursor: str | None, limit: int = 500
    ) -> tuple[list[OfficerChange], str | None]:
        if self.down:
            raise RedmineUnavailable("Redmine unavailable during changes: ConnectError")
        changes, new = await super().changes_since(cursor, limit)
        return [
            dataclasses.replace(c, change_id=c.change_id.replace("builtin:", "outside:"))
            for c in changes
        ], new


@pytest.fixture
def world(fake_time: FakeTime) -> World:
    return World(seed=33, complaints=30, faults=Faults(rate_limit_per_minute=0), clock=fake_time)


class OutsideHarness(Harness):
    """The harness on the ``Outside`` tracker."""

    tracker: Outside


@pytest.fixture
def h(tmp_path: Path, db_url: str, world: World, fake_time: FakeTime) -> OutsideHarness:
    h = OutsideHarness(tmp_path / "site", db_url, world, fake_time)
    h.tracker = Outside()
    h.ctx = dataclasses.replace(h.ctx, tracker=h.tracker)
    return h


def _status(h: Harness) -> dict[str, Any]:
    return h.store.run(lambda c: report(c, h.config, h.ctx.tracker, h.ctx.now()).as_dict())


async def test_pull_writes_intents_and_the_worker_makes_the_tickets(
    h: OutsideHarness, world: World
) -> None:
    pulled = await h.pull()
    assert pulled["created"] > 0
    assert h.tickets() == []  # nothing in the tracker inside the pull's transaction
    st = _status(h)["tracker"]
    assert st["pending"] >= pulled["created"] and st["failed"] == 0
    done = (await run_cycle(h.ctx, CycleKind.TRACKER)).summary
    assert done["applied"] == st["pending"]
    h.check_consistent()
    refs = h.store.run(lambda c: intents.refs(c))
    assert {t["tracking_id"]: t["id"] for t in h.tickets()} == refs
    # Creates come before the messages of the same complaint.
    firsts: dict[str, str] = {}
    for tid, kind in h.tracker.applied:
        firsts.setdefault(tid, kind)
    assert set(firsts.values()) == {"create"}
    assert (await run_cycle(h.ctx, CycleKind.TRACKER)).summary["applied"] == 0


async def test_upstream_changes_and_officer_changes_through_the_port(
    h: OutsideHarness, world: World, fake_time: FakeTime
) -> None:
    await h.pull()
    await run_cycle(h.ctx, CycleKind.TRACKER)
    mine = [t for t in world.records if world.visible(t)]
    open_ = [t for t in mine if world.records[t]["status"] == "terdisposisi"]
    archive, reply = open_[:2]
    fake_time.t += 5
    world.event("archive", archive)
    world.event("reply", reply)
    await h.pull()
    await run_cycle(h.ctx, CycleKind.TRACKER)
    assert h.ticket(archive)["status"] == "closed"
    assert any(m["direction"] == "in" for m in h.ticket(reply)["messages"])
    h.check_consistent()
    # An officer acts in the tracker; the push reads it through the port.
    target = next(t for t in h.tickets() if t["status"] == "new")
    h.store.run(
        lambda c: h.tracker.officer_update(
            c, target["id"], OfficerAction("in_progress", "Sedang ditangani petugas."), h.ctx.now()
        )
    )
    pushed = await h.push()
    assert pushed["queued"] == 1 and pushed["pushed"] == 1
    entry = h.outbox()[0]
    assert entry["idempotency_key"].endswith(f"-{target['tracking_id']}-outside:1")
    await h.push()  # the cursor moved with the entry: nothing queued twice
    assert len(h.outbox()) == 1
    fu = world.records[int(target["tracking_id"])]["tindak_lanjut"]
    assert [f["isi"] for f in fu if f["oleh"] == "instansi"] == ["Sedang ditangani petugas."]
    # Its echo (LAPOR!'s status after our post) does not undo the officer's status.
    fake_time.t += 5
    await h.pull()
    await run_cycle(h.ctx, CycleKind.TRACKER)
    assert h.ticket(target["tracking_id"])["status"] == "in_progress"


async def test_tracker_down_intake_goes_on_and_the_changes_wait(h: OutsideHarness) -> None:
    h.tracker.down = True
    pulled = await h.pull()
    assert pulled["created"] > 0  # LAPOR! intake is not held up by the tracker
    with pytest.raises(RetryLater):
        await run_cycle(h.ctx, CycleKind.TRACKER)
    pushed = await h.push()  # officer changes cannot be read; the push still runs
    assert pushed["queued"] == 0
    st = _status(h)
    assert st["tracker"]["pending"] > 0 and st["tracker"]["unreachable"] is not None
    assert "Redmine unavailable" in st["tracker"]["unreachable"]["reason"]
    # The one tried waits out its backoff (the job itself backs off in the daemon); the
    # others of other complaints go as soon as the tracker answers.
    h.tracker.down = False
    first = (await run_cycle(h.ctx, CycleKind.TRACKER)).summary
    assert first["applied"] == st["tracker"]["pending"] - 1
    h.time.t += 3600
    done = (await run_cycle(h.ctx, CycleKind.TRACKER)).summary
    assert done["applied"] == 1
    assert _status(h)["tracker"]["unreachable"] is None
    h.check_consistent()


async def test_a_refusal_is_visible_holds_its_complaint_and_is_retried(h: OutsideHarness) -> None:
    await h.pull()
    pending = h.store.run(lambda c: intents.due(c, h.ctx.now(), 1000))
    victim = pending[0].tracking_id
    h.tracker.refuse.add(victim)
    done = (await run_cycle(h.ctx, CycleKind.TRACKER)).summary
    assert done["failed"] == 1 and done["applied"] > 0
    assert victim not in {tid for tid, _ in h.tracker.applied}  # its later ones wait
    st = _status(h)
    assert not st["healthy"]
    finding = next(f for f in st["findings"] if f["code"] == "tracker_failed")
    assert victim in finding["message"] and "workflow" in finding["message"]
    failure = st["tracker"]["failures"][0]
    assert failure["tracking_id"] == victim and "ignored" in failure["reason"]
    assert victim not in {t["tracking_id"] for t in h.tickets()}
    h.tracker.refuse.clear()
    n = h.store.run(lambda c: intents.retry(c, None, h.ctx.now()))
    assert n == 1
    await run_cycle(h.ctx, CycleKind.TRACKER)
    assert victim in {t["tracking_id"] for t in h.tickets()}
    assert _status(h)["tracker"]["failed"] == 0


async def test_later_anonim_removes_the_reporter_from_waiting_creates(
    h: OutsideHarness, world: World
) -> None:
    h.tracker.down = True
    await h.pull()
    tid = next(
        t
        for t in world.records
        if world.visible(t) and not world.records[t]["anonim"] and world.records[t].get("pelapor")
    )
    name = world.records[tid]["pelapor"]["nama"]
    h.store.run(lambda c: intents.forget_reporter(c, str(tid)))
    waiting = h.store.run(lambda c: intents.due(c, h.ctx.now(), 1000))
    create = next(i for i in waiting if i.tracking_id == str(tid))
    # A complaint's first intent is its create (test_pull_writes_intents_...).
    payload = cast(TicketPayload, create.payload)
    assert payload["reporter"] is None and payload["anonymous"]
    assert name not in str(create.payload)
