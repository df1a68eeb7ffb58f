"""The notification faces: [notify] settings, the SMTP_PASSWORD credential, agencies.toml
``email``, ``notify test ADDR`` (0 sent, 1 refused or unreachable, 2 bad settings) and
``users notify``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.notify import core
from connector.settings import load_config, load_smtp_password
from tests.conftest import write_config
from tests.factories import free_port
from tests.smtp_server import SMTPServer

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer().start()
    yield server
    server.stop()


def cli(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )


def site(tmp_path: Path, **notify: str | int | bool) -> Path:
    return write_config(
        tmp_path,
        f"sqlite:///{tmp_path}/c.db",
        settings={"notify": {"from": "lapor@mahulu.test", **notify}},
    )


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"enabled": True}, "notify.smtp_host is not set"),
        ({"enabled": True, "smtp_host": "mail.example.go.id", "from": "x"}, "notify.from"),
        (
            {"enabled": True, "smtp_host": "mail.example.go.id", "security": "none"},
            "only allowed to a loopback",
        ),
        ({"digest_time": "7.30"}, "HH:MM"),
        ({"security": "ssl"}, "notify.security"),
        ({"smtp_password": "x"}, "notify.smtp_password: unknown key"),
        ({"desk_url": "desk"}, "notify.desk_url"),
    ],
)
def test_bad_notify_settings_are_refused_naming_the_key(
    tmp_path: Path, values: dict[str, str | bool], words: str
) -> None:
    with pytest.raises(ConfigError, match="notify") as exc:
        load_config(site(tmp_path, **values), environ={})
    assert words in str(exc.value)


def test_the_password_is_a_credential_never_a_setting(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "SMTP_PASSWORD").write_text("rahasia-smtp\n")
    assert load_smtp_password({"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}) == "rahasia-smtp"
    assert load_smtp_password({"SMTP_PASSWORD": "dari-env"}) == "dari-env"
    assert load_smtp_password({}) is None
    from connector.notify.send import password_for

    cfg = load_config(
        site(tmp_path, enabled=True, smtp_host="mail.example.go.id", smtp_user="lapor"), environ={}
    )
    with pytest.raises(ConfigError, match="SMTP_PASSWORD is not"):
        password_for(cfg, {})
    assert password_for(cfg, {"SMTP_PASSWORD": "p"}) == "p"


def test_notify_test_sends_one_message_and_prints_the_answer(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    cfg = site(tmp_path, smtp_host="127.0.0.1", smtp_port=smtp.port, security="none")
    r = cli(cfg, "notify", "test", "uji@mahulu.test")
    assert r.returncode == 0, r.stderr
    assert "250" in r.stdout and "uji@mahulu.test" in r.stdout
    assert [m.rcpt for m in smtp.handler.received] == [["uji@mahulu.test"]]
    assert "Pesan uji" in str(smtp.handler.received[0].message["Subject"])
    smtp.handler.rcpt_answers["nobody@mahulu.test"] = ["550 5.1.1 No such user"]
    r = cli(cfg, "notify", "test", "nobody@mahulu.test")
    assert r.returncode == 1 and "550" in r.stderr and "refused" in r.stderr


def test_notify_test_unreachable_is_1_and_bad_settings_2(tmp_path: Path) -> None:
    cfg = site(tmp_path, smtp_host="127.0.0.1", smtp_port=free_port(), security="none")
    r = cli(cfg, "notify", "test", "uji@mahulu.test")
    assert r.returncode == 1 and "not sent" in r.stderr
    assert cli(site(tmp_path / "b"), "notify", "test", "uji@mahulu.test").returncode == 2
    assert cli(cfg, "notify", "test", "not-an-address").returncode == 2
    r = cli(
        site(tmp_path / "c", smtp_host="mail.example.go.id", smtp_user="lapor"),
        "notify",
        "test",
        "uji@mahulu.test",
    )
    assert r.returncode == 2 and "SMTP_PASSWORD" in r.stderr


def test_notify_test_in_the_sandbox_writes_an_eml_file(tmp_path: Path) -> None:
    r = cli(site(tmp_path, smtp_host="sandbox"), "notify", "test", "uji@mahulu.test")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "var" / "mail").glob("*.eml"))) == 1


def test_agency_mailboxes_are_checked_by_mappings_check(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    path = tmp_path / "mappings" / "agencies.toml"
    text = path.read_text().replace(
        'code = "DISDUKCAPIL"', 'code = "DISDUKCAPIL"\nemail = ["disdukcapil@mahulu.test"]', 1
    )
    path.write_text(text)
    assert cli(cfg, "mappings", "check").returncode == 0
    path.write_text(text.replace('"disdukcapil@mahulu.test"', '"bukan alamat"'))
    r = cli(cfg, "mappings", "check")
    assert r.returncode == 1
    assert "agencies.toml: agency[1] DISDUKCAPIL: email.0: not an e-mail address" in r.stderr


def test_users_choose_what_they_receive(tmp_path: Path) -> None:
    cfg = site(tmp_path)
    assert cli(cfg, "db", "upgrade").returncode == 0
    assert (
        cli(
            cfg,
            "users",
            "add",
            "ani",
            "--name",
            "Ani",
            "--role",
            "petugas",
            "--agency",
            "DISDUKCAPIL",
            "--email",
            "ani@mahulu.test",
            "--password-stdin",
            stdin="sandi-yang-panjang-1\n",
        ).returncode
        == 0
    )
    r = cli(cfg, "users", "notify", "ani")
    assert r.returncode == 0 and "(the default)" in r.stdout
    assert ", ".join(sorted(core.DEFAULT_CHOICE)) in r.stdout
    r = cli(cfg, "users", "notify", "ani", "--receive", "baru,tugas")
    assert r.returncode == 0 and "receives: baru, tugas" in r.stdout
    assert "receives: (nothing)" in cli(cfg, "users", "notify", "ani", "--receive", "").stdout
    assert "(the default)" in cli(cfg, "users", "notify", "ani", "--receive", "default").stdout
    assert cli(cfg, "users", "notify", "ani", "--receive", "semua").returncode == 2
    assert cli(cfg, "users", "notify", "nobody").returncode == 1
