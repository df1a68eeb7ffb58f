"""The embedded sandbox of ``lapor.base_url = "sandbox"``: a world built from the
settings, served in-process to the client (no socket)."""

from __future__ import annotations

import httpx

from connector.sandbox.app import create_app
from connector.sandbox.faults import Faults
from connector.sandbox.world import World
from connector.settings import Config

SANDBOX_URL = "http://sandbox.invalid"  # in-process only: never resolved


def sandbox_world(config: Config) -> World:
    s = config.settings.sandbox
    faults = Faults(
        rate_limit_per_minute=s.rate_limit_per_minute,
        extra_keys=s.extra_keys,
        cursor_ttl_s=s.cursor_ttl_s,
    )
    return World(seed=s.seed, complaints=s.complaints, faults=faults, token_ttl_s=s.token_ttl_s)


def in_process(world: World) -> httpx.AsyncBaseTransport:
    """A transport that serves ``world`` inside this process."""
    return httpx.ASGITransport(app=create_app(world))
