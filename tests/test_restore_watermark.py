"""Issue 22 (3): `status` says when the database looks restored from the pull side: its
watermark is behind the furthest one this connector ever committed, which a small file
outside the database remembers (beside the SQLite file; for PostgreSQL beside the
attachments folder).

The restore is done in place, as an operator does it: the backup (`db backup`'s SQLite
copy, or pg_dump) is put back where the database was, and the connector goes on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from connector.cli_format import render_status
from connector.sandbox import World
from connector.status import report
from connector.store import backup, furthest, state
from connector.timeutil import iso
from tests.conftest import FakeTime
from tests.harness import Harness

pytestmark = pytest.mark.anyio

HOUR = 3600.0
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def take_backup(db_url: str, folder: Path) -> Path:
    """What the nightly backup holds: `db backup` on SQLite, pg_dump on PostgreSQL."""
    if db_url.startswith("sqlite"):
        return backup.sqlite_backup(
            Path(make_url(db_url).database or ""), folder / "backup.db"
        ).path
    dump = folder / "backup.pgdump"
    subprocess.run(
        [str(PG_BIN / "pg_dump"), "--format=custom", f"--file={dump}", _plain(db_url)],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return dump


def restore_in_place(db_url: str, taken: Path) -> None:
    """The README's restore: the daemon stopped, the backup put back in the same place."""
    if db_url.startswith("sqlite"):
        db = Path(make_url(db_url).database or "")
        for extra in ("-wal", "-shm"):
            db.with_name(db.name + extra).unlink(missing_ok=True)
        shutil.copyfile(taken, db)
        return
    subprocess.run(
        [
            str(PG_BIN / "pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            f"--dbname={_plain(db_url)}",
            str(taken),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )


def status(h: Harness) -> tuple[dict[str, Any], str]:
    rep = h.store.run(lambda c: report(c, h.config, h.tracker, h.ctx.now()))
    return rep.as_dict(), render_status(rep)


def watermark(h: Harness) -> str | None:
    return iso(h.store.run(state.get_watermark))


def marker(h: Harness) -> Path:
    path = furthest.marker_path(h.config.database_url, h.config.attachments_dir)
    assert path is not None
    return path


def life(world: World, fake_time: FakeTime, seconds: float, steps: int = 6) -> None:
    for _ in range(steps):
        fake_time.t += seconds / steps
        world.tick()


async def test_status_tells_a_watermark_behind_the_furthest_committed(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    root = tmp_path / "site"
    live = Harness(root, db_url, world, fake_time)
    await live.sync()
    taken = take_backup(db_url, tmp_path)
    at_backup = watermark(live)
    life(world, fake_time, 2 * HOUR)
    await live.pull()
    ahead = watermark(live)
    assert at_backup is not None and ahead is not None and ahead > at_backup
    # Each successful pull notes its watermark outside the database, whole (no .tmp left).
    assert json.loads(marker(live).read_text())["watermark"] == ahead
    assert not list(marker(live).parent.glob("*.tmp"))
    rep, _ = status(live)
    assert rep["restored_watermark"] is None and rep["healthy"]
    live.store.close()

    restore_in_place(db_url, taken)
    h = Harness(root, db_url, world, fake_time)
    assert watermark(h) == at_backup
    rep, text = status(h)
    seen = rep["restored_watermark"]
    assert seen == {"watermark": at_backup, "furthest_watermark": ahead, "message": seen["message"]}
    assert at_backup in seen["message"] and ahead in seen["message"]
    assert "re-read" in seen["message"] and f"Restored?: {seen['message']}" in text
    # Not a degradation: the connector already does the right thing by itself (the
    # restored runs are two hours old, so the pull looks stale until the next one).
    assert [f["code"] for f in rep["findings"]] == ["pull_stale"]
    # The next pull re-reads LAPOR! from the restored watermark and catches up.
    fake_time.t += 120
    await h.pull()
    caught_up = watermark(h)
    assert caught_up is not None and caught_up >= ahead
    rep, text = status(h)
    assert rep["restored_watermark"] is None and rep["healthy"] and "Restored?" not in text


async def test_a_database_started_afresh_is_not_taken_for_a_restored_one(
    tmp_path: Path, db_url: str, another_db: Any, world: World, fake_time: FakeTime
) -> None:
    """The file names the database's nonce: another database in the same place (started
    afresh on purpose) has another, and its own first pull takes the file over."""
    root = tmp_path / "site"
    live = Harness(root, db_url, world, fake_time)
    await live.pull()
    path = marker(live)
    live.store.close()
    fresh_url = another_db()
    if db_url.startswith("sqlite"):  # the SQLite marker lives beside its database file
        fresh_path = Path(make_url(fresh_url).database or "")
        fresh_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, fresh_path.with_name(fresh_path.name + ".watermark"))
    fresh = Harness(root, fresh_url, world, fake_time)
    assert status(fresh)[0]["restored_watermark"] is None  # no watermark yet, other nonce
    await fresh.pull()
    assert status(fresh)[0]["restored_watermark"] is None


async def test_a_missing_damaged_or_unwritable_marker_never_breaks_a_cycle(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    h = Harness(tmp_path / "site", db_url, world, fake_time)
    await h.pull()
    path = marker(h)
    path.write_text("{not json", encoding="utf-8")
    assert status(h)[0]["restored_watermark"] is None
    life(world, fake_time, HOUR)
    await h.pull()  # a damaged file is simply written anew
    assert json.loads(path.read_text())["watermark"] == watermark(h)
    path.unlink()
    path.mkdir()  # a name that cannot take the file: the write fails (also as root)
    life(world, fake_time, HOUR)
    pulled = await h.pull()
    assert pulled["fetched"] >= 0 and path.is_dir()
    assert status(h)[0]["restored_watermark"] is None
    last = h.store.run(lambda c: state.last_runs(c, "pull"))[0]
    assert last is not None and last.ok
