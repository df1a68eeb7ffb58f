"""deploy/install.sh into a staging root: the guide's commands reach the unit's database."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from connector import cli
from connector.errors import ConfigError
from connector.settings import load_config
from tests.conftest import ROOT, systemd_exposure
from tests.factories import guide_commands, run_as_guide

INSTALL = ROOT / "deploy" / "install.sh"


def install(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESTDIR": str(root)}
    r = subprocess.run(
        ["bash", str(INSTALL), "--no-venv"], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return r


def exec_start(root: Path, name: str = "lapor-connector.service") -> list[str]:
    unit = (root / "etc/systemd/system" / name).read_text()
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_install_is_idempotent_and_keeps_the_admins_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = install(root)
    etc = root / "etc/lapor-connector"
    assert (etc / "settings.toml").read_text() == (ROOT / "deploy/settings.toml").read_text()
    assert sorted(p.name for p in (etc / "mappings").iterdir()) == sorted(
        p.name for p in (ROOT / "mappings").glob("*.toml")
    )
    assert (root / "usr/lib/sysusers.d/lapor-connector.conf").exists()
    for unit in ("lapor-connector.service", "lapor-connector-web.service"):
        assert (root / "etc/systemd/system" / unit).read_text() == (
            ROOT / "deploy" / unit
        ).read_text()
    assert (root / "opt/lapor-connector/connector/cli/__init__.py").exists()
    assert not (root / "opt/lapor-connector/.git").exists()
    # No demo settings in /opt: a command run from there finds the service's file.
    assert not (root / "opt/lapor-connector/settings.toml").exists()
    assert (
        os.readlink(root / "usr/local/bin/lapor-connector")
        == "/opt/lapor-connector/.venv/bin/lapor-connector"
    )
    for private in (etc / "credentials", root / "var/lib/lapor-connector"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert "wrote /etc/lapor-connector/settings.toml" in first.stdout
    # The shipped settings refuse to start until the admin sets lapor.base_url.
    with pytest.raises(ConfigError, match=r"lapor\.base_url: Value error, is not set"):
        load_config(etc / "settings.toml", environ={})
    edited = (
        (etc / "settings.toml")
        .read_text()
        .replace('base_url = ""', 'base_url = "https://lapor.example"')
    )
    (etc / "settings.toml").write_text(edited)
    agencies = (etc / "mappings/agencies.toml").read_text() + "\n# diubah admin\n"
    (etc / "mappings/agencies.toml").write_text(agencies)
    again = install(root)
    assert (etc / "settings.toml").read_text() == edited
    assert (etc / "mappings/agencies.toml").read_text() == agencies
    assert "kept /etc/lapor-connector/settings.toml" in again.stdout


@pytest.mark.sqlite_only(reason="the installed settings' own SQLite database is the subject")
def test_the_guides_ticket_and_status_commands_use_the_units_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    install(root)
    settings_file = root / "etc/lapor-connector/settings.toml"
    # The admin's edit (README: sudoedit), here on the embedded sandbox; and, because this
    # is a staging root rather than /, the root prefix applied to the absolute paths.
    text = settings_file.read_text().replace('base_url = ""', 'base_url = "sandbox"')
    text = text.replace("/var/lib/lapor-connector", f"{root}/var/lib/lapor-connector")
    text = text.replace("/etc/lapor-connector", f"{root}/etc/lapor-connector")
    settings_file.write_text(text + "\n[sandbox]\ncomplaints = 20\nrate_limit_per_minute = 0\n")
    argv = exec_start(root)
    assert argv[0] == "/opt/lapor-connector/.venv/bin/lapor-connector" and argv[-1] == "run"
    unit_args = [str(root) + a if a.startswith("/etc/") else a for a in argv[1:-1]]
    assert unit_args == ["--config", str(settings_file)]
    unit_db = load_config(Path(unit_args[1]), environ={}).database_url
    assert unit_db == f"sqlite:///{root}/var/lib/lapor-connector/connector.db"

    # What the unit does, one cycle at a time (`run` is the same cycles on a timer).
    assert cli.main([*unit_args, "sync"]) == 0
    capsys.readouterr()

    home = tmp_path / "home"  # an operator's shell, somewhere without a settings.toml
    home.mkdir()
    commands = [a for a in guide_commands() if a[0] in ("tickets", "status")]
    assert any(a[:2] == ["tickets", "update"] and "--reply" in a for a in commands)
    updated = []
    for argv in commands:
        code = run_as_guide(argv, root / "etc/lapor-connector/settings.toml", home, monkeypatch)
        out = capsys.readouterr().out
        if argv[0] == "status":
            assert code in (0, 1)
            if "--json" in argv:
                assert json.loads(out)["database"] == unit_db
            else:
                assert f"Database: {unit_db}" in out
                assert f"Settings: {settings_file}" in out
        else:
            assert code == 0, argv
        if argv[:2] == ["tickets", "update"] and "queued for LAPOR!" in out:
            updated.append(argv[2])
    assert updated
    # The unit's next cycle sends what the guide's command queued: the same database.
    assert cli.main([*unit_args, "sync"]) == 0
    out = capsys.readouterr().out
    assert "sync ok:" in out and "pushed=0" not in out
    assert not (home / "var").exists()  # no stray database where the operator stood


def test_root_is_refused_on_a_database_folder_owned_by_the_service(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    if os.geteuid() == 0:
        os.chown(state, 65534, 65534)
    cfg = tmp_path / "settings.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{state}/connector.db"\n')
    config = load_config(cfg, environ={})
    owner = state.stat().st_uid
    if owner == 0:  # as root the chown above gives it away; this is a guard, not a path
        if os.environ.get("CI"):
            pytest.fail("CI runs as root: the folder should belong to another user now")
        pytest.skip("cannot give the folder to another user here")
    with pytest.raises(ConfigError, match="sudo -u"):
        cli.check_identity(config, euid=0)
    cli.check_identity(config, euid=owner)  # as the owner: fine


@pytest.mark.sqlite_only(reason="the installed settings' own SQLite database is backed up")
def test_the_nightly_backup_unit_backs_up_the_units_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    install(root)
    units = root / "etc/systemd/system"
    timer = (units / "lapor-connector-backup.timer").read_text()
    assert "OnCalendar=*-*-* 02:30:00 Asia/Makassar" in timer and "Persistent=true" in timer
    service = (units / "lapor-connector-backup.service").read_text()
    assert "StateDirectory=lapor-connector lapor-connector/backup" in service
    line = next(x for x in service.splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0] == exec_start(root)[0] and argv[3:5] == ["db", "backup"]
    settings_file = root / "etc/lapor-connector/settings.toml"
    text = settings_file.read_text().replace('base_url = ""', 'base_url = "sandbox"')
    text = text.replace("/var/lib/lapor-connector", f"{root}/var/lib/lapor-connector")
    text = text.replace("/etc/lapor-connector", f"{root}/etc/lapor-connector")
    settings_file.write_text(text + "\n[sandbox]\ncomplaints = 5\nrate_limit_per_minute = 0\n")
    assert cli.main(["--config", str(settings_file), "sync"]) == 0
    (root / "var/lib/lapor-connector/backup").mkdir()  # systemd's StateDirectory= makes it
    args = [str(root) + a if a.startswith(("/etc/", "/var/")) else a for a in argv[1:]]
    for _ in range(2):
        assert cli.main(args) == 0
    assert "backup ok:" in capsys.readouterr().out
    [copy] = list((root / "var/lib/lapor-connector/backup").glob("connector-*.db"))
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600


def test_the_desks_unit_runs_web_as_the_daemons_user_and_is_hardened(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root)
    daemon = exec_start(root)
    web = exec_start(root, "lapor-connector-web.service")
    assert web == [*daemon[:-1], "web"]  # the same program, settings file and database
    unit = ROOT / "deploy" / "lapor-connector-web.service"
    text = unit.read_text()
    daemon_text = (ROOT / "deploy" / "lapor-connector.service").read_text()
    for line in (
        "User=lapor-connector",
        "Group=lapor-connector",
        "StateDirectory=lapor-connector",
        "UMask=0077",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
    ):
        assert line in text and line in daemon_text, line
    assert "After=network.target postgresql.service lapor-connector.service" in text
    # The desk never calls LAPOR!: no LAPOR! secrets, and only loopback on the network.
    assert "LAPOR_CLIENT" not in text and "IPAddressAllow=0.0.0.0/0" not in text
    assert "Environment=" not in text and "DynamicUser=yes" not in text
    assert systemd_exposure(unit) <= 2.0
