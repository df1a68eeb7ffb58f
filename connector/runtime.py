"""The part factories: from validated settings, the store, the LAPOR! client, the tracker
(and the mapping in force), bundled as a ``Runtime``. The tracker's sink (where the pull's
decisions go: ``tracker/sink.py``) is picked once, with the sync context."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from connector.lapor.client import LaporClient
from connector.mapping_reload import MappingHolder
from connector.sandbox.embedded import SANDBOX_URL, in_process, sandbox_world
from connector.sandbox.world import World
from connector.settings import Config, load_credentials
from connector.store import Store
from connector.store import base as store_base
from connector.sync.context import NullObserver, Observer, SyncContext
from connector.tracker.port import TrackerPort
from connector.tracker.registry import open_tracker


@dataclass
class Runtime:
    config: Config
    store: Store
    tracker: TrackerPort
    client: LaporClient
    mappings: MappingHolder
    world: World | None = None
    _closed: bool = field(default=False)

    def context(self, observer: Observer | None = None) -> SyncContext:
        return SyncContext(
            self.config,
            self.store,
            self.client,
            self.tracker,
            self.mappings,
            observer=observer or NullObserver(),
        )

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.client.aclose()
            await self.tracker.aclose()
            self.store.close()


def open_store(config: Config, *, lock: bool = False) -> Store:
    """Open (and migrate) the database; with ``lock``, as the one running connector."""
    s = config.settings.storage
    return store_base.open_store(
        config.database_url, busy_timeout_s=s.busy_timeout_s, lease_s=s.lease_s, lock=lock
    )


def make_client(
    config: Config, world: World | None = None, transport: httpx.AsyncBaseTransport | None = None
) -> LaporClient:
    creds = load_credentials(config)
    if config.sandbox_mode:
        world = world or sandbox_world(config)
        # The embedded sandbox may allow more than LAPOR! does (a quick demo): the client's
        # budget is the sandbox's own limit, not lapor.requests_per_minute.
        return LaporClient.from_config(
            config,
            creds,
            transport=transport or in_process(world),
            base_url=SANDBOX_URL,
            requests_per_minute=config.settings.sandbox.rate_limit_per_minute,
        )
    return LaporClient.from_config(config, creds, transport=transport)


def open_runtime(
    config: Config,
    *,
    need_mappings: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    lock: bool = False,
) -> Runtime:
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
