"""``mappings check [--online]`` and ``mappings suggest``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from connector.cli.common import EXIT_FAIL, EXIT_OK, mappings_or_say_why
from connector.mappings import MappingError, Mappings
from connector.mappings import load as load_mappings
from connector.mappings import suggest as suggest_mappings
from connector.settings import Config

if TYPE_CHECKING:
    from connector.lapor.models import Unit


def cmd_mappings_check(config: Config, args: argparse.Namespace) -> int:
    mappings = mappings_or_say_why(config)
    if mappings is None:
        return EXIT_FAIL
    if args.online:
        from connector.runtime import make_client

        async def units() -> list[Unit]:
            async with make_client(config) as client:
                return await client.units()

        known = {u.id: u for u in asyncio.run(units())}
        problems = _redmine_online(config, mappings)
        for i, agency in enumerate(mappings.agencies, start=1):
            for unit in agency.lapor_unit_ids:
                found = known.get(unit)
                if found is None:
                    problems.append(
                        f"agencies.toml: agency[{i}] {agency.code}: lapor_unit_ids: "
                        f"unit {unit} does not exist on LAPOR!"
                    )
                elif not found.active:
                    problems.append(
                        f"agencies.toml: agency[{i}] {agency.code}: lapor_unit_ids: "
                        f"unit {unit} is not active on LAPOR!"
                    )
        if problems:
            for line in problems:
                print(line, file=sys.stderr)
            return EXIT_FAIL
    if config.settings.tracker.kind == "redmine" and not args.online:
        problems = _redmine_offline(config, mappings)
        if problems:
            for line in problems:
                print(line, file=sys.stderr)
            return EXIT_FAIL
    print(
        f"mappings OK (version {mappings.version}, {len(mappings.agencies)} agencies, "
        f"{len(mappings.unit_to_agency)} units"
        + (", redmine.toml" if config.settings.tracker.kind == "redmine" else "")
        + ")"
    )
    return EXIT_OK


def _redmine_projects(config: Config, mappings: Mappings) -> dict[str, str]:
    projects = {
        f"agency {a.code}": a.redmine_project for a in mappings.agencies if a.redmine_project
    }
    projects["settings.toml: tracker.redmine.project"] = config.settings.tracker.redmine.project
    return projects


def _redmine_offline(config: Config, mappings: Mappings) -> list[str]:
    """redmine.toml and the agencies' project identifiers (tracker.kind = "redmine")."""
    from connector.tracker import redmine_mapping

    problems: list[str] = []
    try:
        redmine_mapping.load(config.mappings_dir)
    except MappingError as exc:
        problems += exc.problems
    redmine_mapping.check_projects(_redmine_projects(config, mappings), problems)
    return problems


def _redmine_online(config: Config, mappings: Mappings) -> list[str]:
    """Also what only Redmine can tell: names, the custom field, the projects exist."""
    if config.settings.tracker.kind != "redmine":
        return []
    problems = _redmine_offline(config, mappings)
    if problems:
        return problems
    from connector.settings import load_redmine_key
    from connector.tracker import redmine_mapping
    from connector.tracker.redmine_api import RedmineClient

    r = config.settings.tracker.redmine
    mapping = redmine_mapping.load(config.mappings_dir)

    async def check() -> list[str]:
        async with RedmineClient(
            r.url, load_redmine_key(), tracking_field_id=r.tracking_field_id
        ) as client:
            return await redmine_mapping.check_online(
                mapping, client, _redmine_projects(config, mappings)
            )

    return asyncio.run(check())


def cmd_mappings_suggest(config: Config, args: argparse.Namespace) -> int:
    from connector.runtime import make_client

    try:
        existing = load_mappings(config.mappings_dir)
    except MappingError:
        existing = None

    async def units() -> list[Unit]:
        async with make_client(config) as client:
            return await client.units()

    instansi = config.settings.lapor.instansi_id
    found = [(u.id, u.name) for u in asyncio.run(units()) if u.instansi_id == instansi and u.active]
    text = suggest_mappings(found, existing)
    print(text if text else "# every active unit of the instansi is already mapped")
    return EXIT_OK
