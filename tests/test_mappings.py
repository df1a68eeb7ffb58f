"""A table of mapping files, valid and invalid, each with its expected message."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connector.mappings import MappingError, load, suggest
from tests.conftest import ROOT

GOOD_AGENCIES = """
[[agency]]
code = "DINKES"
name = "Dinas Kesehatan"
lapor_unit_ids = [6411003]

[[agency]]
code = "DISDUKCAPIL"
name = "Dinas Kependudukan dan Pencatatan Sipil"
lapor_unit_ids = [6411001]
"""


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", d)
    return d


def test_shipped_mappings_are_valid() -> None:
    m = load(ROOT / "mappings")
    assert m.unit_to_agency[6411001] == "DISDUKCAPIL"
    assert m.inbound["diarsipkan"] == "closed" and m.outbound["resolved"].lapor == "selesai"
    assert m.category_for(101, 1) == "KESEHATAN" and m.category_for(999, None) is None


AGENCY_CASES = [
    (
        "duplicate unit",
        GOOD_AGENCIES.replace("[6411001]", "[6411001, 6411003]"),
        "agencies.toml: agency[2] DISDUKCAPIL: lapor_unit_ids: unit 6411003 is already routed to "
        "DINKES",
    ),
    (
        "duplicate code",
        GOOD_AGENCIES.replace('"DISDUKCAPIL"', '"DINKES"'),
        "agencies.toml: agency[2] DINKES: code: duplicate code",
    ),
    (
        "unknown key",
        GOOD_AGENCIES.replace('code = "DINKES"', 'code = "DINKES"\nkepala = "x"'),
        "agencies.toml: agency[1] DINKES: kepala: unknown key",
    ),
    (
        "bad code",
        GOOD_AGENCIES.replace('"DINKES"', '"dinas kesehatan"'),
        "agencies.toml: agency[1] dinas kesehatan: code: must be upper-case",
    ),
    (
        "broken toml",
        GOOD_AGENCIES.replace('name = "Dinas Kesehatan"', 'name = "Dinas Kesehatan'),
        "agencies.toml: -: -: TOML syntax error",
    ),
    (
        "wrong type",
        GOOD_AGENCIES.replace("[6411003]", '"6411003"'),
        "agencies.toml: agency[1] DINKES: lapor_unit_ids: Input should be a valid list",
    ),
    (
        "wrong item type",
        GOOD_AGENCIES.replace("[6411003]", '["6411003"]'),
        "agencies.toml: agency[1] DINKES: lapor_unit_ids.0: Input should be a valid integer",
    ),
    (
        "empty units",
        GOOD_AGENCIES.replace("[6411003]", "[]"),
        "agencies.toml: agency[1] DINKES: lapor_unit_ids: List should have at least 1 item",
    ),
    (
        "missing name",
        GOOD_AGENCIES.replace('name = "Dinas Kesehatan"\n', ""),
        "agencies.toml: agency[1] DINKES: name: Field required",
    ),
    ("no agencies", "", "agencies.toml: -: agency: Field required"),
]


@pytest.mark.parametrize(
    ("label", "text", "expected"), AGENCY_CASES, ids=[c[0] for c in AGENCY_CASES]
)
def test_invalid_agencies(mdir: Path, label: str, text: str, expected: str) -> None:
    (mdir / "agencies.toml").write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load(mdir)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_toml_syntax_error_gives_line_and_column(mdir: Path) -> None:
    (mdir / "agencies.toml").write_text("[[agency]]\ncode = \n", encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load(mdir)
    assert "line 2, column" in info.value.problems[0]


STATUS_CASES = [
    ('lapor = "ditutup"', 'lapor = "tutup"', "statuses.toml: status[4] tutup: lapor: unknown"),
    (
        'local = "resolved"\n\n[[status]]',
        'local = "done"\n\n[[status]]',
        "statuses.toml: status[3] selesai: local: unknown local status",
    ),
    (
        'lapor = "diarsipkan"',
        'lapor = "ditutup"',
        "statuses.toml: status[5] ditutup: lapor: mapped twice",
    ),
    (
        'lapor = "diproses"',
        'lapor = "ditutup"',
        "statuses.toml: reply[1] in_progress: lapor: must be one of diproses, selesai",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), STATUS_CASES)
def test_invalid_statuses(mdir: Path, old: str, new: str, expected: str) -> None:
    path = mdir / "statuses.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load(mdir)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_unmapped_lapor_status_is_named(mdir: Path) -> None:
    path = mdir / "statuses.toml"
    path.write_text(
        path.read_text().replace('[[status]]\nlapor = "diarsipkan"\nlocal = "closed"\n', "")
    )
    with pytest.raises(MappingError) as info:
        load(mdir)
    assert "statuses.toml: -: status: LAPOR! status diarsipkan is not mapped" in info.value.problems


def test_categories_are_optional_but_validated(mdir: Path) -> None:
    (mdir / "categories.toml").unlink()
    assert load(mdir).categories == {}
    (mdir / "categories.toml").write_text(
        '[[category]]\ncode = "A"\nname = "a"\n'
        'lapor_kategori_ids = [1]\n[[category]]\ncode = "B"\n'
        'name = "b"\nlapor_kategori_ids = [1]\n'
    )
    with pytest.raises(MappingError) as info:
        load(mdir)
    assert info.value.problems == [
        "categories.toml: category[2] B: lapor_kategori_ids: kategori 1 is already in A"
    ]


def test_missing_file_and_folder(mdir: Path) -> None:
    (mdir / "statuses.toml").unlink()
    with pytest.raises(MappingError, match=r"statuses\.toml: -: -: file not found"):
        load(mdir)
    with pytest.raises(MappingError, match="not found"):
        load(mdir / "nope")


def test_unreadable_file(mdir: Path) -> None:
    (mdir / "agencies.toml").write_bytes(b"\xff\xfe\x00 bad")
    with pytest.raises(MappingError, match=r"agencies\.toml: -: -: cannot read"):
        load(mdir)


def test_suggest_prints_pasteable_toml_for_unmapped_units(mdir: Path) -> None:
    m = load(mdir)
    text = suggest([(6411001, "Dinas Kependudukan"), (6411777, "Dinas Pariwisata")], m)
    assert "6411001" not in text and "lapor_unit_ids = [6411777]" in text
    (mdir / "agencies.toml").write_text((mdir / "agencies.toml").read_text() + "\n" + text)
    assert load(mdir).unit_to_agency[6411777].endswith("_6411777")


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args], capture_output=True, text=True, cwd=cwd
    )


def test_mappings_check_command(tmp_path: Path, mdir: Path) -> None:
    (tmp_path / "settings.toml").write_text(
        "[lapor]\nrequests_per_minute = 0\n[sandbox]\nrate_limit_per_minute = 0\n"
    )
    ok = cli(["mappings", "check"], tmp_path)
    assert ok.returncode == 0 and "mappings OK" in ok.stdout
    online = cli(["mappings", "check", "--online"], tmp_path)
    assert online.returncode == 0, online.stderr
    suggested = cli(["mappings", "suggest"], tmp_path)
    assert suggested.returncode == 0 and "already mapped" in suggested.stdout
    text = (mdir / "agencies.toml").read_text()
    (mdir / "agencies.toml").write_text(text.replace("[6411001]", "[6411001, 6411099, 6419999]"))
    online = cli(["mappings", "check", "--online"], tmp_path)
    assert online.returncode == 1
    assert "unit 6411099 is not active" in online.stderr
    assert "unit 6419999 does not exist" in online.stderr
    (mdir / "agencies.toml").write_text(text.replace("[6411001]", "[6411003]"))
    bad = cli(["mappings", "check"], tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("agencies.toml: agency[")
    suggested = cli(["mappings", "suggest"], tmp_path)
    assert "lapor_unit_ids = [6411001]" in suggested.stdout


# -- statuses.toml: templates and requires_reply; holidays.toml ---------------------------------


def test_shipped_templates_speak_to_bapak_ibu_and_name_the_agency() -> None:
    m = load(ROOT / "mappings")
    for local, out in m.outbound.items():
        text = out.text("Dinas Kesehatan")
        assert "Bapak/Ibu" in text and "Dinas Kesehatan" in text, local
        assert "{" not in text and ".." not in text and " ." not in text
        assert "Anda" not in text
    assert "keberatan" in m.outbound["resolved"].template
    assert "LAPOR!" in m.outbound["resolved"].template
    assert m.outbound["resolved"].requires_reply is True
    assert m.outbound["in_progress"].requires_reply is False


TEMPLATE_CASES = [
    ("oleh {agency_name}.", "oleh {nama_opd}.", "template: unknown placeholder {nama_opd}"),
    ("oleh {agency_name}.", "oleh {agency_name.", "template: broken placeholder"),
    (
        'LAPOR!"\n\n[[reply]]\nlocal = "resolved"',
        'LAPOR!."\n\n[[reply]]\nlocal = "resolved"',
        "template: doubled punctuation '!.'",
    ),
    (
        "requires_reply = false",
        'requires_reply = "no"',
        "requires_reply: Input should be a valid boolean",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), TEMPLATE_CASES)
def test_invalid_templates(mdir: Path, old: str, new: str, expected: str) -> None:
    path = mdir / "statuses.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load(mdir)
    assert any(
        p.startswith("statuses.toml: reply[1] in_progress: ") and expected in p
        for p in info.value.problems
    ), info.value.problems


def test_requires_reply_defaults_to_resolved_only(mdir: Path) -> None:
    path = mdir / "statuses.toml"
    path.write_text(
        "\n".join(
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if not line.startswith("requires_reply")
        ),
        encoding="utf-8",
    )
    m = load(mdir)
    assert {k: v.requires_reply for k, v in m.outbound.items()} == {
        "in_progress": False,
        "resolved": True,
        "closed": False,
    }


HOLIDAY_CASES = [
    (
        '[[holiday]]\ndate = "2026-12-31"\nname = "x"\n',
        "holidays.toml: holiday[1]: date: Input should be a valid date",
    ),
    (
        '[[holiday]]\ndate = 2026-12-31\nname = ""\n',
        "holidays.toml: holiday[1] 2026-12-31: name: String should have at least 1 character",
    ),
    (
        '[[holiday]]\ndate = 2026-12-31\nname = "a"\n[[holiday]]\ndate = 2026-12-31\nname = "b"\n',
        "holidays.toml: holiday[2] 2026-12-31: date: listed twice, also holiday[1]",
    ),
    (
        '[[holiday]]\ndate = 1926-12-31\nname = "a"\n',
        "holidays.toml: holiday[1] 1926-12-31: date: year out of range",
    ),
    (
        '[[holiday]]\ndate = 2026-12-31\nname = "a"\nkind = "x"\n',
        "holidays.toml: holiday[1] 2026-12-31: kind: unknown key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), HOLIDAY_CASES)
def test_invalid_holidays(mdir: Path, text: str, expected: str) -> None:
    (mdir / "holidays.toml").write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load(mdir)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_holidays_are_optional_and_change_the_version(mdir: Path) -> None:
    from datetime import date

    shipped = load(mdir)
    assert shipped.holidays == frozenset()
    (mdir / "holidays.toml").unlink()
    assert load(mdir).holidays == frozenset()
    (mdir / "holidays.toml").write_text(
        '[[holiday]]\ndate = 2027-01-04\nname = "Libur"\n', encoding="utf-8"
    )
    declared = load(mdir)
    assert declared.holidays == frozenset({date(2027, 1, 4)})
    assert declared.version != shipped.version


def test_mappings_check_names_the_holiday_problem(mdir: Path, tmp_path: Path) -> None:
    from tests.conftest import write_config

    cfg = write_config(tmp_path / "site", f"sqlite:///{tmp_path}/c.db", mappings_src=mdir)
    (tmp_path / "site" / "mappings" / "holidays.toml").write_text(
        '[[holiday]]\ndate = 2026-02-30\nname = "x"\n', encoding="utf-8"
    )
    out = subprocess.run(
        [sys.executable, "-m", "connector", "mappings", "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.startswith("holidays.toml: -: -: TOML syntax error"), out.stderr


@pytest.mark.parametrize(
    "name",
    [
        'Puskesmas "Long Apari"',
        'X"\nlapor_unit_ids = [6411003]\n[[agency]]\ncode = "EVIL"\nname = "x',
        "back\\slash \\u0041 tab\tdel\x7f bell\x07 lone\ud800 ünïcödé",
        "",
    ],
)
def test_suggest_writes_any_unit_name_as_one_toml_string(mdir: Path, name: str) -> None:
    """A unit name is LAPOR!'s text: quotes and newlines in it never make a second agency
    or invalid TOML (issue 23 item 8)."""
    import tomllib

    text = suggest([(6411777, name)], load(mdir))
    parsed = tomllib.loads(text)
    assert len(parsed["agency"]) == 1
    agency = parsed["agency"][0]
    assert agency["lapor_unit_ids"] == [6411777]
    assert agency["name"] == (name.replace("\ud800", "\ufffd") or "unit 6411777")
    (mdir / "agencies.toml").write_text((mdir / "agencies.toml").read_text() + "\n" + text)
    assert load(mdir).unit_to_agency[6411777].endswith("_6411777")
