"""The `tickets`, `status`, `quarantine` and `outbox` commands per CONTRACT, on every backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.cli import main
from tests.conftest import write_config


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path / "site", db_url)


def run(capsys: Any, cfg: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(cfg), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def synced(cfg: Path, capsys: Any) -> Path:
    code, out, err = run(capsys, cfg, "sync")
    assert code == 0, err
    assert out.startswith("sync ok: fetched=")
    return cfg


def test_ticket_json_shape(synced: Path, capsys: Any) -> None:
    code, out, _ = run(capsys, synced, "tickets", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 60
    keys = {
        "id",
        "tracking_id",
        "agency",
        "status",
        "lapor_status",
        "title",
        "body",
        "anonymous",
        "confidential",
        "reporter",
        "submitted_at",
        "due_at",
        "messages",
    }
    for r in rows:
        assert keys <= set(r)
        assert isinstance(r["id"], str) and isinstance(r["tracking_id"], str)
        assert r["status"] in ("new", "in_progress", "resolved", "closed")
        if r["anonymous"]:
            assert r["reporter"] is None
        else:
            assert set(r["reporter"]) == {"name", "email", "phone"}
        assert r["submitted_at"].endswith("+00:00")
        assert r["due_at"] is None or r["due_at"].endswith("+00:00")
        assert r["restricted"] == r["confidential"]
        for m in r["messages"]:
            assert m["direction"] in ("in", "out", "internal")
            assert {"author", "text", "at"} <= set(m)
    assert any(r["confidential"] for r in rows) and any(r["anonymous"] for r in rows)


def test_list_table_and_show(synced: Path, capsys: Any) -> None:
    code, out, _ = run(capsys, synced, "tickets", "list")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["ID", "TRACKING", "AGENCY"]
    code, out, _ = run(capsys, synced, "tickets", "show", "1")
    assert code == 0 and "Ticket 1" in out
    code, out, _ = run(capsys, synced, "tickets", "show", "1", "--json")
    assert json.loads(out)["id"] == "1"
    code, _, err = run(capsys, synced, "tickets", "show", "999")
    assert code == 1 and "no ticket" in err


def first_open(cfg: Path, capsys: Any) -> dict[str, Any]:
    _, out, _ = run(capsys, cfg, "tickets", "list", "--json")
    return next(r for r in json.loads(out) if r["status"] == "new")


def test_update_records_and_queues(synced: Path, capsys: Any) -> None:
    t = first_open(synced, capsys)
    code, out, _ = run(
        capsys,
        synced,
        "tickets",
        "update",
        t["id"],
        "--status",
        "in_progress",
        "--reply",
        "Petugas dijadwalkan.",
        "--note",
        "catatan internal",
    )
    assert code == 0 and "queued" in out
    _, out, _ = run(capsys, synced, "outbox", "list", "--json")
    entries = json.loads(out)
    assert len(entries) == 1 and entries[0]["lapor_status"] == "diproses"
    assert entries[0]["state"] == "pending"
    _, out, _ = run(capsys, synced, "tickets", "show", t["id"], "--json")
    shown = json.loads(out)
    assert shown["status"] == "in_progress"
    assert [m["direction"] for m in shown["messages"]][-2:] == ["internal", "out"]
    # An internal note alone never reaches the outbox.
    code, out, _ = run(capsys, synced, "tickets", "update", t["id"], "--note", "hanya internal")
    assert code == 0 and "queued" not in out
    _, out, _ = run(capsys, synced, "outbox", "list", "--json")
    assert len(json.loads(out)) == 1


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["--status", "done"], 2, "unknown status"),
        (["--reply", "x" * 5001], 2, "at most 5000"),
        (["--reply", "   "], 2, "empty"),
        ([], 2, "at least one"),
    ],
)
def test_update_refusals(
    synced: Path, capsys: Any, args: list[str], exit_code: int, message: str
) -> None:
    t = first_open(synced, capsys)
    code, _, err = run(capsys, synced, "tickets", "update", t["id"], *args)
    assert code == exit_code and message in err
    _, out, _ = run(capsys, synced, "outbox", "list", "--json")
    assert json.loads(out) == []


def test_update_unknown_and_closed_tickets(synced: Path, capsys: Any) -> None:
    code, _, err = run(capsys, synced, "tickets", "update", "9999", "--note", "x")
    assert code == 1 and "no ticket" in err
    _, out, _ = run(capsys, synced, "tickets", "list", "--json", "--status", "closed")
    closed = json.loads(out)[0]
    code, _, err = run(capsys, synced, "tickets", "update", closed["id"], "--reply", "halo")
    assert code == 1 and "closed" in err
    code, _, err = run(capsys, synced, "tickets", "update", closed["id"], "--status", "new")
    assert code == 1 and "closed" in err
    code, _, _ = run(capsys, synced, "tickets", "update", closed["id"], "--note", "boleh")
    assert code == 0


def test_status_json_and_exit_codes(cfg: Path, capsys: Any) -> None:
    code, out, _ = run(capsys, cfg, "status", "--json")
    assert code == 1 and "never_pulled" in out  # nothing pulled yet: degraded
    assert run(capsys, cfg, "sync")[0] == 0
    code, out, _ = run(capsys, cfg, "status", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["healthy"], rep["findings"]
    assert rep["watermark"] and rep["pull"]["last"]["ok"] and rep["tickets"]
    assert set(rep) >= {"outbox", "quarantine", "mapping", "overdue", "push"}
    code, out, _ = run(capsys, cfg, "status")
    assert code == 0 and out.startswith("Status: OK")


def test_quarantine_and_outbox_commands_when_empty(synced: Path, capsys: Any) -> None:
    assert run(capsys, synced, "quarantine", "list")[1].strip() == "quarantine is empty"
    assert json.loads(run(capsys, synced, "quarantine", "list", "--json")[1]) == []
    code, _, err = run(capsys, synced, "quarantine", "retry", "123")
    assert code == 1 and "not in quarantine" in err
    code, _, err = run(capsys, synced, "outbox", "retry", "77")
    assert code == 1 and "not failed" in err
    assert run(capsys, synced, "db", "upgrade")[0] == 0


def test_a_long_first_pull_that_commits_is_not_reported_stale(cfg: Path, capsys: Any) -> None:
    from connector.runtime import open_store
    from connector.settings import load_config
    from connector.store import state
    from connector.timeutil import utcnow

    store = open_store(load_config(cfg))
    try:
        store.run(lambda c: state.advance_watermark(c, utcnow(), utcnow()))
    finally:
        store.close()
    code, out, _ = run(capsys, cfg, "status", "--json")
    rep = json.loads(out)
    assert "never_pulled" not in out and rep["pull"]["progress_age_s"] is not None
    assert code == 0


def test_outbox_dismiss(synced: Path, capsys: Any) -> None:
    from connector.runtime import open_store
    from connector.settings import load_config
    from connector.store import state

    t = first_open(synced, capsys)
    assert run(capsys, synced, "tickets", "update", t["id"], "--reply", "Balasan.")[0] == 0
    [entry] = json.loads(run(capsys, synced, "outbox", "list", "--json")[1])
    code, _, err = run(capsys, synced, "outbox", "dismiss", str(entry["id"]), "--reason", "x")
    assert code == 1 and "not failed" in err  # pending: nothing to dismiss
    code, _, err = run(capsys, synced, "outbox", "dismiss", "999", "--reason", "x")
    assert code == 1 and "not failed" in err
    with pytest.raises(SystemExit) as usage:  # no --reason
        run(capsys, synced, "outbox", "dismiss", str(entry["id"]))
    assert usage.value.code == 2
    store = open_store(load_config(synced))
    try:
        store.run(lambda c: state.mark_failed(c, entry["id"], "validasi_gagal"))
    finally:
        store.close()
    code, out, _ = run(capsys, synced, "status", "--json")
    assert code == 1 and "push_failed" in out
    code, out, _ = run(
        capsys,
        synced,
        "outbox",
        "dismiss",
        str(entry["id"]),
        "--reason",
        "sudah dijawab langsung di LAPOR!",
    )
    assert code == 0 and "dismissed" in out
    code, out, _ = run(capsys, synced, "status", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["outbox"]["failed"] == 0 and rep["outbox"]["dismissed"] == 1
    [row] = json.loads(run(capsys, synced, "outbox", "list", "--json")[1])
    assert row["state"] == "dismissed"
    assert row["dismiss_reason"] == "sudah dijawab langsung di LAPOR!"
    out = run(capsys, synced, "outbox", "list")[1]
    assert "sudah dijawab langsung di LAPOR!" in out
    code, _, _ = run(capsys, synced, "outbox", "dismiss", str(entry["id"]), "--reason", "y")
    assert code == 1  # already dismissed
