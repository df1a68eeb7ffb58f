"""An in-process connector against the in-process sandbox, on a real database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from connector.mapping_reload import MappingHolder
from connector.runtime import open_store
from connector.sandbox import World
from connector.settings import load_config
from connector.store import schema, state
from connector.store.keys import StateKey
from connector.sync.context import SyncContext
from connector.sync.cycle import CycleKind, run_cycle
from connector.sync.push import ingest
from connector.tracker.base import OfficerChange
from connector.tracker.builtin import BuiltinTracker, OfficerAction
from connector.tracker.rows import TicketJSON
from tests.conftest import FakeTime, Overrides, make_client, write_config

STATUSES = ("new", "in_progress", "resolved", "closed")


class Harness:
    def __init__(
        self,
        root: Path,
        db_url: str,
        world: World,
        fake_time: FakeTime,
        extra_settings: str = "",
        environ: dict[str, str] | None = None,
        settings: Overrides | None = None,
        **client_kw: Any,
    ):
        self.root = root
        self.cfg_path = write_config(root, db_url, extra_settings, settings=settings)
        self.config = load_config(self.cfg_path, environ=environ or {})
        self.world = world
        self.time = fake_time
        self.store = open_store(self.config)
        self.client = make_client(world, fake_time, **client_kw)
        self.tracker = BuiltinTracker(STATUSES)
        self.mappings = MappingHolder(self.config.mappings_dir)
        self.mappings.load_initial()
        self.ctx = SyncContext(
            self.config,
            self.store,
            self.client,
            self.tracker,
            self.mappings,
            now=lambda: datetime.fromtimestamp(int(fake_time.t), UTC),
        )

    async def pull(self) -> dict[str, Any]:
        return (await run_cycle(self.ctx, CycleKind.PULL)).summary

    async def sweep(self) -> dict[str, Any]:
        return (await run_cycle(self.ctx, CycleKind.SWEEP)).summary

    async def push(self) -> dict[str, Any]:
        return (await run_cycle(self.ctx, CycleKind.PUSH)).summary

    async def sync(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return await self.pull(), await self.push()

    def tickets(self) -> list[TicketJSON]:
        return self.store.run(lambda c: self.tracker.list_tickets(c))

    def ticket(self, tracking_id: int | str) -> TicketJSON:
        return next(t for t in self.tickets() if t["tracking_id"] == str(tracking_id))

    def officer(self, ticket_id: str, **action: Any) -> OfficerChange | None:
        def tx(conn: Connection) -> OfficerChange | None:
            change = self.tracker.officer_update(
                conn, ticket_id, OfficerAction(**action), self.ctx.now()
            )
            ingest(conn, self.tracker, self.mappings(), self.ctx.now())
            return change

        return self.store.run(tx)

    def outbox(self) -> list[dict[str, Any]]:
        return self.store.run(state.list_outbox)

    def quarantine(self) -> list[dict[str, Any]]:
        return self.store.run(state.list_quarantine)

    def dump(self) -> dict[str, list[Any]]:
        """Every table but the run log (and a pull's live progress), for "nothing changed"."""
        tables = [t for t in schema.metadata.sorted_tables if t.name != "runs"]
        with self.store.begin() as conn:
            return {
                t.name: [
                    tuple(r)
                    for r in conn.execute(select(t).order_by(*t.primary_key))
                    if not (t is schema.kv and r[0] == StateKey.PULL_RUNNING)
                ]
                for t in tables
            }

    def visible(self) -> set[str]:
        return {str(t) for t in self.world.records if self.world.visible(t)}

    def mapped_units(self) -> set[int]:
        return set(self.mappings().unit_to_agency)

    def check_consistent(self) -> None:
        """Exactly one ticket per complaint, and each ticket mirrors LAPOR!'s state."""
        tickets = self.tickets()
        ids = [t["tracking_id"] for t in tickets]
        assert len(ids) == len(set(ids)), "duplicate tickets"
        held = {q["tracking_id"]: q["reason"] for q in self.quarantine()}
        m = self.mappings()
        for tid in self.visible():
            rec = self.world.records[int(tid)]
            ours = [d["unit_id"] for d in rec["disposisi"] if d["instansi_id"] == 6411]
            if ours and not any(u in m.unit_to_agency for u in ours):
                assert held.get(tid) == "unmapped_unit", tid
                continue
            if tid in held:
                continue
            assert tid in ids, f"complaint {tid} has no ticket"
            t = next(t for t in tickets if t["tracking_id"] == tid)
            assert t["lapor_status"] == rec["status"], tid
            if ours:
                # One of the agencies holding it (the lead; LAPOR!'s order does not decide).
                assert t["agency"] in {m.unit_to_agency[u] for u in ours if u in m.unit_to_agency}
                # Closed locally only when LAPOR! closed it, or as the officer's own close
                # (posted as "selesai").
                if t["status"] == "closed":
                    assert rec["status"] in ("ditutup", "diarsipkan", "selesai"), tid
            else:
                assert t["status"] == "closed"

    def check_follow_ups_once(self) -> None:
        """Every sent outbox entry is exactly one follow-up on LAPOR!, found by its key."""
        keys: dict[str, int] = {}
        for rec in self.world.records.values():
            for fu in rec["tindak_lanjut"]:
                key = self.world.follow_up_keys.get(fu["id"])
                if key:
                    keys[key] = keys.get(key, 0) + 1
        assert all(n == 1 for n in keys.values())
        for entry in self.outbox():
            if entry["state"] == "sent":
                assert keys.get(entry["idempotency_key"]) == 1, entry
            elif entry["state"] == "failed":
                assert entry["idempotency_key"] not in keys or entry["last_error"]
