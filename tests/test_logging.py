"""Redaction: a pure processor, and whole debug-level runs searched for personal data."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from connector.logging import REDACTED, Redactor, configure
from connector.sandbox import World
from tests.conftest import FakeTime
from tests.harness import Harness

CASES = [
    ({"event": "x", "isi": "Atap sekolah bocor"}, {"isi": REDACTED}),
    ({"event": "x", "reporter": {"name": "Maria Bulan"}}, {"reporter": REDACTED}),
    ({"event": "x", "client_secret": "s3cret-value"}, {"client_secret": REDACTED}),
    ({"event": "x", "free": "Puskesmas di Long Apari tutup"}, {"free": REDACTED}),
    (
        {"event": "x", "tracking_id": "4100001", "action": "created"},
        {"tracking_id": "4100001", "action": "created"},
    ),
    ({"event": "x", "count": 5, "ok": True, "none": None}, {"count": 5, "ok": True, "none": None}),
    (
        {"event": "x", "error": "mail maria@contoh.id or 081234567890"},
        {"error": f"mail {REDACTED} or {REDACTED}"},
    ),
    (
        {"event": "x", "error": "Authorization: Bearer abc.def-ghi"},
        {"error": f"Authorization: Bearer {REDACTED}"},
    ),
    ({"event": "x", "error": "token aB3dE5fG7hJ9kL1mN3pQ5rS7"}, {"error": f"token {REDACTED}"}),
    ({"event": "x", "fields": ["isi", "pelapor.nama"]}, {"fields": ["isi", "pelapor.nama"]}),
    ({"event": "x", "nested": {"telepon": "0812"}}, {"nested": {"telepon": REDACTED}}),
    ({"event": "x", "error": "failed with +6281234567890"}, {"error": f"failed with {REDACTED}"}),
]


@pytest.mark.parametrize(("event", "expected"), CASES)
def test_redactor_is_a_pure_function(event: dict[str, Any], expected: dict[str, Any]) -> None:
    before = dict(event)
    out = Redactor()(None, "info", dict(event))
    for key, value in expected.items():
        assert out[key] == value
    assert event == before


def test_short_plain_secret_is_masked_even_on_the_fast_path() -> None:
    out = Redactor(["s3cret-key"])(None, "info", {"event": "x", "value": "s3cret-key"})
    assert out["value"] == REDACTED


def test_configured_secrets_are_masked_anywhere() -> None:
    out = Redactor(["rahasia-demo-6411"])(
        None, "info", {"event": "login with rahasia-demo-6411", "detail": "x rahasia-demo-6411"}
    )
    assert "rahasia-demo-6411" not in json.dumps(out)


def test_exception_messages_from_libraries_are_dropped() -> None:
    try:
        raise ValueError("input_value='Maria Bulan, Kampung Lutan'")
    except ValueError as exc:
        out = Redactor()(None, "error", {"event": "boom", "exc_info": exc})
    assert "Maria" not in out["exception"] and "ValueError: [message redacted]" in out["exception"]


def personal_strings(world: World) -> set[str]:
    """Everything that must never be logged: identity, text, replies, titles."""
    found: set[str] = set()
    for r in world.records.values():
        found.update({r["isi"], r["judul"]})
        if r["pelapor"]:
            found.update(v for v in r["pelapor"].values() if v)
        found.update(f["isi"] for f in r["tindak_lanjut"])
    return found


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_debug_sync_logs_no_personal_data(
    tmp_path: Path, fmt: str, db_url: str, fake_time: FakeTime
) -> None:
    world = World(seed=31, complaints=40, clock=fake_time)
    world.set_faults(
        {"rate_limit_per_minute": 0, "malformed_rate": 0.2, "rate_429": 0.2, "token_max_uses": 4}
    )
    h = Harness(tmp_path / "s", db_url, world, fake_time)
    out = io.StringIO()
    configure("debug", fmt, secrets=["rahasia-demo-6411"], stream=out)
    secret_reply = "Balasan rahasia untuk Maria di Lutan."
    try:
        await h.sync()
        t = next(x for x in h.tickets() if x["status"] == "new")
        h.officer(t["id"], reply=secret_reply, note="catatan sangat internal")
        world.event("reply", int(t["tracking_id"]))
        fake_time.t += 5
        await h.sync()
        import structlog

        structlog.get_logger("probe").info(
            "probe_done", reply=secret_reply, reporter={"name": "Maria Bulan"}
        )
    finally:
        configure("info", "json")
    text = out.getvalue()
    assert "pull_cycle" in text and "record_synced" in text and "probe_done" in text
    leaks = {
        s
        for s in personal_strings(world)
        | {secret_reply, "catatan sangat internal", "rahasia-demo-6411", "Maria Bulan"}
        if s and s in text
    }
    assert not leaks
    tokens = set(world.tokens)
    assert tokens and not any(tok in text for tok in tokens)


def test_library_logs_through_stdlib_are_redacted_too() -> None:
    import logging

    out = io.StringIO()
    configure("debug", "json", secrets=["s3cret-value"], stream=out)
    try:
        try:
            raise ValueError("input_value='Maria Bulan' maria@contoh.id")
        except ValueError:
            logging.getLogger("apscheduler.executors").exception("Job failed s3cret-value")
    finally:
        configure("info", "json")
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["logger"] == "apscheduler.executors" and line["level"] == "error"
    text = out.getvalue()
    assert "Maria" not in text and "contoh.id" not in text and "s3cret-value" not in text
    assert "ValueError: [message redacted]" in line["exception"]
