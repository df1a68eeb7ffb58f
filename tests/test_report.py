"""`report` from a known history, on every backend; the HTML drawn by headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector import report
from connector.cli import main
from connector.domain import Facts, Period, Start
from connector.mappings import load
from connector.sandbox import Faults, World
from connector.status import report as status_report
from connector.timeutil import WITA
from tests.conftest import ROOT, FakeTime
from tests.factories import narrow
from tests.harness import Harness

pytestmark = pytest.mark.anyio
A, B = 6411003, 6411001  # DKP2KB, DISDUKCAPIL


def cli(capsys: Any, cfg: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what the in-process syncs logged
    code = main(["--config", str(cfg), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def empty_world(fake_time: FakeTime) -> World:
    # No initial history: only the complaints the test makes fall on the report's date.
    return World(seed=12, complaints=0, faults=Faults(rate_limit_per_minute=0), clock=fake_time)


def prev_day(day: str) -> str:
    return (datetime.fromisoformat(day) - timedelta(days=1)).date().isoformat()


def _rows(text: str) -> dict[str, dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return {r["agency"]: r for r in rows}


async def test_done_when_twelve_complaints_two_agencies(
    tmp_path: Path, db_url: str, empty_world: World, fake_time: FakeTime, capsys: Any
) -> None:
    world = empty_world
    h = Harness(tmp_path / "site", db_url, world, fake_time)
    now = world.now()
    tids = world.add_complaints(12)
    for i, tid in enumerate(tids):
        rec = world.records[tid]
        rec["disposisi"] = [world.disposition(A if i < 6 else B, now)]
        rec["batas_tindak_lanjut"] = None
    # Three LAPOR! deadlines already past: two of DKP2KB, one of DISDUKCAPIL.
    past = now - timedelta(days=1)
    for tid in (tids[1], tids[2], tids[7]):
        world.records[tid]["batas_tindak_lanjut"] = past
    await h.sync()
    ids = {t["tracking_id"]: t["id"] for t in h.tickets()}
    assert len(ids) == 12
    cfg = h.cfg_path
    fake_time.t += 120
    # Officers answer four: three through the tracker, one on LAPOR! directly.
    code, _, err = cli(
        capsys, cfg, "tickets", "update", ids[str(tids[0])], "--status", "in_progress"
    )  # the template alone is fine for in_progress
    assert code == 0, err
    code, _, err = cli(
        capsys,
        cfg,
        "tickets",
        "update",
        ids[str(tids[1])],
        "--status",
        "in_progress",
        "--reply",
        "Petugas kami sudah meninjau lokasi.",
    )
    assert code == 0, err  # after its LAPOR! deadline: late
    code, _, err = cli(capsys, cfg, "tickets", "update", ids[str(tids[6])], "--status", "resolved")
    assert code == 2 and "--reply" in err  # resolved needs the officer's own words
    code, _, err = cli(
        capsys,
        cfg,
        "tickets",
        "update",
        ids[str(tids[6])],
        "--status",
        "resolved",
        "--reply",
        "Dokumen sudah kami terbitkan.",
    )
    assert code == 0, err
    status, _ = world.post_follow_up(
        tids[8],
        6411,
        "petugas-langsung-1",
        {"unit_id": B, "status": "diproses", "isi": "Ditangani langsung di LAPOR!."},
    )
    assert status == 201
    await h.sync()  # one sync: its pull sees the officer's post, its push sends ours
    day = datetime.fromtimestamp(fake_time.t, UTC).astimezone(WITA).date().isoformat()
    created_day = world.records[tids[0]]["dibuat"].astimezone(WITA).date().isoformat()
    if created_day != day:  # the run crossed midnight WITA: report on the day received
        day = created_day
    code, out, _ = cli(capsys, cfg, "report", "--from", day, "--to", day, "--format", "csv")
    assert code == 0
    assert out.splitlines()[0] == ",".join(report.COLUMNS)
    rows = _rows(out)
    got = {a: [rows[a][c] for c in report.COLUMNS[1:7]] for a in ("DKP2KB", "DISDUKCAPIL", "TOTAL")}
    assert got == {
        "DKP2KB": ["6", "1", "1", "1", "3", "0"],
        "DISDUKCAPIL": ["6", "2", "0", "1", "3", "1"],
        "TOTAL": ["12", "3", "1", "2", "6", "1"],
    }
    assert rows["TOTAL"]["median_working_days_to_first_follow_up"] == "0.0"
    fake_time.t += 60
    await h.sync()  # the pull now sees our posts too: the facts stay as they are
    assert cli(capsys, cfg, "report", "--from", day, "--to", day, "--format", "csv")[1] == out
    assert rows["DINSOS"]["received"] == "0"  # every agency has its row
    assert list(rows)[-1] == "TOTAL"
    code, out, _ = cli(capsys, cfg, "report")  # the current month, a table
    assert code == 0 and out.splitlines()[-1].split()[0] == "TOTAL" and "WITA" in out
    code, _, err = cli(capsys, cfg, "report", "--from", day, "--to", prev_day(day))
    assert code == 2 and "after --to" in err
    code, _, err = cli(capsys, cfg, "report", "--agency", "NOPE")
    assert code == 2 and "unknown agency" in err
    code, out, _ = cli(capsys, cfg, "status")
    assert "WITA" in out and "Overdue (no follow-up on LAPOR! by the due time): 2" in out
    # The day before holds none of them; --agency gives that agency and the total.
    prev = (datetime.fromisoformat(day) - timedelta(days=1)).date().isoformat()
    _, out, _ = cli(capsys, cfg, "report", "--from", prev, "--to", prev, "--format", "csv")
    assert _rows(out)["TOTAL"]["received"] == "0"
    code, out, _ = cli(
        capsys, cfg, "report", "--from", day, "--to", day, "--agency", "DKP2KB", "--format", "json"
    )
    doc = json.loads(out)
    assert code == 0 and [r["agency"] for r in doc["rows"]] == ["DKP2KB", "TOTAL"]
    assert doc["rows"][1]["received"] == 6 and doc["generated_at"].endswith("+08:00")
    # Overdue as LAPOR! means it: status, the metric's function, the list marker.
    code, out, _ = cli(capsys, cfg, "status", "--json")
    overdue = json.loads(out)["overdue"]
    assert overdue["count"] == 2
    assert {t["tracking_id"] for t in overdue["tickets"]} == {str(tids[2]), str(tids[7])}
    from connector.store import followups

    assert h.store.run(lambda c: followups.overdue(c, datetime.now(UTC), 1))[0] == 2
    # The health refresh lists a few and counts all.
    short = h.store.run(
        lambda c: status_report(
            c, h.config, h.tracker, datetime.now(UTC), overdue_shown=1
        ).as_dict()
    )["overdue"]
    assert short["count"] == 2 and len(short["tickets"]) == 1
    assert short["tickets"][0]["tracking_id"] in {str(tids[2]), str(tids[7])}
    _, out, _ = cli(capsys, cfg, "tickets", "list")
    marked = [line for line in out.splitlines()[1:] if " !  " in line]
    assert sorted(line.split()[1] for line in marked) == sorted([str(tids[2]), str(tids[7])])
    _, out, _ = cli(capsys, cfg, "tickets", "show", ids[str(tids[1])], "--json")
    t = json.loads(out)
    assert t["due_periods"][0]["on_time"] is False and t["overdue"] is False
    assert t["settle_by"].endswith("+00:00") and t["settle_by_wita"].endswith("+08:00")
    _, out, _ = cli(capsys, cfg, "tickets", "show", ids[str(tids[1])])
    assert "WITA" in out and "LATE" in out
    # The follow-ups went out once each; the template names the agency.
    posted = [fu for fu in world.records[tids[0]]["tindak_lanjut"] if fu["oleh"] == "instansi"]
    assert len(posted) == 1 and "Dinas Kesehatan" in posted[0]["isi"]
    h.check_follow_ups_once()
    # HTML to a file: Bahasa Indonesia, the period, the chart.
    out_file = tmp_path / "laporan.html"
    code, _, _ = cli(
        capsys,
        cfg,
        "report",
        "--from",
        day,
        "--to",
        day,
        "--format",
        "html",
        "--out",
        str(out_file),
    )
    page = out_file.read_text(encoding="utf-8")
    assert code == 0 and "Tepat waktu" in page and "Dibuat:" in page and "WITA" in page
    assert 'class="bar on_time" data-agency="DISDUKCAPIL" data-count="2"' in page


async def test_two_agencies_see_one_ticket_and_the_lead_never_flips(
    tmp_path: Path, db_url: str, empty_world: World, fake_time: FakeTime, capsys: Any
) -> None:
    world = empty_world
    h = Harness(tmp_path / "site", db_url, world, fake_time)
    now = world.now()
    tid = world.add_complaints(1)[0]
    world.records[tid]["disposisi"] = [
        world.disposition(B, now + timedelta(seconds=5)),
        world.disposition(A, now),
    ]
    await h.sync()
    assert h.ticket(tid)["agency"] == "DKP2KB"  # the earliest disposition leads
    fake_time.t += 30
    world.records[tid]["disposisi"].reverse()  # LAPOR! lists them the other way round
    world.touch(tid)
    await h.sync()
    assert h.ticket(tid)["agency"] == "DKP2KB"
    for code in ("DKP2KB", "DISDUKCAPIL"):
        _, out, _ = cli(capsys, h.cfg_path, "tickets", "list", "--agency", code, "--json")
        rows = json.loads(out)
        assert [r["tracking_id"] for r in rows] == [str(tid)]
        assert rows[0]["agency"] == "DKP2KB" and rows[0]["agencies"] == ["DKP2KB", "DISDUKCAPIL"]
    _, out, _ = cli(capsys, h.cfg_path, "tickets", "list", "--agency", "DINSOS", "--json")
    assert json.loads(out) == []


async def test_redisposition_recomputes_a_stale_deadline(
    tmp_path: Path, db_url: str, empty_world: World, fake_time: FakeTime
) -> None:
    world = empty_world
    h = Harness(tmp_path / "site", db_url, world, fake_time)
    tid = world.add_complaints(1)[0]
    world.records[tid]["disposisi"] = [world.disposition(A, world.now())]
    world.records[tid]["batas_tindak_lanjut"] = world.now() + timedelta(hours=1)
    await h.sync()
    fake_time.t += 3 * 3600  # the deadline passes, then LAPOR! re-disposes (batas unchanged)
    world.event("redispose", tid, unit_id=B)
    await h.sync()
    ref = h.ticket(tid)["id"]
    t = h.store.run(lambda c: h.tracker.show(c, ref))
    assert t is not None and t["agency"] == "DISDUKCAPIL"
    from connector.store import followups

    facts = h.store.run(lambda c: followups.get_facts(c, [str(tid)]))[str(tid)]
    assert [p.start for p in facts.periods] == ["received", "redisposition"]
    assert facts.current.due_source == "computed" and facts.current.due_at > world.now()
    assert datetime.fromisoformat(narrow(str, t["due_at"])) == facts.current.due_at
    assert not facts.overdue(world.now())


# -- the HTML page in a real browser -------------------------------------------------------------


def _facts(tid: str, agency: str, on_time: bool | None, overdue: bool) -> Facts:
    start = datetime(2026, 11, 2, 1, tzinfo=UTC)
    due = start + timedelta(days=(-1 if overdue else 30))
    fu = None if on_time is None else start + timedelta(hours=5)
    return Facts(
        tid,
        agency,
        (agency,),
        start,
        start + timedelta(days=60),
        "ditindaklanjuti",
        False,
        (
            Period(
                1,
                agency,
                Start.RECEIVED,
                start,
                due
                if fu is None
                else (fu + timedelta(hours=1) if on_time else fu - timedelta(hours=1)),
                "lapor",
                None,
                fu,
                "1" if fu else None,
                on_time,
            ),
        ),
    )


def known_report() -> report.Report:
    facts = (
        [_facts(f"a{i}", "DKP2KB", True, False) for i in range(6)]
        + [_facts(f"b{i}", "DKP2KB", False, False) for i in range(2)]
        + [_facts(f"c{i}", "DISDUKCAPIL", None, True) for i in range(4)]
        + [_facts("d", "DISDUKCAPIL", None, False)]
    )
    now = datetime(2026, 11, 20, 2, tzinfo=UTC)
    return report.build(
        facts,
        load(ROOT / "mappings"),
        datetime(2026, 11, 1).date(),
        datetime(2026, 11, 30).date(),
        now,
    )


def test_report_numbers_from_known_facts() -> None:
    rows = {r["agency"]: r for r in known_report().as_dicts()}
    assert rows["DKP2KB"] == {
        "agency": "DKP2KB",
        "received": 8,
        "followed_up_on_time": 6,
        "followed_up_late": 2,
        "overdue": 0,
        "not_yet_due": 0,
        "completed": 0,
        "median_working_days_to_first_follow_up": 0.0,
    }
    assert rows["DISDUKCAPIL"]["overdue"] == 4 and rows["DISDUKCAPIL"]["not_yet_due"] == 1
    assert rows["DISDUKCAPIL"]["median_working_days_to_first_follow_up"] is None
    assert rows["TOTAL"]["received"] == 13


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) into rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(
            bytes(line) if channels == 3 else bytes(v for i, v in enumerate(line) if i % 4 != 3)
        )
        prev = line
    return width, height, rows


def test_html_chart_is_drawn_in_headless_chromium(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's package")
        pytest.skip("chromium not installed (apt-get install chromium)")
    page = tmp_path / "laporan.html"
    page.write_text(report.as_html(known_report()), encoding="utf-8")
    text = page.read_text(encoding="utf-8")
    assert (
        "<script" not in text
        and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        and "https://" not in text
    )
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                "--window-size=1000,900",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert shot.exists(), "chromium wrote no screenshot"
    _, _, rows = _png_pixels(shot.read_bytes())
    colours = {k: bytes.fromhex(v[1:]) for k, v in report.COLORS.items()}
    counts = dict.fromkeys(colours, 0)
    for line in rows:
        for i in range(0, len(line), 3):
            px = line[i : i + 3]
            for k, c in colours.items():
                if px == c:
                    counts[k] += 1
    # Bars are 22 px high; widths scale with the counts 6 (on time), 2 (late), 4 (overdue),
    # plus one 14x14 legend square each.
    bars = {k: counts[k] - 14 * 14 for k in counts}
    assert all(v > 22 * 50 for v in bars.values()), counts
    assert 2.6 < bars["on_time"] / bars["late"] < 3.4, counts
    assert 1.3 < bars["overdue"] / bars["late"] < 2.7, counts
