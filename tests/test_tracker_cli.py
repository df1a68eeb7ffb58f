"""The commands with tracker.kind = "redmine" while Redmine cannot be reached: intake goes
on, `status` shows the waiting changes, `tickets` explains where officers work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.cli import main
from connector.errors import ConfigError
from connector.settings import load_config, load_redmine_key
from tests.conftest import write_config

DOWN = "http://127.0.0.1:9"  # discard port on loopback: nothing listens
REDMINE = (
    f'[tracker]\nkind = "redmine"\n[tracker.redmine]\nurl = "{DOWN}"\n'
    f'project = "pengaduan"\ntracking_field_id = 1\ntimeout_s = 2\n'
)


def run(capsys: Any, cfg: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(cfg), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cfg(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REDMINE_API_KEY", "k" * 40)
    return write_config(
        tmp_path / "site", db_url, REDMINE, sandbox="complaints = 12\ngenerator = false"
    )


def test_redmine_down_intake_goes_on_and_status_shows_the_queue(cfg: Path, capsys: Any) -> None:
    code, out, err = run(capsys, cfg, "sync")
    assert code == 0, err
    assert "created=" in out and "created=0" not in out
    assert "tracker is unreachable" in err
    code, out, _ = run(capsys, cfg, "status", "--json")
    rep = json.loads(out)
    tr = rep["tracker"]
    assert tr["kind"] == "redmine" and tr["pending"] > 0 and tr["failed"] == 0
    assert tr["unreachable"] is not None and tr["last_contact"] is None
    code, out, _ = run(capsys, cfg, "status")
    assert "Tracker (redmine): pending=" in out and "unreachable since" in out
    code, out, _ = run(capsys, cfg, "tickets", "list")
    assert code == 0 and "REDMINE ISSUE" in out and "not created yet" in out
    code, out, _ = run(capsys, cfg, "tickets", "list", "--json")
    rows = json.loads(out)
    assert rows and all(r["issue"] is None and r["tracker"] == "redmine" for r in rows)
    code, _, err = run(capsys, cfg, "tickets", "update", "1", "--status", "in_progress")
    assert code == 2 and "officers work on the issues there" in err
    code, out, _ = run(capsys, cfg, "intents", "retry")
    assert code == 0 and out.startswith("0 tracker change(s)")
    code, _, err = run(capsys, cfg, "intents", "retry", "999")
    assert code == 1 and "999" in err


def test_mappings_check_validates_redmine_toml(cfg: Path, capsys: Any) -> None:
    code, out, _ = run(capsys, cfg, "mappings", "check")
    assert code == 0 and "redmine.toml" in out
    path = cfg.parent / "mappings" / "redmine.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace('resolved = "Resolved"\n', ""), encoding="utf-8"
    )
    agencies = cfg.parent / "mappings" / "agencies.toml"
    agencies.write_text(
        agencies.read_text(encoding="utf-8").replace(
            'code = "DINSOS"\n', 'code = "DINSOS"\nredmine_project = "Bukan Identifier"\n'
        ),
        encoding="utf-8",
    )
    code, _, err = run(capsys, cfg, "mappings", "check")
    assert code == 1
    assert "redmine.toml" in err and "resolved" in err
    assert "agency DINSOS: redmine_project" in err


def test_redmine_settings_are_checked(tmp_path: Path) -> None:
    incomplete = write_config(tmp_path / "a", "sqlite:///x.db", '[tracker]\nkind = "redmine"\n')
    with pytest.raises(ConfigError, match=r"tracker\.redmine\.url, tracker\.redmine\.project"):
        load_config(incomplete, environ={})
    plain = write_config(
        tmp_path / "b", "sqlite:///x.db", REDMINE.replace(DOWN, "http://redmine.example.org")
    )
    with pytest.raises(ConfigError, match="only allowed for loopback"):
        load_config(plain, environ={})
    assert (
        load_config(
            write_config(tmp_path / "c", "sqlite:///x.db", REDMINE), environ={}
        ).settings.tracker.redmine.tracking_field_id
        == 1
    )


def test_redmine_key_from_environment_or_credentials_directory(tmp_path: Path) -> None:
    assert load_redmine_key({"REDMINE_API_KEY": " abc "}) == "abc"
    (tmp_path / "REDMINE_API_KEY").write_text("fromfile\n", encoding="utf-8")
    assert load_redmine_key({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "fromfile"
    with pytest.raises(ConfigError, match="REDMINE_API_KEY is not set"):
        load_redmine_key({})
