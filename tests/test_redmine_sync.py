"""The connector against a real Redmine 5 (``eval "$(.ci/redmine-start)"``; in CI it must
run): complaints become issues in their agencies' projects, officers' journals become
follow-ups, a reporter's reply becomes a journal and never comes back, and kill -9 at
random moments never makes a second issue."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connector.runtime import open_store
from connector.sandbox import Faults, World
from connector.settings import load_config
from connector.store import intents, state
from connector.store.schema import links as links_t
from connector.sync.cycle import CycleKind, run_cycle
from connector.tracker.redmine_api import RedmineClient
from connector.tracker.registry import open_tracker
from tests.conftest import FakeTime, needs_redmine, redmine_clients, require_redmine, write_config
from tests.harness import Harness

pytestmark = [pytest.mark.anyio, needs_redmine]
ROOT = Path(__file__).resolve().parent.parent
PROJECT_OF = {"DISDUKCAPIL": "disdukcapil", "DKP2KB": "dinkes"}


def _settings() -> str:
    url = require_redmine()
    return (
        f'[tracker]\nkind = "redmine"\n[tracker.redmine]\nurl = "{url}"\n'
        f'project = "pengaduan"\noverlap_s = 3\n'
        f"tracking_field_id = {int(os.environ['LAPOR_TEST_REDMINE_FIELD_ID'])}\n"
    )


def _with_projects(mappings_dir: Path) -> None:
    path = mappings_dir / "agencies.toml"
    text = path.read_text(encoding="utf-8")
    for code, project in PROJECT_OF.items():
        text = text.replace(
            f'code = "{code}"\n', f'code = "{code}"\nredmine_project = "{project}"\n', 1
        )
    path.write_text(text, encoding="utf-8")


@pytest.fixture
async def rm() -> AsyncIterator[tuple[RedmineClient, RedmineClient]]:
    async with redmine_clients() as pair:
        yield pair


@pytest.fixture
async def h(tmp_path: Path, db_url: str, fake_time: FakeTime) -> AsyncIterator[Harness]:
    settings = _settings()
    world = World(
        seed=random.randrange(10**6),
        complaints=24,
        faults=Faults(rate_limit_per_minute=0),
        clock=fake_time,
    )
    h = Harness(tmp_path / "site", db_url, world, fake_time, settings)
    _with_projects(h.config.mappings_dir)
    h.mappings.load_initial()
    tracker = open_tracker(
        h.config, h.mappings, environ={"REDMINE_API_KEY": os.environ["LAPOR_TEST_REDMINE_KEY"]}
    )
    h.ctx = type(h.ctx)(h.config, h.store, h.client, tracker, h.mappings, now=h.ctx.now)
    try:
        yield h
    finally:
        await tracker.aclose()


async def _project_ids(c: RedmineClient) -> dict[str, int]:
    out = {}
    for ident in ("pengaduan", *PROJECT_OF.values()):
        p = await c.project(ident)
        assert p is not None
        out[ident] = p.id
    return out


def _instansi_posts(world: World, tid: str) -> list[dict[str, Any]]:
    return [f for f in world.records[int(tid)]["tindak_lanjut"] if f["oleh"] == "instansi"]


async def test_complaints_become_issues_and_officers_answer_from_redmine(
    h: Harness, rm: Any, fake_time: FakeTime
) -> None:
    c, officer = rm
    pulled = await h.pull()
    assert pulled["created"] > 0
    done = (await run_cycle(h.ctx, CycleKind.TRACKER)).summary
    assert done["failed"] == 0
    links = h.store.run(lambda conn: state.get_links(conn, sorted(h.visible())))
    refs = h.store.run(intents.refs)
    projects = await _project_ids(c)
    by_project: set[str] = set()
    for tid, link in links.items():
        found = await c.find_issues(tid)
        assert [str(i.id) for i in found] == [refs[tid]]  # exactly one, and it is recorded
        ident = PROJECT_OF.get(link.agency, "pengaduan")
        assert found[0].project_id == projects[ident], tid
        by_project.add(ident)
        rec = h.world.records[int(tid)]
        assert found[0].is_private == bool(rec["rahasia"])
    assert len(by_project) >= 2
    # An officer's public note with In Progress: exactly one `diproses` follow-up.
    # (A Developer does not see private issues: pick one that is not rahasia.)
    tid = next(
        t
        for t, link in links.items()
        if not link.closed
        and link.lapor_status in ("terdisposisi", "ditindaklanjuti")
        and not h.world.records[int(t)]["rahasia"]
    )
    ref = int(refs[tid])
    await officer.update_issue(ref, status="In Progress", notes="Petugas sedang memeriksa.")
    await officer.update_issue(ref, notes="catatan internal petugas", private_notes=True)
    pushed = await h.push()
    assert pushed["pushed"] == 1
    posts = _instansi_posts(h.world, tid)
    assert [(p["status"], p["isi"]) for p in posts][-1:] == [
        ("diproses", "Petugas sedang memeriksa.")
    ]
    assert not any("internal" in p["isi"] for p in posts)
    await h.push()
    assert len(_instansi_posts(h.world, tid)) == len(posts)  # read again: not twice
    # Resolved with a note: one `selesai`.
    await officer.update_issue(ref, status="Resolved", notes="Sudah diperbaiki.")
    await h.push()
    after = _instansi_posts(h.world, tid)
    assert len(after) == len(posts) + 1 and after[-1]["status"] == "selesai"
    # A reporter's reply on LAPOR! becomes a journal, and is never echoed back.
    fake_time.t += 5
    h.world.event("reply", int(tid))
    reply = h.world.records[int(tid)]["tindak_lanjut"][-1]["isi"]
    await h.pull()
    await run_cycle(h.ctx, CycleKind.TRACKER)
    issue = await c.issue(ref, journals=True)
    assert issue is not None
    assert sum(reply in j.notes for j in issue.journals) == 1
    before = len(h.outbox())
    await h.push()
    assert len(h.outbox()) == before
    assert h.store.run(intents.health)["failed"] == 0


async def test_a_refused_status_is_a_visible_failure(h: Harness, rm: Any) -> None:
    await h.pull()
    # A project that does not exist: Redmine refuses; the intent fails, visibly.
    (h.config.mappings_dir / "agencies.toml").write_text(
        (h.config.mappings_dir / "agencies.toml")
        .read_text(encoding="utf-8")
        .replace('redmine_project = "disdukcapil"', 'redmine_project = "tidak-ada"'),
        encoding="utf-8",
    )
    h.mappings.load_initial()
    await run_cycle(h.ctx, CycleKind.TRACKER)
    health = h.store.run(intents.health)
    links = h.store.run(lambda conn: state.get_links(conn, sorted(h.visible())))
    if any(link.agency == "DISDUKCAPIL" for link in links.values()):
        assert health["failed"] >= 1
        assert any(
            "tidak-ada" in (f["reason"] or "") or "Project" in (f["reason"] or "")
            for f in health["failures"]
        )


def _sync(cfg: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector", "--config", str(cfg), "sync"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_kill_9_at_random_moments_never_makes_a_second_issue(
    tmp_path: Path, db_url: str, rm: Any
) -> None:
    c, _ = rm
    seed = random.randrange(10**6)
    # PostgreSQL: a killed process leaves its instance lease behind until it expires
    # (SQLite's file lock dies with the process): a short lease, waited out after a kill.
    pg = db_url.startswith("postgresql")
    cfg = write_config(
        tmp_path,
        db_url,
        _settings(),
        sandbox=f"seed = {seed}\ncomplaints = 30\ngenerator = false",
        settings={"storage": {"lease_s": 3}} if pg else None,
    )
    _with_projects(tmp_path / "mappings")
    env = {**os.environ, "REDMINE_API_KEY": os.environ["LAPOR_TEST_REDMINE_KEY"]}
    rng = random.Random(seed)
    for _ in range(3):
        proc = _sync(cfg, env)
        time.sleep(rng.uniform(1.5, 5.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if pg:
            time.sleep(3.2)
    final = _sync(cfg, env)
    assert final.wait(timeout=180) == 0
    config = load_config(cfg, environ={})
    store = open_store(config)
    try:
        tids = store.run(lambda conn: [r[0] for r in conn.execute(select(links_t.c.tracking_id))])
        health = store.run(intents.health)
        refs = store.run(intents.refs)
    finally:
        store.close()
    assert health["pending"] == 0 and health["failed"] == 0
    assert len(refs) >= 20 and set(tids) == set(refs)
    for tid, ref in refs.items():
        found = await c.find_issues(tid)
        assert [str(i.id) for i in found] == [ref], tid
