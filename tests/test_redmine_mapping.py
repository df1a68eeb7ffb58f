"""mappings/redmine.toml: the shipped file loads; each mistake is one FILE: ENTRY: FIELD:
MESSAGE line naming what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.mappings import MappingError
from connector.tracker import redmine_mapping

ROOT = Path(__file__).resolve().parent.parent
GOOD = """tracker = "Support"
[statuses]
new = "New"
in_progress = "In Progress"
resolved = "Resolved"
closed = "Closed"
"""


def _load(tmp_path: Path, text: str) -> redmine_mapping.RedmineMapping:
    (tmp_path / "redmine.toml").write_text(text, encoding="utf-8")
    return redmine_mapping.load(tmp_path)


def test_the_shipped_file_matches_redmines_default_english_data() -> None:
    m = redmine_mapping.load(ROOT / "mappings")
    assert m.tracker == "Support"
    assert m.to_redmine == {
        "new": "New",
        "in_progress": "In Progress",
        "resolved": "Resolved",
        "closed": "Closed",
    }
    assert m.local_status("In Progress") == "in_progress"
    assert m.local_status("Feedback") is None  # unmapped: not sent to LAPOR!


def test_from_redmine_adds_statuses_read_back(tmp_path: Path) -> None:
    m = _load(tmp_path, GOOD + '[from_redmine]\n"Feedback" = "in_progress"\n')
    assert m.local_status("Feedback") == "in_progress"
    assert m.to_redmine["in_progress"] == "In Progress"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            GOOD.replace('tracker = "Support"\n', ""),
            "redmine.toml: -: tracker: missing: name the Redmine tracker of new issues",
        ),
        (GOOD.replace('"Support"', '""'), "redmine.toml: -: tracker: must not be empty"),
        (
            GOOD.replace('"Support"', "3"),
            "redmine.toml: -: tracker: must be a text (the Redmine name in quotes)",
        ),
        (
            GOOD.replace('"Support"', '" Support"'),
            "redmine.toml: -: tracker: must not start or end with spaces",
        ),
        (
            GOOD.replace('closed = "Closed"\n', ""),
            "redmine.toml: statuses: closed: missing: every local status needs a Redmine status",
        ),
        (
            GOOD + 'reopened = "Feedback"\n',
            "redmine.toml: statuses: reopened: unknown local status (expected: new, in_progress, "
            "resolved, closed)",
        ),
        (
            GOOD.replace('"Closed"', '"Resolved"'),
            "redmine.toml: statuses: closed: Redmine status 'Resolved' is already used for "
            "resolved; each needs its own (changes map back)",
        ),
        (
            'tracker = "Support"\n',
            "redmine.toml: statuses: -: missing table [statuses] "
            "(new, in_progress, resolved, closed)",
        ),
        (
            'proyek = "pengaduan"\n' + GOOD,
            "redmine.toml: -: proyek: unknown key (expected: tracker, statuses, from_redmine)",
        ),
        (
            GOOD + '[from_redmine]\n"Resolved" = "closed"\n',
            "redmine.toml: from_redmine: Resolved: already in [statuses]",
        ),
        (
            GOOD + '[from_redmine]\n"Rejected" = "ditolak"\n',
            "redmine.toml: from_redmine: Rejected: unknown local status 'ditolak' (expected: new, "
            "in_progress, resolved, closed)",
        ),
        ("tracker = ", "redmine.toml: -: -: TOML syntax error"),
    ],
)
def test_each_mistake_is_named(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(MappingError) as err:
        _load(tmp_path, text)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as err:
        _load(tmp_path, '[statuses]\nnew = ""\n')
    assert len(err.value.problems) == 5  # tracker, new, and three missing statuses


def test_a_missing_file_says_when_it_is_needed(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r'needed when tracker\.kind = "redmine"'):
        redmine_mapping.load(tmp_path)


def test_project_identifiers_are_checked_offline() -> None:
    problems: list[str] = []
    redmine_mapping.check_projects(
        {"agency[1] DINKES": "dinkes", "agency[2] PUPR": "Dinas PU", "-": "1proyek"}, problems
    )
    assert problems == [
        "agencies.toml: agency[2] PUPR: redmine_project: 'Dinas PU' is not a Redmine project "
        "identifier (lower-case letters, digits, - and _, starting with a letter)",
        "agencies.toml: -: redmine_project: '1proyek' is not a Redmine project identifier "
        "(lower-case letters, digits, - and _, starting with a letter)",
    ]
