"""The sandbox looks like Mahakam Ulu: real agency names, the right kampung, LAPOR!'s deadlines."""

from __future__ import annotations

from connector.mappings import load
from connector.sandbox import World, data
from connector.timeutil import WITA, add_working_days, is_working_day
from tests.conftest import ROOT, FakeTime


def test_units_carry_mahulus_real_names() -> None:
    names = {u[1] for u in data.UNITS}
    assert {
        "Dinas Pemberdayaan Masyarakat dan Kampung",
        "RS Pratama Nawacita Datah Dawai",
        "Dinas Kesehatan, Pengendalian Penduduk dan Keluarga Berencana",
        "Dinas Kepemudaan, Olahraga dan Pariwisata",
        "Badan Pendapatan Daerah",
        "RS Pratama Gerbang Sehat Mahulu",
    } <= names
    assert not any("RSUD" in n or "Pemerintahan Kampung" in n for n in names)


def test_kampung_are_in_their_kecamatan() -> None:
    k = data.KECAMATAN
    assert {"Memahak Teboq", "Memahak Ulu"} <= set(k["Long Hubung"])
    assert "Mamahak Besar" in k["Long Bagun"]
    assert "Memahak Teboq" not in k["Long Bagun"] and "Mamahak Besar" not in k["Long Hubung"]
    assert all("Long Pahangai Ulu" not in v for v in k.values())
    everywhere = [x for v in k.values() for x in v]
    assert len(everywhere) == len(set(everywhere))


def test_every_active_unit_and_topic_is_mapped_in_the_shipped_files() -> None:
    m = load(ROOT / "mappings")
    active = {u[0] for u in data.UNITS if u[3]}
    assert active <= set(m.unit_to_agency)
    assert set(data.CATEGORY_UNIT.values()) <= active
    codes = {a.code for a in m.agencies}
    assert {
        "DKP2KB",
        "DPMK",
        "RSP_DATAH_DAWAI",
        "RSP_GERBANG_SEHAT",
        "DISPARPORA",
        "BAPENDA",
    } <= codes


def test_deadlines_are_five_working_days_and_deterministic(fake_time: FakeTime) -> None:
    w = World(seed=6411, complaints=300, clock=fake_time)
    with_deadline = [r for r in w.records.values() if r["batas_tindak_lanjut"] is not None]
    assert len(with_deadline) > 50
    for r in with_deadline:
        due = r["batas_tindak_lanjut"]
        assert due == add_working_days(r["disposisi"][0]["tanggal"], 5)
        local = due.astimezone(WITA)
        assert is_working_day(local.date()) and (local.hour, local.minute) == (23, 59)
    again = World(seed=6411, complaints=300, clock=fake_time)
    assert again.records == w.records
    units = {r["disposisi"][0]["unit_id"] for r in w.records.values()}
    assert {6411026, 6411027, 6411028} <= units  # the new units get complaints too
