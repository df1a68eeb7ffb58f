"""Benchmark: the officer's desk under concurrent load, on a small and a big database.

Two databases, measured side by side in one run:

  small   what ``lapor-connector sync`` pulls from the embedded sandbox (``--complaints``,
          500 by default): the open complaints of a live regency and some closed ones.
  big     the same pull, plus historic closed tickets up to ``--big`` (50,000), each with
          its messages, status history, due period, link and one sent follow-up, as years
          of answered complaints leave them. The open tickets are the same in both.

Each database is served by its own ``lapor-connector web`` process (uvicorn, the shipped
settings); the load comes from another process (this script with ``--load``): ``--clients``
concurrent keep-alive clients (aiohttp, gzip accepted like a browser), logged in as an
officer of the agency with the most open complaints (and as an admin, who lists every
open complaint), for ``--seconds`` per page. Pages: the inbox (``/``) and one open
complaint's page. Rounds alternate small and big, so both see the same machine load; each
figure is the best round's. The ratio is big over small (requests/s inverted, so > 1
always means the big database costs more); the issue's target is <= 1.5.

    .venv/bin/python benchmarks/desk.py [--complaints 500] [--big 50000] [--clients 8]
        [--seconds 10] [--rounds 3] [--storage sqlite|URL-of-a-PostgreSQL-server]
        [--analyze]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from first_sync import free_port, wait_until_up  # noqa: E402 - after the path

SEED = 6411
PASSWORD = "sandi-benchmark-1"  # set by `users add`, to be changed at the first login
OWN_PASSWORD = "sandi-benchmark-sendiri-2"
OFFICER, ADMIN = "petugas", "admin"


def write_settings(directory: Path, url: str, complaints: int, port: int) -> Path:
    """Shipped defaults; the embedded sandbox as LAPOR! (no generator: a still world)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "mappings", directory / "mappings", dirs_exist_ok=True)
    path = directory / "settings.toml"
    path.write_text(
        f'[lapor]\nbase_url = "sandbox"\nrequests_per_minute = 0\n'
        f'[storage]\nurl = "{url}"\n'
        f'[log]\nformat = "json"\nlevel = "warning"\n'
        f'[web]\nlisten = "127.0.0.1:{port}"\n'
        f"[sandbox]\nseed = {SEED}\ncomplaints = {complaints}\ngenerator = false\n"
        f"rate_limit_per_minute = 0\n",
        encoding="utf-8",
    )
    return path


def cli(cfg: Path, *args: str, stdin: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if k != "LAPOR_CONNECTOR_CONFIG"}
    r = subprocess.run(
        [sys.executable, "-m", "connector", "--config", str(cfg), *args],
        cwd=cfg.parent,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {r.returncode}: {r.stderr[-2000:]}")
    return r.stdout


def add_history(cfg: Path, total: int, analyze: bool) -> dict[str, int]:
    """Historic closed tickets, cloned from the pulled ones, until ``total`` are stored;
    with ``analyze``, the planner's statistics gathered afterwards (the connector never
    runs ANALYZE on SQLite; PostgreSQL's autovacuum does by itself)."""
    from sqlalchemy import func, insert, select

    from connector.settings import load_config
    from connector.store import Store
    from connector.store.schema import (
        followup_complaints,
        followup_periods,
        links,
        messages,
        outbox,
        status_history,
        tickets,
    )

    config = load_config(cfg, environ={})
    store = Store(config.database_url)
    try:
        with store.begin() as conn:
            have = conn.execute(select(func.count()).select_from(tickets)).scalar_one()
            models = list(conn.execute(select(tickets).order_by(tickets.c.id)))
            next_id = 1 + conn.execute(select(func.max(tickets.c.id))).scalar_one()
            by_ticket: dict[int, dict[str, list[Any]]] = {}
            for table, key in ((messages, "messages"), (status_history, "history")):
                for r in conn.execute(select(table)):
                    by_ticket.setdefault(r.ticket_id, {}).setdefault(key, []).append(r)
            fc = {r.tracking_id: r for r in conn.execute(select(followup_complaints))}
            fp = {}
            for r in conn.execute(select(followup_periods)):
                fp.setdefault(r.tracking_id, []).append(r)
            lk = {r.tracking_id: r for r in conn.execute(select(links))}
        wanted = total - have
        batch: dict[str, list[dict[str, Any]]] = {}

        def flush() -> None:
            with store.begin() as conn:
                for table in (
                    tickets,
                    messages,
                    status_history,
                    links,
                    followup_complaints,
                    followup_periods,
                    outbox,
                ):
                    rows = batch.pop(table.name, [])
                    if rows:
                        conn.execute(insert(table), rows)

        for i in range(wanted):
            m = models[i % len(models)]
            tid, new_id = str(90_000_000 + i), next_id + i
            # One to three years back, spread over the days.
            back = timedelta(days=365 + (i * 7919) % 730, seconds=(i * 104729) % 86400)
            t = dict(m._mapping)
            t.update(
                id=new_id,
                tracking_id=tid,
                status="closed",
                lapor_status="selesai",
                submitted_at=m.submitted_at - back,
                created_at=m.created_at - back,
                updated_at=m.updated_at - back,
                due_at=m.due_at and m.due_at - back,
                assignee=None,
            )
            batch.setdefault("tickets", []).append(t)
            for r in by_ticket.get(m.id, {}).get("messages", []):
                row = {k: v for k, v in r._mapping.items() if k != "id"}
                row.update(ticket_id=new_id, at=r.at - back, change_id=None, lapor_followup_id=None)
                batch.setdefault("messages", []).append(row)
            for r in by_ticket.get(m.id, {}).get("history", []):
                row = {k: v for k, v in r._mapping.items() if k != "id"}
                row.update(ticket_id=new_id, at=r.at - back, change_id=None)
                batch.setdefault("status_history", []).append(row)
            for r in [lk.get(m.tracking_id)]:
                if r is not None:
                    row = dict(r._mapping)
                    row.update(
                        tracking_id=tid,
                        ticket_ref=str(new_id),
                        closed=True,
                        lapor_status="selesai",
                        lapor_updated_at=r.lapor_updated_at - back,
                        created_at=r.created_at - back,
                        updated_at=r.updated_at - back,
                    )
                    batch.setdefault("links", []).append(row)
            r = fc.get(m.tracking_id)
            if r is not None:
                row = dict(r._mapping)
                row.update(
                    tracking_id=tid,
                    closed=True,
                    lapor_status="selesai",
                    received_at=r.received_at - back,
                    settle_by=r.settle_by - back,
                    updated_at=r.updated_at - back,
                )
                batch.setdefault("followup_complaints", []).append(row)
            for p in fp.get(m.tracking_id, []):
                row = {k: v for k, v in p._mapping.items() if k != "id"}
                row.update(
                    tracking_id=tid,
                    started_at=p.started_at - back,
                    due_at=p.due_at - back,
                    on_time=True,
                    first_follow_up_at=p.started_at - back + timedelta(days=2),
                    first_follow_up_id=f"h{i}",
                    ended_at=p.due_at - back,
                )
                if row["lapor_deadline"] is not None:
                    row["lapor_deadline"] -= back
                batch.setdefault("followup_periods", []).append(row)
            sent = m.created_at - back + timedelta(days=2)
            batch.setdefault("outbox", []).append(
                dict(
                    change_id=f"history:{i}",
                    tracking_id=tid,
                    ticket_ref=str(new_id),
                    idempotency_key=f"history-{i}",
                    lapor_status="selesai",
                    text="Laporan telah selesai ditindaklanjuti.",
                    state="sent",
                    attempts=1,
                    created_at=sent,
                    sent_at=sent,
                    remote_id=f"h{i}",
                    first_attempt_at=sent,
                    key_first_used_at=sent,
                )
            )
            if (i + 1) % 5000 == 0:
                flush()
        flush()
        if store.engine.dialect.name == "postgresql":
            with store.begin() as conn:
                conn.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('tickets', 'id'), "
                    "(SELECT max(id) FROM tickets))"
                )
        with store.begin() as conn:
            counts = {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (tickets, messages, status_history, outbox)
            }
            counts["open_tickets"] = conn.execute(
                select(func.count())
                .select_from(tickets)
                .where(tickets.c.status.in_(("new", "in_progress", "resolved")))
            ).scalar_one()
        if analyze:
            with store.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        return counts
    finally:
        store.close()


def pick_officer_agency(cfg: Path) -> tuple[str, str, int]:
    """The agency with the most open tickets, one of its open tickets, and how many."""
    rows = json.loads(cli(cfg, "tickets", "list", "--json"))
    counts: dict[str, list[str]] = {}
    for t in rows:
        if (
            t["status"] in ("new", "in_progress")
            and not t.get("confidential")
            and t["lapor_status"] not in ("ditutup", "diarsipkan")
        ):
            counts.setdefault(t["agency"], []).append(t["tracking_id"])
    agency = max(counts, key=lambda a: len(counts[a]))
    return agency, sorted(counts[agency])[0], len(counts[agency])


@contextmanager
def desk_process(cfg: Path, port: int) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if k != "LAPOR_CONNECTOR_CONFIG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "--config", str(cfg), "web"],
        cwd=cfg.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, f"{base}/masuk", 60, f"the desk did not start ({cfg})")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the load, in its own process -----------------------------------------------------------


def _csrf(html: str) -> str:
    token = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token, "no CSRF field on the page"
    return token.group(1)


async def _session(
    base: str, login: str, clients: int, password: str = OWN_PASSWORD
) -> tuple[Any, str]:
    """A logged-in client session, and where the login sent it."""
    import aiohttp

    s = aiohttp.ClientSession(
        base,
        connector=aiohttp.TCPConnector(limit=clients),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    )
    async with s.get("/masuk") as r:
        token = _csrf(await r.text())
    async with s.post(
        "/masuk", data={"login": login, "password": password, "csrf": token}, allow_redirects=False
    ) as r:
        assert r.status == 303, f"login as {login}: {r.status}"
        return s, r.headers["location"]


async def first_login(base: str, login: str) -> None:
    """The first login, with the admin-set password: the desk asks for one's own."""
    s, first_page = await _session(base, login, 1, PASSWORD)
    async with s:
        assert first_page == "/sandi", first_page
        async with s.get("/sandi") as r:
            token = _csrf(await r.text())
        async with s.post(
            "/sandi",
            data={"csrf": token, "lama": PASSWORD, "baru": OWN_PASSWORD, "ulang": OWN_PASSWORD},
            allow_redirects=False,
        ) as r:
            assert r.status == 303, f"password change for {login}: {r.status}"


async def _load(
    base: str, login: str, path: str, clients: int, seconds: float, expect: str
) -> dict[str, Any]:
    s, _ = await _session(base, login, clients)
    async with s:
        async with s.get(path) as r:  # warm-up, and a check it is the page meant
            body = await r.text()
            assert r.status == 200 and expect in body, (path, r.status)
        lat: list[float] = []
        errors = 0
        stop = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                async with s.get(path) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        took = time.perf_counter() - t0
    lat.sort()

    def pct(p: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 2)

    return {
        "requests": len(lat),
        "errors": errors,
        "rps": round(len(lat) / took, 1),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "bytes": len(body),
    }


def load_process(
    base: str, login: str, path: str, clients: int, seconds: float, expect: str
) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--load", base, login, path, str(clients), str(seconds), expect],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if out.returncode != 0:
        raise SystemExit(f"the load process failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout))


# -- the run ----------------------------------------------------------------------------------


def storage_urls(storage: str, work: Path) -> tuple[dict[str, str], list[str]]:
    """A fresh database per size; PostgreSQL ones are created (and listed for dropping)."""
    if storage == "sqlite":
        return {n: f"sqlite:///{work}/{n}/desk.db" for n in ("small", "big")}, []
    import psycopg

    admin = storage.replace("postgresql+psycopg://", "postgresql://")
    base, _, _ = storage.rpartition("/")
    names = [f"desk_bench_{n}_{os.getpid()}" for n in ("small", "big")]
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
    return {"small": f"{base}/{names[0]}", "big": f"{base}/{names[1]}"}, names


def drop(storage: str, names: list[str]) -> None:
    if not names:
        return
    import psycopg

    with psycopg.connect(
        storage.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--complaints", type=int, default=500)
    ap.add_argument("--big", type=int, default=50_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--storage",
        default="sqlite",
        help='"sqlite", or the URL of a PostgreSQL server (a database on it '
        "that may create databases)",
    )
    ap.add_argument(
        "--analyze", action="store_true", help="run ANALYZE on the big database after filling it"
    )
    args = ap.parse_args()
    out: dict[str, Any] = {
        "clients": args.clients,
        "seconds_per_cell": args.seconds,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "storage": "sqlite" if args.storage == "sqlite" else "postgresql",
        "analyze": args.analyze,
        "load_at_start": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory(prefix="lapor-desk-bench-") as tmp:
        work = Path(tmp)
        urls, made = storage_urls(args.storage, work)
        try:
            sites: dict[str, tuple[Path, int]] = {}
            t0 = time.perf_counter()
            for name, url in urls.items():
                port = free_port()
                cfg = write_settings(work / name, url, args.complaints, port)
                cli(cfg, "sync")
                if name == "big":
                    out["big_counts"] = add_history(cfg, args.big, args.analyze)
                sites[name] = (cfg, port)
            out["setup_s"] = round(time.perf_counter() - t0, 1)
            small_cfg = sites["small"][0]
            agency, tid, n_open = pick_officer_agency(small_cfg)
            out.update(agency=agency, agency_open_tickets=n_open, complaint=tid)
            for cfg, _ in sites.values():
                cli(
                    cfg,
                    "users",
                    "add",
                    ADMIN,
                    "--name",
                    "Admin",
                    "--role",
                    "admin",
                    "--password-stdin",
                    stdin=PASSWORD + "\n",
                )
                cli(
                    cfg,
                    "users",
                    "add",
                    OFFICER,
                    "--name",
                    "Petugas",
                    "--role",
                    "petugas",
                    "--agency",
                    agency,
                    "--password-stdin",
                    stdin=PASSWORD + "\n",
                )
            cells = [
                ("inbox_officer", OFFICER, "/", "Kotak masuk"),
                ("inbox_admin", ADMIN, "/", "Kotak masuk"),
                ("complaint_officer", OFFICER, f"/tiket/{tid}", "Batas tindak lanjut"),
            ]
            got: dict[str, dict[str, list[dict[str, Any]]]] = {}
            with desk_process(*sites["small"]) as small, desk_process(*sites["big"]) as big:
                bases = {"small": small, "big": big}
                for base in bases.values():
                    for login in (ADMIN, OFFICER):
                        asyncio.run(first_login(base, login))
                for r in range(args.rounds):
                    for cell, login, path, expect in cells:
                        order = ("small", "big") if r % 2 == 0 else ("big", "small")
                        for name in order:
                            res = load_process(
                                bases[name], login, path, args.clients, args.seconds, expect
                            )
                            res["load"] = round(os.getloadavg()[0], 2)
                            got.setdefault(cell, {}).setdefault(name, []).append(res)
        finally:
            drop(args.storage, made)
    for cell, by_size in got.items():
        best = {name: max(runs, key=lambda x: x["rps"]) for name, runs in by_size.items()}
        out[cell] = {
            **{name: {k: v for k, v in b.items()} for name, b in best.items()},
            "ratio_rps": round(best["small"]["rps"] / best["big"]["rps"], 2),
            "ratio_p50": round(best["big"]["p50_ms"] / best["small"]["p50_ms"], 2),
            "ratio_p99": round(best["big"]["p99_ms"] / best["small"]["p99_ms"], 2),
            "rps_per_round": {name: [x["rps"] for x in runs] for name, runs in by_size.items()},
        }
    out["load_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        base, login, path, clients, seconds, expect = sys.argv[2:8]
        print(
            json.dumps(asyncio.run(_load(base, login, path, int(clients), float(seconds), expect)))
        )
    else:
        main()
