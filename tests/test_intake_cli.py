"""What operators see of intake: safe terminal output, quarantine in `status`, the sweep's
schedule, strict loopback, feed-order dedupe."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from connector.cli import main
from connector.errors import ConfigError
from connector.lapor import models as m
from connector.settings import load_config
from connector.store import schema
from connector.sync.core import dedupe
from connector.sync.sweep import sweep_due
from connector.timeutil import WITA
from tests.conftest import write_config

HOSTILE = "Jalan \x1b[2J\x1b]0;pwned\x07 rusak\r\u202e kanan"


def run(capsys: Any, cfg: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(cfg), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def synced(tmp_path: Path, db_url: str, capsys: Any) -> Path:
    cfg = write_config(tmp_path / "site", db_url)
    code, _, err = run(capsys, cfg, "sync")
    assert code == 0, err
    return cfg


def _engine(cfg: Path) -> Any:
    from connector.runtime import open_store

    return open_store(load_config(cfg, environ={}))


def test_plain_text_is_neutralised_and_json_is_exact(synced: Path, capsys: Any) -> None:
    store = _engine(synced)
    store.run(
        lambda c: c.execute(
            update(schema.tickets)
            .where(schema.tickets.c.id == 1)
            .values(title=HOSTILE, body=HOSTILE)
        )
    )
    store.run(
        lambda c: c.execute(
            schema.quarantine.insert().values(
                tracking_id="999",
                reason="invalid_record",
                detail="bad \x1b[31m",
                unit_ids="[]",
                attempts=1,
                retry_requested=False,
                first_seen=datetime.now(UTC),
                last_seen=datetime.now(UTC),
            )
        )
    )
    store.close()
    for args in (
        ("tickets", "list"),
        ("tickets", "show", "1"),
        ("quarantine", "list"),
        ("status",),
    ):
        _, out, err = run(capsys, synced, *args)
        for shown in (out, err):
            assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
            assert "\u202e" not in shown
    _, out, _ = run(capsys, synced, "tickets", "show", "1")
    assert "\\x1b[2J" in out  # visible, not interpreted
    _, out, _ = run(capsys, synced, "tickets", "show", "1", "--json")
    assert json.loads(out)["title"] == HOSTILE
    _, out, _ = run(capsys, synced, "quarantine", "list", "--json")
    assert json.loads(out)[0]["detail"] == "bad \x1b[31m"


def test_status_shows_every_reason_with_count_and_oldest_age(synced: Path, capsys: Any) -> None:
    now = datetime.now(UTC)
    rows = [
        ("1", "not_found", now - timedelta(hours=2)),
        ("2", "not_found", now - timedelta(minutes=5)),
        ("3", "outside_instansi", now - timedelta(days=9)),
    ]
    store = _engine(synced)
    for tid, reason, first in rows:
        store.run(
            lambda c, tid=tid, reason=reason, first=first: c.execute(
                schema.quarantine.insert().values(
                    tracking_id=tid,
                    reason=reason,
                    detail="",
                    unit_ids="[]",
                    attempts=1,
                    retry_requested=False,
                    first_seen=first,
                    last_seen=first,
                )
            )
        )
    code, out, _ = run(capsys, synced, "status")
    assert code == 0, out  # young, or settled (outside_instansi needs nobody)
    assert "not_found=2 (oldest 2.0 h)" in out and "outside_instansi=1 (oldest 9.0 d)" in out
    code, out, _ = run(capsys, synced, "status", "--json")
    rep = json.loads(out)
    assert rep["quarantine"] == {"not_found": 2, "outside_instansi": 1}
    assert 7100 < rep["quarantine_oldest_age_s"]["not_found"] < 7300
    old = now - timedelta(days=1, minutes=1)
    store.run(
        lambda c: c.execute(
            update(schema.quarantine)
            .where(schema.quarantine.c.tracking_id == "1")
            .values(first_seen=old)
        )
    )
    store.close()
    code, out, _ = run(capsys, synced, "status")
    assert code == 1 and "quarantine_old" in out and "not_found" in out


def test_sync_sweep_command(synced: Path, capsys: Any) -> None:
    code, out, err = run(capsys, synced, "sync", "--sweep")
    assert code == 0, err
    assert out.startswith("sync ok: fetched=") and "sweep=1 late=0" in out
    _, out, _ = run(capsys, synced, "status", "--json")
    assert json.loads(out)["last_sweep"]


def _wita(hour: int, day: int = 2) -> datetime:
    return datetime(2026, 12, day, hour, 30, tzinfo=WITA).astimezone(UTC)


def test_sweep_runs_daily_at_a_quiet_hour_wita() -> None:
    day = 86400.0
    assert sweep_due(_wita(2), None, day)  # never swept: the first quiet hour
    assert not sweep_due(_wita(14), None, day)  # office hours: wait
    assert not sweep_due(_wita(2), _wita(2) - timedelta(hours=3), day)  # too soon
    assert sweep_due(_wita(2, day=3), _wita(1, day=2), day)
    assert not sweep_due(_wita(14, day=3), _wita(2, day=2), day)
    # The machine was off at night: after a whole extra day, any hour will do.
    assert sweep_due(_wita(14, day=4), _wita(2, day=2), day)
    # Short intervals (tests, small sites) do not wait for the night.
    assert sweep_due(_wita(14), _wita(13), 3600.0)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1.example.org",
        "http://localhost.evil.org:80",
        "http://127.evil.org",
        "http://10.0.0.1",
        "http://[::2]:8080",
    ],
)
def test_plain_http_only_to_a_loopback_host(tmp_path: Path, url: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(f'[lapor]\nbase_url = "{url}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="loopback"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765",
        "http://127.8.9.10",
        "http://[::1]:80",
        "http://localhost:1",
        "http://LOCALHOST",
    ],
)
def test_loopback_hosts_are_accepted(tmp_path: Path, url: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(f'[lapor]\nbase_url = "{url}"\n', encoding="utf-8")
    assert load_config(path, environ={}).settings.lapor.base_url == url


def _s(tid: str, minute: int) -> m.Summary:
    return m.Summary(tid, "terdisposisi", datetime(2026, 11, 27, 3, minute, tzinfo=UTC), (1,))


def test_dedupe_keeps_feed_order() -> None:
    a, b, c = _s("1", 1), _s("2", 2), _s("3", 3)
    # A later copy with the same time stays at the first position.
    assert dedupe((a, b, a, c)) == [a, b, c]
    # A strictly newer copy moves to its (later) position: still ascending.
    a2 = _s("1", 4)
    assert dedupe((a, b, c, a2)) == [b, c, a2]
    # An older copy later on the page is dropped.
    assert dedupe((a2, b, a)) == [a2, b]
