"""`db backup`: an online, checked copy of the SQLite database; pg_dump's command on
PostgreSQL (exit 1: no backup was made)."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from connector.cli import main
from connector.sandbox import World
from connector.store import Store, state
from tests.conftest import FakeTime
from tests.harness import Harness
from tests.waits import next_second

pytestmark = pytest.mark.anyio


async def test_db_backup_copies_while_the_database_is_written(
    tmp_path: Path,
    db_url: str,
    world: World,
    fake_time: FakeTime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    h = Harness(tmp_path / "site", db_url, world, fake_time)
    await h.sync()
    cfg = str(h.cfg_path)
    dest = tmp_path / "backups"
    dest.mkdir()
    if not db_url.startswith("sqlite"):
        assert main(["--config", cfg, "db", "backup", str(dest / "c.dump")]) == 1
        err = capsys.readouterr().err
        assert "pg_dump --format=custom --file=" in err and "pg_restore" in err
        assert "***" not in err and list(dest.iterdir()) == []
        return
    # A writer commits all the time, as the daemon does, while the backups run.
    stop = threading.Event()
    writes = [0]

    def writer() -> None:
        store = Store(db_url)
        while not stop.is_set():
            store.run(lambda c: state.set_value(c, "test_counter", str(writes[0])))
            writes[0] += 1
        store.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(3):
            assert main(["--config", cfg, "db", "backup", str(dest), "--keep", "2"]) == 0
            next_second()  # names carry the wall clock's second: make each one new
    finally:
        stop.set()
        t.join()
    out = capsys.readouterr().out
    assert out.count("backup ok:") == 3 and "integrity ok" in out and writes[0] > 0
    copies = sorted(dest.iterdir())
    assert len(copies) == 2 and "removed 1 older backup" in out  # --keep 2
    for copy in copies:
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        conn = sqlite3.connect(copy)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file
        n = conn.execute("SELECT count(*) FROM tickets").fetchone()[0]
        conn.close()
        assert n == len(h.tickets()) > 0
    assert not list(dest.glob("*.partial"))


@pytest.mark.sqlite_only(reason="the SQLite backup's own failure: a copy that cannot be made")
def test_db_backup_fails_without_leaving_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import write_config

    cfg = write_config(tmp_path / "site", f"sqlite:///{tmp_path}/var/none.db")
    target = tmp_path / "x.db"
    assert main(["--config", str(cfg), "db", "backup", str(target)]) == 1
    assert "no database at" in capsys.readouterr().err and not target.exists()
    Store(f"sqlite:///{tmp_path}/var/none.db").upgrade()
    os.chmod(tmp_path, 0o500)  # the folder refuses the copy (root ignores modes: skip)
    try:
        if os.geteuid() == 0:
            return
        assert main(["--config", str(cfg), "db", "backup", str(target)]) == 1
        assert not target.exists()
    finally:
        os.chmod(tmp_path, 0o700)
