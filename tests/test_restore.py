"""A restore from a backup loses nothing LAPOR! still has and doubles nothing.

The live database is backed up (``db backup``'s SQLite copy, or pg_dump/pg_restore), goes
on working for an hour or two days (past LAPOR!'s 24 h Idempotency-Key lifetime), and is
then lost; the connector goes on from the restored copy. The next cycles bring back every
complaint changed since, follow-ups pending at backup time are sent exactly once (the key,
or past its lifetime the verification), and ``status`` says the database looks restored.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from connector.sandbox import World
from connector.status import report
from connector.store import backup
from tests.conftest import FakeTime
from tests.harness import Harness

pytestmark = pytest.mark.anyio

HOUR = 3600.0
AGES = {"1h": HOUR, "2d": 48 * HOUR}
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def snapshot(src: str, dest: str) -> None:
    """What an operator's backup holds: `db backup` on SQLite, pg_dump on PostgreSQL."""
    if src.startswith("sqlite"):
        backup.sqlite_backup(Path(make_url(src).database or ""),
                             Path(make_url(dest).database or ""))
        return
    plain = [make_url(u).set(drivername="postgresql").render_as_string(hide_password=False)
             for u in (src, dest)]
    dump = subprocess.run([str(PG_BIN / "pg_dump"), "--format=custom", plain[0]],
                          capture_output=True, check=True, timeout=120).stdout
    subprocess.run([str(PG_BIN / "pg_restore"), "--no-owner", f"--dbname={plain[1]}"],
                   input=dump, capture_output=True, check=True, timeout=120)


def world_posts(world: World) -> Counter[str]:
    """Follow-ups by the agencies on LAPOR!, counted by text."""
    return Counter(fu["isi"] for rec in world.records.values() for fu in rec["tindak_lanjut"]
                   if fu["oleh"] == "instansi")


def open_tickets(h: Harness, n: int) -> list[dict[str, Any]]:
    found = [t for t in h.tickets() if t["status"] == "new"
             and h.world.records[int(t["tracking_id"])]["status"] == "terdisposisi"]
    assert len(found) >= n
    return found[:n]  # type: ignore[return-value]


def life(world: World, fake_time: FakeTime, seconds: float, steps: int = 6) -> None:
    """LAPOR! goes on while time passes: new complaints, replies, redispositions."""
    for _ in range(steps):
        fake_time.t += seconds / steps
        world.tick()


@pytest.mark.parametrize("age", list(AGES))
async def test_restore_with_the_builtin_tracker(
        tmp_path: Path, db_url: str, another_db: Callable[[], str], world: World,
        fake_time: FakeTime, age: str) -> None:
    live = Harness(tmp_path / "live", db_url, world, fake_time)
    await live.sync()
    before, pending, after = open_tickets(live, 3)
    live.officer(before["id"], status="in_progress", reply="Terkirim sebelum backup.")
    await live.push()
    # Pending at backup time, sent right after it (its key first used after the backup).
    live.officer(pending["id"], reply="Tertunda saat backup.")
    restored_url = another_db()
    snapshot(db_url, restored_url)
    fake_time.t += 60
    await live.push()
    live.officer(after["id"], status="in_progress", reply="Dikirim setelah backup.")
    await live.push()
    life(world, fake_time, AGES[age])
    await live.sync()
    current = {t["tracking_id"]: t for t in live.tickets()}
    live.store.close()  # the live database is lost

    h = Harness(tmp_path / "restored", restored_url, world, fake_time)
    for _ in range(2):
        fake_time.t += 120
        await h.sync()
    # No follow-up twice on LAPOR!, and each of ours is there.
    posts = world_posts(world)
    for text in ("Terkirim sebelum backup.", "Tertunda saat backup.", "Dikirim setelah backup."):
        assert posts[text] == 1, (text, posts[text])
    assert {e["state"] for e in h.outbox()} == {"sent"}
    h.check_follow_ups_once()
    # Every complaint is current again: what LAPOR! has, as the live database had it.
    h.check_consistent()
    for tid, t in current.items():
        got = h.ticket(tid)
        assert got["lapor_status"] == t["lapor_status"], tid
        assert [m["text"] for m in got["messages"] if m["direction"] == "in"] == \
            [m["text"] for m in t["messages"] if m["direction"] == "in"], tid
    # The follow-up sent after the backup shows on its ticket, as LAPOR! has it.
    assert "Dikirim setelah backup." in [m["text"] for m in h.ticket(after["tracking_id"])
                                         ["messages"]]
    # And status says what happened.
    rep = h.store.run(lambda c: report(c, h.config, h.tracker, h.ctx.now()))
    assert rep["restored"] is not None, rep["restored"]
    assert rep["restored"]["followups_found"] >= 1
