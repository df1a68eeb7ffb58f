"""`status` while a pull runs: its own counts and start time, from another connection."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector.cli_format import render_status as render
from connector.health import HealthReport
from connector.sandbox import World
from connector.status import report
from connector.store import schema
from connector.store.keys import StateKey
from connector.timeutil import human_iso
from tests.conftest import FakeTime
from tests.harness import Harness

pytestmark = pytest.mark.anyio


class Peek:
    """An observer that reads `status` the way another process would, mid-pull."""

    def __init__(self, h: Harness):
        self.h = h
        self.seen: list[HealthReport] = []

    def progress(self, kind: str, counts: Mapping[str, int]) -> None:
        if kind == "pull" and counts.get("created"):
            self.seen.append(
                self.h.store.run(
                    lambda c: report(c, self.h.config, self.h.tracker, self.h.ctx.now())
                )
            )


async def test_status_shows_a_running_pull_and_forgets_it_when_done(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    h = Harness(tmp_path, db_url, world, fake_time)
    peek = Peek(h)
    h.ctx.observer = peek
    stats = await h.pull()
    assert peek.seen
    running = peek.seen[-1].as_dict()["pull"]["running"]
    assert running is not None and running["created"] == stats["created"] > 0
    assert running["fetched"] == stats["fetched"] and running["pages"] >= 1
    assert running["started_at"]
    text = render(peek.seen[-1])
    assert f"Pull running since {human_iso(running['started_at'])}: pages=" in text
    assert f"created={stats['created']}" in text
    done = h.store.run(lambda c: report(c, h.config, h.tracker, h.ctx.now()))
    assert done.as_dict()["pull"]["running"] is None and "Pull running" not in render(done)
    assert done.as_dict()["settings"] == str(h.cfg_path) and done.as_dict()["database"]


async def test_every_state_row_is_named_in_the_store(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    """The key/value rows a pull, a sweep and a push write all have their key in
    ``store/keys.py``, and ``status`` reads them back as written."""
    h = Harness(tmp_path, db_url, world, fake_time)
    await h.pull()
    await h.sweep()
    ticket = next(t for t in h.tickets() if t["status"] == "new")
    h.officer(ticket["id"], status="in_progress", reply="Sedang kami tangani.")
    await h.push()
    rows = dict(h.store.run(lambda c: c.execute(select(schema.kv.c.key, schema.kv.c.value)).all()))
    assert set(rows) <= {str(k) for k in StateKey}
    assert {
        StateKey.WATERMARK,
        StateKey.PULL_PROGRESS,
        StateKey.LAST_SWEEP,
        StateKey.TRACKER_CURSOR,
        StateKey.DB_NONCE,
    } <= set(rows)
    rep = h.store.run(lambda c: report(c, h.config, h.tracker, h.ctx.now()).as_dict())
    assert rep["last_sweep"] == rows[StateKey.LAST_SWEEP]
    assert rep["pull"]["progress_age_s"] == 0


async def test_the_daemon_tells_status_the_mapping_files_it_already_read(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime
) -> None:
    """The /healthz refresh runs every few seconds: with ``files`` given, the mapping
    files are not read again; without, they are (the `status` command)."""
    h = Harness(tmp_path, db_url, world, fake_time)
    (h.config.mappings_dir / "agencies.toml").write_text("not = [valid", encoding="utf-8")

    def mapping(**kw: Any) -> dict[str, Any]:
        rep = h.store.run(lambda c: report(c, h.config, h.tracker, h.ctx.now(), **kw).as_dict())
        return {
            "mapping": rep["mapping"],
            "codes": [f["code"] for f in rep["findings"] if f["code"] == "mapping_error"],
        }

    read = mapping()
    assert read["codes"] == ["mapping_error"] and "agencies.toml" in read["mapping"]["error"]
    told = mapping(files=("v-loaded", None))
    assert told["codes"] == [] and told["mapping"]["files_version"] == "v-loaded"
    broken = mapping(files=(None, "agencies.toml: line 1"))
    assert broken["codes"] == ["mapping_error"]


async def test_the_health_refresh_runs_the_overdue_query_once_a_minute(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from connector import service
    from connector.store import followups

    h = Harness(tmp_path, db_url, world, fake_time)
    await h.pull()
    calls: list[float] = []
    real = followups.overdue

    def counting(*a: Any, **kw: Any) -> Any:
        calls.append(fake_time.t)
        return real(*a, **kw)

    monkeypatch.setattr(followups, "overdue", counting)
    h.ctx.monotonic = lambda: fake_time.t
    rt = SimpleNamespace(store=h.store, config=h.config, tracker=h.tracker, mappings=h.mappings)
    compute = service._health_report(rt, h.ctx)  # type: ignore[arg-type]
    first = compute().as_dict()
    for step in (5, 25, 29):  # the 5 s refreshes within a minute reuse the count
        fake_time.t += step
        assert compute().as_dict()["overdue"] == first["overdue"]
    assert len(calls) == 1
    fake_time.t += 1  # 60 s after the first
    compute()
    assert len(calls) == 2


async def test_storage_error_from_the_daemons_jobs_or_a_full_disk(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22 (4): the daemon tells /healthz its jobs fail on the database; the
    `status` command sees a full SQLite disk itself (no failed run fits on it)."""
    import shutil

    from connector import status

    h = Harness(tmp_path, db_url, world, fake_time)
    await h.pull()

    def storage(**kw: Any) -> tuple[list[str], dict[str, Any]]:
        rep = h.store.run(lambda c: report(c, h.config, h.tracker, h.ctx.now(), **kw).as_dict())
        return [f["code"] for f in rep["findings"] if f["code"] == "storage_error"], rep["storage"]

    codes, info = storage()
    assert codes == [] and info["error"] is None
    assert (info["free_bytes"] is None) == db_url.startswith("postgresql")
    codes, info = storage(storage_failure="storage full: database or disk is full")
    assert codes == ["storage_error"] and info["error"].startswith("storage full")
    if db_url.startswith("sqlite"):
        real = shutil.disk_usage
        monkeypatch.setattr(status.shutil, "disk_usage", lambda p: real(p)._replace(free=8192))
        codes, info = storage()
        assert codes == ["storage_error"] and info["free_bytes"] == 8192
