"""``lapor-connector web``: the desk's process, beside the daemon on the same database.

It never migrates and never takes the instance lock: the daemon (or ``db upgrade``)
owns the schema, so a desk on an older or newer schema refuses to start.
"""

from __future__ import annotations

import structlog

from connector.errors import ConfigError
from connector.logging import configure_for
from connector.mapping_reload import MappingHolder
from connector.settings import Config
from connector.store import Store
from connector.tracker.port import TrackerPort

log = structlog.get_logger("connector.desk")


def open_desk_store(config: Config) -> Store:
    """The store as it is; refused unless its schema is the code's."""
    s = config.settings.storage
    store = Store(config.database_url, busy_timeout_s=s.busy_timeout_s, lease_s=s.lease_s)
    try:
        current, head = store.revision()
    except Exception:
        store.close()
        raise
    if current != head:
        store.close()
        what = "has no schema yet" if current is None else f"is at revision {current}"
        raise ConfigError(f"the database ({config.database_display}) {what}, this version "
                          f"needs {head}: run `lapor-connector db upgrade` first (or start "
                          "the connector's daemon, which migrates), then start the desk")
    return store


def serve(config: Config, tracker: TrackerPort) -> int:
    import uvicorn

    from connector.desk.web import create_app

    configure_for(config)
    holder = MappingHolder(config.mappings_dir)
    holder.load_initial()
    store = open_desk_store(config)
    tracker.bind(store)
    app = create_app(config, store, holder, tracker)
    host, port = config.settings.web.address
    proxies = list(config.settings.web.trusted_proxies)
    log.info("desk_start", listen=f"{host}:{port}", tracker=tracker.kind)
    try:
        uvicorn.run(app, host=host, port=port, proxy_headers=bool(proxies),
                    forwarded_allow_ips=proxies or None, access_log=False,
                    server_header=False, log_config=None,
                    timeout_keep_alive=5, limit_concurrency=200,
                    h11_max_incomplete_event_size=16384)
    finally:
        store.close()
    return 0
