"""``mappings/redmine.toml``: the Redmine tracker for new issues and the status table.

Problems are reported as ``FILE: ENTRY: FIELD: MESSAGE`` like ``connector.mappings``;
``check_online`` adds the ones only Redmine can answer (do the names, the custom field
and the projects exist).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from connector.domain import LocalStatus
from connector.mappings import LOCAL_STATUSES, MappingError
from connector.tracker.redmine_api import RedmineClient, RedmineRefused

REDMINE = "redmine.toml"
KEYS = ("tracker", "statuses", "from_redmine")
# Redmine's own rule for project identifiers (lower-case, starts with a letter).
PROJECT_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_\-]{0,99}$")
MAX_NAME = 255


@dataclass(frozen=True)
class RedmineMapping:
    tracker: str
    to_redmine: dict[str, str]  # local status -> Redmine status name
    to_local: dict[str, str]  # Redmine status name -> local status

    def local_status(self, redmine_status: str) -> str | None:
        return self.to_local.get(redmine_status)


def _name(value: object) -> str | None:
    """The message for a bad name value, or None when it is fine."""
    if not isinstance(value, str):
        return "must be a text (the Redmine name in quotes)"
    if not value.strip():
        return "must not be empty"
    if value != value.strip():
        return "must not start or end with spaces"
    if len(value) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    return None


def parse(data: Mapping[str, object], problems: list[str]) -> RedmineMapping | None:
    f = REDMINE
    start = len(problems)
    for key in data:
        if key not in KEYS:
            problems.append(f"{f}: -: {key}: unknown key (expected: {', '.join(KEYS)})")
    tracker = data.get("tracker")
    if tracker is None:
        problems.append(f"{f}: -: tracker: missing: name the Redmine tracker of new issues")
    elif (msg := _name(tracker)) is not None:
        problems.append(f"{f}: -: tracker: {msg}")

    statuses = data.get("statuses")
    to_redmine: dict[str, str] = {}
    if not isinstance(statuses, dict):
        problems.append(f"{f}: statuses: -: missing table [statuses] ({', '.join(LOCAL_STATUSES)})")
    else:
        for local, value in statuses.items():
            if local not in LOCAL_STATUSES:
                problems.append(
                    f"{f}: statuses: {local}: unknown local status "
                    f"(expected: {', '.join(LOCAL_STATUSES)})"
                )
            elif (msg := _name(value)) is not None:
                problems.append(f"{f}: statuses: {local}: {msg}")
            else:
                to_redmine[local] = value
        for local in LOCAL_STATUSES:
            if local not in statuses:
                problems.append(
                    f"{f}: statuses: {local}: missing: every local status needs a Redmine status"
                )
        seen: dict[str, str] = {}
        for local, name in to_redmine.items():
            if name in seen:
                problems.append(
                    f"{f}: statuses: {local}: Redmine status {name!r} is already "
                    f"used for {seen[name]}; each needs its own (changes map back)"
                )
            seen.setdefault(name, local)

    extra = data.get("from_redmine", {})
    to_local = {name: local for local, name in to_redmine.items()}
    if not isinstance(extra, dict):
        problems.append(
            f'{f}: from_redmine: -: must be a table of "Redmine status" = "local status"'
        )
    else:
        for name, local in extra.items():
            if (msg := _name(name)) is not None:
                problems.append(f"{f}: from_redmine: {name!r}: {msg}")
            elif name in to_local:
                problems.append(f"{f}: from_redmine: {name}: already in [statuses]")
            elif local not in LOCAL_STATUSES:
                problems.append(
                    f"{f}: from_redmine: {name}: unknown local status {local!r} "
                    f"(expected: {', '.join(LOCAL_STATUSES)})"
                )
            else:
                to_local[name] = local
    if len(problems) > start:
        return None
    assert isinstance(tracker, str)
    return RedmineMapping(tracker, to_redmine, to_local)


def check_projects(
    projects: dict[str, str], problems: list[str], *, file: str = "agencies.toml"
) -> None:
    """Offline check of project identifiers; ``projects`` maps an entry label (an agency
    code, or the settings key) to its identifier."""
    for entry, ident in projects.items():
        if not PROJECT_IDENTIFIER.match(ident):
            problems.append(
                f"{file}: {entry}: redmine_project: {ident!r} is not a Redmine "
                f"project identifier (lower-case letters, digits, - and _, "
                f"starting with a letter)"
            )


def load(directory: Path) -> RedmineMapping:
    """Read and validate ``redmine.toml``; raise ``MappingError`` listing every problem."""
    problems: list[str] = []
    path = directory / REDMINE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError(
            [
                f"{REDMINE}: -: -: file not found in {directory} "
                f'(needed when tracker.kind = "redmine")'
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError([f"{REDMINE}: -: -: cannot read ({exc.__class__.__name__})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError([f"{REDMINE}: -: -: TOML syntax error: {exc}"]) from None
    parsed = parse(data, problems)
    if parsed is None:
        raise MappingError(problems)
    return parsed


async def check_online(
    mapping: RedmineMapping, client: RedmineClient, projects: dict[str, str] | None = None
) -> list[str]:
    """What only Redmine can tell: the tracker, the statuses, the tracking-id field and
    the projects exist and fit. ``projects``: entry label -> identifier, as for
    ``check_projects``. Connection failures propagate (the caller reports them)."""
    f = REDMINE
    problems: list[str] = []
    trackers = {t.name: t for t in await client.trackers()}
    tracker = trackers.get(mapping.tracker)
    if tracker is None:
        problems.append(
            f"{f}: -: tracker: no tracker {mapping.tracker!r} in Redmine (has: {_names(trackers)})"
        )
    statuses = {s.name: s for s in await client.statuses()}
    for local, name in mapping.to_redmine.items():
        found = statuses.get(name)
        if found is None:
            problems.append(
                f"{f}: statuses: {local}: no status {name!r} in Redmine (has: {_names(statuses)})"
            )
        elif local == LocalStatus.CLOSED and not found.is_closed:
            problems.append(
                f"{f}: statuses: closed: Redmine status {name!r} is not a "
                f"closed status (Administration > Issue statuses)"
            )
    for name in mapping.to_local:
        if name not in mapping.to_redmine.values() and name not in statuses:
            problems.append(f"{f}: from_redmine: {name}: no status {name!r} in Redmine")

    field_id = client.tracking_field_id
    key = "tracker.redmine.tracking_field_id"
    try:
        fields = {c.id: c for c in await client.custom_fields()}
    except RedmineRefused as exc:
        if exc.reason != "forbidden":
            raise
        problems.append(
            f"settings.toml: -: {key}: cannot check custom field {field_id}: "
            f"listing custom fields needs an admin key in Redmine"
        )
    else:
        cf = fields.get(field_id)
        if cf is None:
            problems.append(f"settings.toml: -: {key}: no custom field {field_id} in Redmine")
        else:
            if cf.customized_type != "issue":
                problems.append(
                    f"settings.toml: -: {key}: custom field {field_id} is not an issue field"
                )
            if cf.field_format != "string":
                problems.append(
                    f"settings.toml: -: {key}: custom field {field_id} has "
                    f"format {cf.field_format!r}; use Text (string)"
                )
            if not cf.is_filter:
                problems.append(
                    f"settings.toml: -: {key}: custom field {field_id} is not "
                    f'"Used as a filter": issues could not be found by tracking id'
                )
            if tracker is not None and tracker.id not in cf.tracker_ids:
                problems.append(
                    f"settings.toml: -: {key}: custom field {field_id} is not "
                    f"enabled for tracker {mapping.tracker!r}"
                )
    for entry, ident in (projects or {}).items():
        try:
            found_project = await client.project(ident)
        except RedmineRefused as exc:
            problems.append(
                f"agencies.toml: {entry}: redmine_project: cannot check {ident!r}: {exc.reason}"
            )
            continue
        if found_project is None:
            problems.append(
                f"agencies.toml: {entry}: redmine_project: no project {ident!r} "
                f"visible to the connector's Redmine user"
            )
    return problems


def _names(items: Iterable[str]) -> str:
    return ", ".join(sorted(items)) or "none"
