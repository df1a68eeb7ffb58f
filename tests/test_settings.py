from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.settings import Config, load_config, load_credentials
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "settings.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_shipped_settings_are_valid_and_embedded() -> None:
    cfg = load_config(ROOT / "settings.toml", environ={})
    assert cfg.sandbox_mode and cfg.settings.lapor.instansi_id == 6411
    assert cfg.database_url == f"sqlite:///{ROOT}/var/connector.db"
    assert cfg.settings.sync.overlap_s >= 300


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("[lapor]\nbogus = 1\n", {}, "lapor.bogus: unknown key"),
        ("[nosuch]\nx = 1\n", {}, "nosuch: unknown key"),
        (
            '[lapor]\ninstansi_id = "enam"\n',
            {},
            "lapor.instansi_id: Input should be a valid integer",
        ),
        ("[sync]\noverlap_s = -1\n", {}, "sync.overlap_s"),
        ('[log]\nlevel = "loud"\n', {}, "log.level"),
        ("", {"LAPOR_CONNECTOR_SYNC__PULL_INTERVAL_S": "soon"}, "sync.pull_interval_s"),
        ("", {"LAPOR_CONNECTOR_SYNC__NOPE": "1"}, "sync.nope: unknown key"),
        ("[lapor\n", {}, "TOML syntax error"),
        ('[lapor]\nbase_url = "http://lapor.go.id"\n', {}, "plain http:// is only allowed"),
        ('[lapor]\nbase_url = "ftp://x"\n', {}, "must be an http(s) URL"),
    ],
)
def test_bad_settings_name_file_and_key(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=env)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[storage]\nurl = "sqlite:///a.db"\n[sync]\noverlap_s = 400\n')
    cfg = load_config(
        path,
        environ={
            "LAPOR_CONNECTOR_STORAGE__URL": "sqlite:////tmp/b.db",
            "LAPOR_CONNECTOR_SYNC__OVERLAP_S": "600",
        },
    )
    assert cfg.database_url == "sqlite:////tmp/b.db" and cfg.settings.sync.overlap_s == 600
    assert load_config(path, environ={}).database_url == f"sqlite:///{tmp_path}/a.db"


def test_https_and_loopback_http_are_accepted(tmp_path: Path) -> None:
    for url in ("https://api.lapor.example", "http://127.0.0.1:8765", "http://localhost:1"):
        cfg = load_config(write(tmp_path, f'[lapor]\nbase_url = "{url}"\n'), environ={})
        assert cfg.settings.lapor.base_url == url


def _real(tmp_path: Path) -> Config:
    return load_config(write(tmp_path, '[lapor]\nbase_url = "https://lapor.example"\n'), environ={})


def test_secrets_from_environment_or_credentials_directory(tmp_path: Path) -> None:
    cfg = _real(tmp_path)
    with pytest.raises(ConfigError, match="LAPOR_CLIENT_ID, LAPOR_CLIENT_SECRET"):
        load_credentials(cfg, {})
    creds = load_credentials(cfg, {"LAPOR_CLIENT_ID": "a", "LAPOR_CLIENT_SECRET": "s3cret"})
    assert creds.client_secret == "s3cret" and "s3cret" not in repr(creds)
    d = tmp_path / "creds"
    d.mkdir()
    (d / "LAPOR_CLIENT_ID").write_text("id-from-file\n")
    (d / "LAPOR_CLIENT_SECRET").write_text("secret-from-file\n")
    creds = load_credentials(cfg, {"CREDENTIALS_DIRECTORY": str(d)})
    assert (creds.client_id, creds.client_secret) == ("id-from-file", "secret-from-file")


def test_secret_in_settings_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="client_secret: unknown key"):
        load_config(write(tmp_path, '[lapor]\nclient_secret = "x"\n'), environ={})


def test_cli_exits_2_with_the_message(tmp_path: Path) -> None:
    path = write(tmp_path, '[sync]\npull_interval_s = "x"\n')
    r = subprocess.run(
        [sys.executable, "-m", "connector", "--config", str(path), "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert str(path) in r.stderr and "sync.pull_interval_s" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "connector", "nosuchcommand"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2


def test_config_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from connector import settings

    system = tmp_path / "etc" / "settings.toml"
    monkeypatch.setattr(settings, "SYSTEM_CONFIG", system)
    here = tmp_path / "here"
    here.mkdir()
    assert settings.default_config_path({}, cwd=here) == system
    (here / "settings.toml").write_text("")
    assert settings.default_config_path({}, cwd=here) == here / "settings.toml"
    env = {settings.CONFIG_ENV: "/x/settings.toml"}
    assert settings.default_config_path(env, cwd=here) == Path("/x/settings.toml")
    # Nothing found: a clear error naming the system file, not a silent new database.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"etc/settings.toml: file not found.*--config"):
        load_config(None, environ={})


def test_database_display_masks_the_password(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, '[storage]\nurl = "postgresql+psycopg://lapor:geheim@db.local/lapor"\n'),
        environ={},
    )
    assert cfg.database_display == "postgresql+psycopg://lapor:***@db.local/lapor"
    assert "geheim" not in cfg.database_display


@pytest.mark.parametrize("value", ["9840", "localhost", "127.0.0.1:99999", ":80"])
def test_bad_metrics_listen_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        load_config(write(tmp_path, f'[metrics]\nlisten = "{value}"\n'), environ={})


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("sync", "overlap_s", "100000000000"),
        ("sync", "sweep_window_s", "100000000000"),
        ("sync", "pull_interval_s", "0.000001"),
        ("sync", "push_interval_s", "inf"),
        ("sync", "max_backoff_s", "nan"),
        ("lapor", "call_deadline_s", "1e12"),
        ("mappings", "reload_interval_s", "0.0001"),
    ],
)
def test_absurd_durations_are_refused(tmp_path: Path, section: str, key: str, value: str) -> None:
    """Issue 23 item 14: 10^11 s overflowed date arithmetic, a microsecond interval spun."""
    env = {f"LAPOR_CONNECTOR_{section.upper()}__{key.upper()}": value}
    with pytest.raises(ConfigError, match=f"{section}.{key}"):
        load_config(write(tmp_path, ""), environ=env)


def test_every_duration_setting_has_both_bounds() -> None:
    from pydantic import BaseModel

    from connector.settings import Settings

    def walk(model: type[BaseModel], prefix: str) -> list[str]:
        unbounded = []
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                unbounded += walk(ann, f"{prefix}{name}.")
            elif name.endswith("_s"):
                kinds = {type(m).__name__ for m in field.metadata}
                if not ({"Ge", "Gt"} & kinds and {"Le", "Lt"} & kinds):
                    unbounded.append(prefix + name)
        return unbounded

    assert walk(Settings, "") == []
