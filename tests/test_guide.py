"""The operator guide's commands are real: each parses, and the safe ones run."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from connector import cli
from tests.conftest import write_config
from tests.factories import guide_commands, run_as_guide


# Placeholders in prose, and what a reader would type for them.
def test_every_command_in_the_guide_parses() -> None:
    commands = guide_commands(inline=True)
    assert len(commands) >= 20
    seen = set()
    parser = cli.build_parser()
    for argv in commands:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse's way of refusing
            raise AssertionError(
                f"the guide's `lapor-connector {shlex.join(argv)}` does not parse (exit {exc.code})"
            ) from None
        seen.add((args.command, getattr(args, "action", None)))
    assert {
        ("status", None),
        ("tickets", "update"),
        ("mappings", "check"),
        ("outbox", "list"),
        ("quarantine", "list"),
    } <= seen


def test_the_extractor_finds_sudo_and_systemd_run_forms() -> None:
    text = (
        "```sh\nsudo -u lapor-connector lapor-connector status --json\n"
        "journalctl -u lapor-connector -o cat\nsudo systemctl restart lapor-connector\n"
        "sudo systemd-run --pipe -p User=lapor-connector \\\n"
        "  /usr/local/bin/lapor-connector mappings check --online\n```\n"
    )
    assert guide_commands(text) == [["status", "--json"], ["mappings", "check", "--online"]]


SAFE = {
    ("status", None),
    ("tickets", "list"),
    ("tickets", "show"),
    ("tickets", "update"),
    ("quarantine", "list"),
    ("outbox", "list"),
    ("mappings", "check"),
}


def test_the_guides_safe_commands_run_against_a_sandbox_site(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "etc"
    # SQLite: a path relative to the settings file, which the commands must resolve.
    sqlite = db_url.startswith("sqlite")
    cfg = write_config(
        site, "sqlite:///var/connector.db" if sqlite else db_url, sandbox="complaints = 30\n"
    )
    assert cli.main(["--config", str(cfg), "sync"]) == 0
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    ran = 0
    for argv in guide_commands():
        args = cli.build_parser().parse_args(argv)
        if (args.command, getattr(args, "action", None)) not in SAFE or "--online" in argv:
            continue
        code = run_as_guide(argv, cfg, elsewhere, monkeypatch)
        out = capsys.readouterr()
        assert code in (0, 1), (argv, out.err)
        if args.command != "status":
            assert code == 0, (argv, out.err)
        else:
            assert (f"{site}/var/connector.db" if sqlite else db_url.rpartition("/")[2]) in out.out
        ran += 1
    assert ran >= 10


def test_checking_a_copy_as_the_guide_says_checks_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    live = write_config(tmp_path / "etc", "sqlite:///var/connector.db")
    copy = tmp_path / "salinan"
    copy.mkdir()
    (copy / "mappings").mkdir()
    for f in (tmp_path / "etc" / "mappings").iterdir():
        (copy / "mappings" / f.name).write_text(f.read_text())
    agencies = copy / "mappings" / "agencies.toml"
    agencies.write_text(
        agencies.read_text().replace(
            "lapor_unit_ids = [6411004]", "lapor_unit_ids = [6411004, 6411003]"
        )
    )
    # The guide: a settings.toml beside the copy, with [mappings] dir = "mappings".
    (copy / "settings.toml").write_text('[mappings]\ndir = "mappings"\n')
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    assert run_as_guide(["mappings", "check"], live, elsewhere, monkeypatch) == 0
    capsys.readouterr()
    code = run_as_guide(
        ["--config", str(copy / "settings.toml"), "mappings", "check"], live, elsewhere, monkeypatch
    )
    assert code == 1
    assert (
        "RSP_DATAH_DAWAI: lapor_unit_ids: unit 6411003 is already routed to DKP2KB"
        in capsys.readouterr().err
    )


def test_a_local_settings_file_that_wins_over_the_services_is_named(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service = write_config(tmp_path / "etc", db_url)
    here = tmp_path / "checkout"
    local = write_config(here, db_url)
    run_as_guide(["status"], service, here, monkeypatch)
    out = capsys.readouterr()
    assert f"note: using {local}, not the service's {service}" in out.err
    assert f"Settings: {local}" in out.out
    run_as_guide(["status"], service, tmp_path, monkeypatch)  # no ./settings.toml: no note
    out = capsys.readouterr()
    assert "note:" not in out.err and f"Settings: {service}" in out.out
