"""The guard in conftest.py: a test that opens SQLite runs on every backend or says why not."""

from __future__ import annotations

from pathlib import Path

from tests.inner import run_inner_suite

INNER = '''
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text


def _touch(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    engine.dispose()


def test_engine_without_db_url(tmp_path: Path) -> None:
    _touch(f"sqlite:///{tmp_path}/x.db")


def test_file_left_by_a_subprocess(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "y.db").execute("CREATE TABLE t (a)")  # no engine


def test_on_every_backend(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    _touch(db_url)


@pytest.mark.sqlite_only(reason="SQLite itself")
def test_marked(tmp_path: Path) -> None:
    _touch(f"sqlite:///{tmp_path}/z.db")


def test_no_database() -> None:
    """Opens no database: the guard has nothing to say."""
'''


def test_the_guard_fails_sqlite_only_tests_that_do_not_say_so(tmp_path: Path) -> None:
    out = run_inner_suite(
        tmp_path,
        "from tests.conftest import *  # noqa: F403\n"
        "from tests.conftest import _every_backend, pytest_configure  # noqa: F401\n",
        INNER,
    )
    errors = {
        line.split("::")[1].split(" ")[0] for line in out.splitlines() if line.startswith("ERROR ")
    }
    assert errors == {"test_engine_without_db_url", "test_file_left_by_a_subprocess"}, out
    assert "opened a SQLite database (y.db) without the db_url fixture" in out
    assert " failed" not in out and "passed" in out
