"""The import diet: a command that only reads the database loads neither the LAPOR!
client, the sandbox, the desk, nor Alembic (its database already at head)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from connector.store import base
from tests.conftest import write_config

# What `status`, `tickets list` and `quarantine list` never use.
NOT_NEEDED = (
    "httpx",
    "aiohttp",
    "alembic",
    "starlette",
    "jinja2",
    "argon2",
    "aiosmtplib",
    "prometheus_client",
    "connector.runtime",
    "connector.lapor.client",
    "connector.sandbox",
    "connector.desk",
    "connector.service",
    "connector.sync.pull",
    "connector.sync.push",
    "connector.metrics",
    "connector.sync.core",
    "connector.lapor.policy",
    "connector.lapor.wire",
    "connector.lapor.models",
)
# And what the two listings never use (`status` checks the mapping files).
NOT_NEEDED_BY_LISTINGS = ("connector.mappings",)

PROBE = """
import contextlib, io, json, sys
from connector.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps([code, sorted(sys.modules)]))
"""


def _run(argv: list[str]) -> tuple[int, set[str]]:
    r = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    code, modules = json.loads(r.stdout.splitlines()[-1])
    return code, set(modules)


@pytest.mark.parametrize("command", [["status"], ["tickets", "list"], ["quarantine", "list"]])
def test_a_command_that_reads_the_database_imports_nothing_it_does_not_use(
    tmp_path: Path, db_url: str, command: list[str]
) -> None:
    cfg = str(write_config(tmp_path, db_url))
    assert _run(["--config", cfg, "db", "upgrade"])[0] == 0  # at head: nothing to migrate
    code, modules = _run(["--config", cfg, *command])
    assert code in (0, 1)  # status: 1 when degraded (a fresh database never pulled)
    not_needed = NOT_NEEDED + (NOT_NEEDED_BY_LISTINGS if command != ["status"] else ())
    loaded = {m for m in modules for name in not_needed if m == name or m.startswith(name + ".")}
    assert loaded == set()


def test_the_revisions_read_from_the_files_are_alembics() -> None:
    assert base.revisions() == base._alembic_revisions()
