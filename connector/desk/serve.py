"""``lapor-connector web``: the desk's process, beside the daemon on the same database.

It never migrates and never takes the instance lock: the daemon (or ``db upgrade``)
owns the schema, so a desk on an older or newer schema refuses to start.
"""

from __future__ import annotations

import sys

import structlog
from sqlalchemy import Connection

from connector.errors import ConfigError
from connector.logging import configure_for
from connector.mapping_reload import MappingHolder
from connector.mappings import Mappings
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
        raise ConfigError(
            f"the database ({config.database_display}) {what}, this version "
            f"needs {head}: run `lapor-connector db upgrade` first (or start "
            "the connector's daemon, which migrates), then start the desk"
        )
    return store


# Public demo passwords, sandbox mode only (like the sandbox's demo client secret).
DEMO_ADMIN = ("admin", "demo-admin-6411")
DEMO_OFFICER_PASSWORD = "demo-petugas-6411"  # noqa: S105 - public demo value, sandbox only


def demo_logins(config: Config, store: Store, mappings: Mappings) -> list[tuple[str, str, str]]:
    """In sandbox mode, on a desk without accounts: one officer per agency and one admin,
    so a newcomer can answer a complaint at once. Returns (login, password, who)."""
    from connector.desk import accounts
    from connector.desk.accounts import Role
    from connector.timeutil import utcnow

    if not config.sandbox_mode:
        return []
    out = [(DEMO_ADMIN[0], DEMO_ADMIN[1], "admin")]
    out += [
        (f"petugas.{a.code.lower().replace('_', '-')}", DEMO_OFFICER_PASSWORD, a.name)
        for a in mappings.agencies
    ]

    admin_hash = accounts.hash_new(DEMO_ADMIN[1])
    officer_hash = accounts.hash_new(DEMO_OFFICER_PASSWORD)  # one hash: a public password

    def seed(conn: Connection) -> bool:
        if accounts.list_users(conn):
            return False
        now = utcnow()
        accounts.add_user(
            conn,
            DEMO_ADMIN[0],
            "Admin (demo)",
            Role.ADMIN,
            [],
            None,
            admin_hash,
            now,
            must_change=False,
        )
        for a, (login, _, _) in zip(mappings.agencies, out[1:], strict=True):
            accounts.add_user(
                conn,
                login,
                f"Petugas {a.code} (demo)",
                Role.PETUGAS,
                [a.code],
                None,
                officer_hash,
                now,
                must_change=False,
            )
        return True

    return out if store.run(seed) else []


def serve(config: Config, tracker: TrackerPort) -> int:
    import uvicorn

    from connector.desk.web import create_app

    configure_for(config)
    holder = MappingHolder(config.mappings_dir)
    mappings = holder.load_initial()
    store = open_desk_store(config)
    tracker.bind(store)
    app = create_app(config, store, holder, tracker)
    host, port = config.settings.web.address
    log.info("desk_start", listen=f"{host}:{port}", tracker=tracker.kind)
    demo = demo_logins(config, store, mappings)
    if demo:
        width = max(len(login) for login, _, _ in demo)
        print(f"\nMeja pengaduan (sandbox): http://{host}:{port}/\nAkun demo:", file=sys.stderr)
        for login, password, who in demo:
            print(f"  {login:<{width}}  {password}  ({who})", file=sys.stderr)
        print(file=sys.stderr)
    try:
        # Proxy headers are the app's own middleware (web.trusted_proxies): not uvicorn's.
        uvicorn.run(
            app,
            host=host,
            port=port,
            proxy_headers=False,
            access_log=False,
            server_header=False,
            log_config=None,
            timeout_keep_alive=5,
            limit_concurrency=200,
            h11_max_incomplete_event_size=16384,
        )
    finally:
        store.close()
    return 0
