"""The part factories: from validated settings, the store, the LAPOR! client, the tracker
(and the mapping in force), bundled as a ``Runtime`` by ``open_runtime``, the one place
that opens them (for the daemon and for ``sync``). The tracker's sink (where the pull's
decisions go: ``tracker/sink.py``) is picked once, with the sync context."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

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

    def context(self, observer: Observer | None = None) -> SyncContext:
        return SyncContext(
            self.config,
            self.store,
            self.client,
            self.tracker,
            self.mappings,
            observer=observer or NullObserver(),
        )


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


def _locked_store(config: Config) -> Store:
    return open_store(config, lock=True)


@dataclass(frozen=True)
class Openers:
    """How the parts are opened, in this order; a test puts in one that fails. By default
    the store is taken as the one running connector (the daemon, ``sync``)."""

    store: Callable[[Config], Store] = _locked_store
    client: Callable[[Config, World | None], LaporClient] = make_client
    tracker: Callable[[Config, MappingHolder], TrackerPort] = open_tracker


def open_runtime(
    config: Config,
    stack: contextlib.AsyncExitStack,
    openers: Openers = Openers(),
    observer: Callable[[str, str, float], None] | None = None,
) -> Runtime:
    """The mapping, the store, the LAPOR! client and the tracker. Each part goes on
    ``stack`` as soon as it is open, so it is closed once, in reverse order, also when a
    later part fails to open. ``observer`` hears every LAPOR! request (the metrics)."""
    holder = MappingHolder(config.mappings_dir)
    holder.load_initial()
    store = openers.store(config)
    stack.callback(store.close)
    world = sandbox_world(config) if config.sandbox_mode else None
    client = openers.client(config, world)
    stack.push_async_callback(client.aclose)
    if observer is not None:
        client.observer = observer
    tracker = openers.tracker(config, holder)
    stack.push_async_callback(tracker.aclose)
    return Runtime(config, store, tracker, client, holder, world)
