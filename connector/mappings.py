"""Admin-edited mapping files: agencies, statuses, categories.

Every problem is reported as ``FILE: ENTRY: FIELD: MESSAGE`` so an admin can
find it; TOML syntax errors carry line and column.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import string
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from connector.domain import LaporStatus, PostStatus
from connector.errors import UNREADABLE, FileTooLarge, MappingError, NotRegularFile

LOCAL_STATUSES = ("new", "in_progress", "resolved", "closed")
# From domain, not lapor.models: checking the mapping files loads no wire models.
LAPOR_STATUSES = tuple(LaporStatus)
PUSH_STATUSES = tuple(PostStatus)  # what LAPOR! accepts from an agency
AGENCIES = "agencies.toml"
STATUSES = "statuses.toml"
CATEGORIES = "categories.toml"
HOLIDAYS = "holidays.toml"
FILES = (AGENCIES, STATUSES, CATEGORIES, HOLIDAYS)
OPTIONAL = (CATEGORIES, HOLIDAYS)
# Placeholders a reply template may use; filled in when the follow-up is queued.
TEMPLATE_FIELDS = ("agency_name",)
# Statuses whose follow-up needs the officer's own words unless statuses.toml says otherwise:
# LAPOR!'s admins reject a "done" that is boilerplate only.
REPLY_REQUIRED_BY_DEFAULT = ("resolved",)
_DOUBLED = re.compile(r"[.,;:!?]\s*[.,;:!?]")

Code = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9_]+$", min_length=1, max_length=64)]
UnitId = Annotated[int, Field(gt=0, strict=True)]
Mailbox = Annotated[
    str, StringConstraints(pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$", max_length=254)
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Agency(_Model):
    code: Code
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    lapor_unit_ids: Annotated[list[UnitId], Field(min_length=1)]
    # The Redmine project of its complaints (tracker.kind = "redmine"); else the default.
    redmine_project: str | None = None
    # The agency's mailboxes: new complaints, the daily digest, replies nobody is assigned.
    email: list[Mailbox] = []


class AgenciesFile(_Model):
    agency: Annotated[list[Agency], Field(min_length=1)]


class StatusRow(_Model):
    lapor: str
    local: str


class ReplyRow(_Model):
    local: str
    lapor: str
    template: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    requires_reply: Annotated[bool, Field(strict=True)] | None = None


class StatusesFile(_Model):
    status: list[StatusRow]
    reply: list[ReplyRow]


class CategoryRow(_Model):
    code: Code
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    lapor_kategori_ids: Annotated[list[UnitId], Field(min_length=1)]


class CategoriesFile(_Model):
    category: list[CategoryRow] = []


class HolidayRow(_Model):
    date: Annotated[date, Field(strict=True)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class HolidaysFile(_Model):
    holiday: list[HolidayRow] = []


@dataclass(frozen=True)
class Outbound:
    lapor: str
    template: str
    requires_reply: bool = False

    def text(self, agency_name: str) -> str:
        return self.template.format(agency_name=agency_name)


@dataclass(frozen=True)
class Mappings:
    agencies: tuple[Agency, ...]
    inbound: dict[str, str]
    outbound: dict[str, Outbound]
    categories: dict[int, str]
    version: str
    unit_to_agency: dict[int, str] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()  # declared late: holidays.toml

    def agency(self, code: str) -> Agency | None:
        return next((a for a in self.agencies if a.code == code), None)

    def units_of(self, code: str) -> tuple[int, ...]:
        a = self.agency(code)
        return tuple(a.lapor_unit_ids) if a else ()

    def category_for(self, kategori_id: int, parent_id: int | None) -> str | None:
        return self.categories.get(kategori_id) or (
            self.categories.get(parent_id) if parent_id is not None else None
        )


def _entry(loc: tuple[Any, ...], data: dict[str, Any]) -> tuple[str, str]:
    """Split a pydantic location into (ENTRY, FIELD) for the message."""
    if len(loc) >= 2 and isinstance(loc[1], int):
        table, index = str(loc[0]), loc[1]
        rows = data.get(table)
        label = f"{table}[{index + 1}]"
        if isinstance(rows, list) and index < len(rows) and isinstance(rows[index], dict):
            ident = (
                rows[index].get("code")
                or (rows[index].get("local") if table == "reply" else rows[index].get("lapor"))
                or rows[index].get("local")
            )
            if ident is None and isinstance(rows[index].get("date"), date):
                ident = rows[index]["date"].isoformat()
            if isinstance(ident, str):
                label += f" {ident}"
        rest = ".".join(str(p) for p in loc[2:]) or "-"
        return label, rest
    return "-", ".".join(str(p) for p in loc) or "-"


MAX_FILE_BYTES = 4 * 1024 * 1024  # the shipped files are a few KB


def read_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A mapping file's bytes: regular files only, at most ``limit`` bytes. Opened
    without blocking, so a FIFO put there cannot hold the reader."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{path.name}: not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileTooLarge(f"{path.name}: larger than {limit} bytes")
    return data


def _read(path: Path, problems: list[str]) -> dict[str, Any] | None:
    name = path.name
    try:
        text = read_file(path).decode("utf-8")
    except FileNotFoundError:
        problems.append(f"{name}: -: -: file not found in {path.parent}")
        return None
    except NotRegularFile:
        problems.append(f"{name}: -: -: cannot read (not a regular file)")
        return None
    except FileTooLarge:
        problems.append(f"{name}: -: -: cannot read (larger than {MAX_FILE_BYTES} bytes)")
        return None
    except UNREADABLE as exc:
        problems.append(f"{name}: -: -: cannot read ({exc.__class__.__name__})")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{name}: -: -: TOML syntax error: {exc}")
        return None


def _validate(name: str, model: type[_Model], data: dict[str, Any], problems: list[str]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            entry, fld = _entry(tuple(err["loc"]), data)
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            if err["type"] == "string_pattern_mismatch":
                msg = (
                    'not an e-mail address (e.g. "dishub@mahulukab.go.id")'
                    if "email" in err["loc"]
                    else "must be upper-case letters, digits and _ only (e.g. DINKES)"
                )
            problems.append(f"{name}: {entry}: {fld}: {msg}")
        return None


def _check_agencies(parsed: AgenciesFile, problems: list[str]) -> dict[int, str]:
    unit_to_agency: dict[int, str] = {}
    codes: dict[str, int] = {}
    for i, agency in enumerate(parsed.agency, start=1):
        entry = f"agency[{i}] {agency.code}"
        if agency.code in codes:
            problems.append(
                f"{AGENCIES}: {entry}: code: duplicate code, also agency[{codes[agency.code]}]"
            )
        codes.setdefault(agency.code, i)
        for unit in agency.lapor_unit_ids:
            owner = unit_to_agency.get(unit)
            if owner is not None:
                problems.append(
                    f"{AGENCIES}: {entry}: lapor_unit_ids: unit {unit} is already "
                    f"routed to {owner}; each unit may be in one agency only"
                )
            else:
                unit_to_agency[unit] = agency.code
    return unit_to_agency


def _check_statuses(parsed: StatusesFile, problems: list[str]) -> None:
    seen: set[str] = set()
    for i, row in enumerate(parsed.status, start=1):
        entry = f"status[{i}] {row.lapor}"
        if row.lapor not in LAPOR_STATUSES:
            problems.append(
                f"{STATUSES}: {entry}: lapor: unknown LAPOR! status "
                f"(one of {', '.join(LAPOR_STATUSES)})"
            )
        elif row.lapor in seen:
            problems.append(f"{STATUSES}: {entry}: lapor: mapped twice")
        seen.add(row.lapor)
        if row.local not in LOCAL_STATUSES:
            problems.append(
                f"{STATUSES}: {entry}: local: unknown local status "
                f"(one of {', '.join(LOCAL_STATUSES)})"
            )
    for missing in [s for s in LAPOR_STATUSES if s not in seen]:
        problems.append(f"{STATUSES}: -: status: LAPOR! status {missing} is not mapped")
    locals_seen: set[str] = set()
    for i, reply in enumerate(parsed.reply, start=1):
        entry = f"reply[{i}] {reply.local}"
        if reply.local not in LOCAL_STATUSES:
            problems.append(f"{STATUSES}: {entry}: local: unknown local status")
        elif reply.local in locals_seen:
            problems.append(f"{STATUSES}: {entry}: local: listed twice")
        locals_seen.add(reply.local)
        if reply.lapor not in PUSH_STATUSES:
            problems.append(
                f"{STATUSES}: {entry}: lapor: must be one of "
                f"{', '.join(PUSH_STATUSES)} (what LAPOR! accepts from an agency)"
            )
        for problem in _template_problems(reply.template):
            problems.append(f"{STATUSES}: {entry}: template: {problem}")


def _template_problems(template: str) -> list[str]:
    out = []
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return [f"broken placeholder ({exc}); write a literal brace as {{{{ or }}}}"]
    for name in names:
        if name not in TEMPLATE_FIELDS:
            out.append(
                f"unknown placeholder {{{name}}} (known: "
                + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
                + ")"
            )
    found = _DOUBLED.search(template)
    if found:
        out.append(f"doubled punctuation {found.group()!r}")
    return out


def _check_holidays(parsed: HolidaysFile, problems: list[str]) -> frozenset[date]:
    seen: dict[date, int] = {}
    for i, row in enumerate(parsed.holiday, start=1):
        entry = f"holiday[{i}] {row.date.isoformat()}"
        if not 2000 <= row.date.year <= 2100:
            problems.append(f"{HOLIDAYS}: {entry}: date: year out of range 2000..2100")
        if row.date in seen:
            problems.append(
                f"{HOLIDAYS}: {entry}: date: listed twice, also holiday[{seen[row.date]}]"
            )
        seen.setdefault(row.date, i)
    return frozenset(seen)


def _check_categories(parsed: CategoriesFile, problems: list[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    codes: set[str] = set()
    for i, row in enumerate(parsed.category, start=1):
        entry = f"category[{i}] {row.code}"
        if row.code in codes:
            problems.append(f"{CATEGORIES}: {entry}: code: duplicate code")
        codes.add(row.code)
        for kid in row.lapor_kategori_ids:
            if kid in out:
                problems.append(
                    f"{CATEGORIES}: {entry}: lapor_kategori_ids: kategori {kid} "
                    f"is already in {out[kid]}"
                )
            else:
                out[kid] = row.code
    return out


def load(directory: Path) -> Mappings:
    """Load and validate every mapping file; raise MappingError listing all problems."""
    problems: list[str] = []
    if not directory.is_dir():
        raise MappingError([f"{AGENCIES}: -: -: mappings folder {directory} not found"])
    digest = hashlib.sha256()
    raw: dict[str, dict[str, Any] | None] = {}
    for name in FILES:
        path = directory / name
        if name in OPTIONAL and not path.exists():
            raw[name] = {}
            continue
        raw[name] = _read(path, problems)
        if path.exists():
            with contextlib.suppress(OSError):
                digest.update(name.encode() + read_file(path))
    agencies = statuses = categories = None
    unit_to_agency: dict[int, str] = {}
    cats: dict[int, str] = {}
    if raw[AGENCIES] is not None:
        agencies = _validate(AGENCIES, AgenciesFile, raw[AGENCIES] or {}, problems)
        if agencies is not None:
            unit_to_agency = _check_agencies(agencies, problems)
    if raw[STATUSES] is not None:
        statuses = _validate(STATUSES, StatusesFile, raw[STATUSES] or {}, problems)
        if statuses is not None:
            _check_statuses(statuses, problems)
    if raw[CATEGORIES] is not None:
        categories = _validate(CATEGORIES, CategoriesFile, raw[CATEGORIES] or {}, problems)
        if categories is not None:
            cats = _check_categories(categories, problems)
    extra: frozenset[date] = frozenset()
    if raw[HOLIDAYS] is not None:
        hols = _validate(HOLIDAYS, HolidaysFile, raw[HOLIDAYS] or {}, problems)
        if hols is not None:
            extra = _check_holidays(hols, problems)
    if problems or agencies is None or statuses is None:
        raise MappingError(problems or [f"{AGENCIES}: -: -: could not be loaded"])
    return Mappings(
        agencies=tuple(agencies.agency),
        inbound={row.lapor: row.local for row in statuses.status},
        outbound={
            row.local: Outbound(
                row.lapor,
                row.template,
                row.requires_reply
                if row.requires_reply is not None
                else row.local in REPLY_REQUIRED_BY_DEFAULT,
            )
            for row in statuses.reply
        },
        categories=cats,
        version=digest.hexdigest()[:12],
        unit_to_agency=unit_to_agency,
        holidays=extra,
    )


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string: whatever it holds (quotes, newlines, control
    characters, DEL), it stays one string. Lone surrogates, which TOML cannot hold,
    become U+FFFD."""
    out = ['"']
    for ch in value:
        cp = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif cp < 0x20 or cp == 0x7F:
            out.append(f"\\u{cp:04x}")
        elif 0xD800 <= cp <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def suggest(units: list[tuple[int, str]], existing: Mappings | None) -> str:
    """Ready-to-paste TOML for units that no agency maps yet. The unit names are LAPOR!'s
    text: written as TOML strings, never spliced in raw."""
    mapped = existing.unit_to_agency if existing else {}
    out = []
    for unit_id, name in units:
        if unit_id in mapped:
            continue
        initials = (w[0] for w in name.replace(",", " ").split())
        code = "".join(c for c in initials if c.isascii() and c.isalpha()).upper()[:40]
        code = toml_string(f"{code or 'UNIT'}_{unit_id}")
        shown = toml_string(name[:200] or f"unit {unit_id}")
        out.append(
            f"[[agency]]\ncode = {code}   # choose a short code\n"
            f"name = {shown}\nlapor_unit_ids = [{unit_id}]\n"
        )
    return "\n".join(out)
