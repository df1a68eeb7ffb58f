"""Builds the connector's parts from validated settings: store, tracker, client, mappings."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import structlog

from connector.errors import ConfigError
from connector.lapor.client import LaporClient
from connector.mappings import FILES, MappingError, Mappings, load
from connector.sandbox import Faults, World, create_app
from connector.settings import Config, load_credentials
from connector.store import Store
from connector.sync.context import SyncContext
from connector.tracker.port import TrackerPort
from connector.tracker.registry import open_tracker

SANDBOX_URL = "http://sandbox.invalid"  # in-process only: never resolved
log = structlog.get_logger("connector.mappings")


class MappingHolder:
    """The mapping in force. A broken edit is refused and the last good mapping stays."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.current: Mappings | None = None
        self.error: str | None = None
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in FILES:
            path = self.directory / name
            try:
                digest.update(name.encode() + path.read_bytes())
            except OSError as exc:
                digest.update(f"{name}:{exc.__class__.__name__}".encode())
        return digest.hexdigest()

    def load_initial(self) -> Mappings:
        self._fingerprint = self.fingerprint()
        try:
            self.current = load(self.directory)
        except MappingError as exc:
            raise ConfigError("invalid mappings:\n" + "\n".join(exc.problems)) from None
        return self.current

    def reload_if_changed(self) -> bool:
        """Reload when the files changed; returns True when a new mapping took effect."""
        fp = self.fingerprint()
        if fp == self._fingerprint:
            return False
        self._fingerprint = fp
        try:
            loaded = load(self.directory)
        except MappingError as exc:
            self.error = "; ".join(exc.problems)
            for problem in exc.problems:
                log.error("mapping_invalid", error=problem,
                          hint="the last good mapping stays in force")
            return False
        self.current, self.error = loaded, None
        log.info("mapping_loaded", version=loaded.version, agencies=len(loaded.agencies))
        return True

    def __call__(self) -> Mappings:
        if self.current is None:
            raise ConfigError("no valid mapping loaded")
        return self.current


@dataclass
class Runtime:
    config: Config
    store: Store
    tracker: TrackerPort
    client: LaporClient
    mappings: MappingHolder
    world: World | None = None
    _closed: bool = field(default=False)

    def context(self) -> SyncContext:
        return SyncContext(self.config, self.store, self.client, self.tracker, self.mappings)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.client.aclose()
            await self.tracker.aclose()
            self.store.close()


def open_store(config: Config, *, lock: bool = False) -> Store:
    """Open (and migrate) the database; with ``lock``, as the one running connector: the
    instance lock is taken before migrating."""
    s = config.settings.storage
    store = Store(config.database_url, busy_timeout_s=s.busy_timeout_s, lease_s=s.lease_s)
    try:
        if lock:
            store.lock_instance()
        store.upgrade()
    except Exception:
        store.close()
        raise
    return store


def sandbox_world(config: Config) -> World:
    s = config.settings.sandbox
    faults = Faults(rate_limit_per_minute=s.rate_limit_per_minute, extra_keys=s.extra_keys,
                    cursor_ttl_s=s.cursor_ttl_s)
    return World(seed=s.seed, complaints=s.complaints, faults=faults, token_ttl_s=s.token_ttl_s)


def make_client(config: Config, world: World | None = None,
                transport: httpx.AsyncBaseTransport | None = None) -> LaporClient:
    creds = load_credentials(config)
    if config.sandbox_mode:
        world = world or sandbox_world(config)
        # The embedded sandbox may allow more than LAPOR! does (a quick demo): the client's
        # budget is the sandbox's own limit, not lapor.requests_per_minute.
        return LaporClient.from_config(
            config, creds, transport=transport or httpx.ASGITransport(app=create_app(world)),
            base_url=SANDBOX_URL,
            requests_per_minute=config.settings.sandbox.rate_limit_per_minute)
    return LaporClient.from_config(config, creds, transport=transport)


def open_runtime(config: Config, *, need_mappings: bool = True,
                 transport: httpx.AsyncBaseTransport | None = None,
                 lock: bool = False) -> Runtime:
    holder = MappingHolder(config.mappings_dir)
    if need_mappings:
        holder.load_initial()
    store = open_store(config, lock=lock)
    world = sandbox_world(config) if config.sandbox_mode and transport is None else None
    try:
        client = make_client(config, world, transport)
    except Exception:
        store.close()
        raise
    try:
        tracker = open_tracker(config, holder)
    except Exception:
        store.close()
        raise
    tracker.bind(store)
    return Runtime(config, store, tracker, client, holder, world)
