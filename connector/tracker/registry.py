"""Trackers by ``tracker.kind``: adding one means one module, an entry here, and the
contract suite (tests/test_tracker_contract.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

from connector.errors import ConfigError
from connector.mappings import LOCAL_STATUSES, Mappings
from connector.settings import Config, load_redmine_key
from connector.tracker.port import TrackerPort


def _builtin(
    config: Config, mappings: Callable[[], Mappings], environ: Mapping[str, str] | None
) -> TrackerPort:
    from connector.tracker.builtin import BuiltinTracker

    return BuiltinTracker(LOCAL_STATUSES)


def _redmine(
    config: Config, mappings: Callable[[], Mappings], environ: Mapping[str, str] | None
) -> TrackerPort:
    from connector.tracker import redmine_mapping
    from connector.tracker.redmine import RedmineTracker
    from connector.tracker.redmine_api import RedmineClient

    r = config.settings.tracker.redmine
    mapping = redmine_mapping.load(config.mappings_dir)

    def client() -> RedmineClient:
        return RedmineClient(
            r.url,
            load_redmine_key(environ),
            tracking_field_id=r.tracking_field_id,
            timeout_s=r.timeout_s,
        )

    return RedmineTracker(
        client, mapping, r.project, mappings, r.url, overlap=timedelta(seconds=r.overlap_s)
    )


TRACKERS: dict[
    str, Callable[[Config, Callable[[], Mappings], Mapping[str, str] | None], TrackerPort]
] = {"builtin": _builtin, "redmine": _redmine}


def open_tracker(
    config: Config, mappings: Callable[[], Mappings], environ: Mapping[str, str] | None = None
) -> TrackerPort:
    """The configured tracker; no network until it is first used."""
    make = TRACKERS.get(config.settings.tracker.kind)
    if make is None:
        raise ConfigError(f"tracker.kind: unknown tracker {config.settings.tracker.kind!r}")
    try:
        return make(config, mappings, environ)
    except Exception as exc:
        from connector.mappings import MappingError

        if isinstance(exc, MappingError):
            raise ConfigError("; ".join(exc.problems)) from None
        raise
