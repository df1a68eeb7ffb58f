"""The crash and fault campaign behind ``lapor-connector reliability`` and tests/test_crash.py.

Real processes only: the sandbox runs on a loopback port, the connector's
``sync`` and ``tickets update`` run as subprocesses and are killed with
SIGKILL at seeded random moments. Then the connector runs to completion and
the figures are counted on both sides: tickets here, follow-ups on LAPOR!.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, select, text, update
from sqlalchemy.pool import NullPool

from connector.domain import LocalStatus, OutboxState
from connector.errors import ConfigError
from connector.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Config
from connector.store.schema import outbox
from connector.store.state import OPEN_STATES

_OPEN = (LocalStatus.NEW, LocalStatus.IN_PROGRESS)  # tickets the campaign's officers change


@dataclass
class Figures:
    complaints: int = 0
    changes_requested: int = 0
    changes_committed: int = 0
    kills_pull: int = 0
    kills_update: int = 0
    kills_push: int = 0
    kills_verify: int = 0  # kills while entries waited to be verified on LAPOR! (keys forgotten)
    faults: list[str] = field(default_factory=list)
    tickets: int = 0
    lost_complaints: int = 0
    duplicate_tickets: int = 0
    followups_created: int = 0
    followups_replayed: int = 0
    key_changes: int = 0  # not found on LAPOR! after the key's lifetime: posted with a new key
    duplicate_followups: int = 0
    missing_followups: int = 0
    half_written_updates: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.lost_complaints
            or self.duplicate_tickets
            or self.duplicate_followups
            or self.missing_followups
            or self.half_written_updates
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shipped_mappings() -> Path:
    """The mapping files the package carries: ``connector/shipped_mappings``, a link to the
    source tree's ``mappings/`` that the wheel fills with copies (package data), so an
    installed connector has them without a source tree."""
    return Path(str(resources.files("connector").joinpath("shipped_mappings")))


def campaign_mappings(configured: Path) -> Path:
    """The configured mappings folder (``mappings.dir``) if it holds mapping files, else
    the package's own: the campaign runs anywhere the connector is installed."""
    return configured if any(configured.glob("*.toml")) else shipped_mappings()


class Sandbox:
    """The sandbox as a separate process on a loopback port."""

    def __init__(self, workdir: Path, complaints: int, seed: int, faults: dict[str, Any]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = workdir / "sandbox.toml"
        cfg.write_text("[sandbox]\nrate_limit_per_minute = 0\ngenerator = false\n")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "connector",
                "--config",
                str(cfg),
                "sandbox",
                "--port",
                str(self.port),
                "--seed",
                str(seed),
                "--complaints",
                str(complaints),
                "--no-generator",
                "--faults",
                json.dumps(faults),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=workdir,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.url + "/api/v3/ping", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("sandbox did not start") from None
                time.sleep(0.1)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_sandbox/stats").json())

    def faults(self, **changes: Any) -> None:
        self.http.put("/_sandbox/faults", json=changes).raise_for_status()

    def inspect(self, tid: str) -> dict[str, Any]:
        return dict(self.http.get(f"/_sandbox/laporan/{tid}").json())

    def stop(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Connector:
    """The connector's CLI as subprocesses on one settings file."""

    def __init__(
        self,
        workdir: Path,
        sandbox: Sandbox,
        db_url: str | None = None,
        mappings: Path | None = None,
    ):
        self.workdir = workdir
        (workdir / "mappings").mkdir(exist_ok=True)
        mappings = mappings or shipped_mappings()
        found = sorted(mappings.glob("*.toml"))
        if not found:
            raise ConfigError(f"{mappings}: no mapping files to run the campaign with")
        for f in found:
            (workdir / "mappings" / f.name).write_text(f.read_text(encoding="utf-8"))
        self.db_path = workdir / "var" / "connector.db"
        self.db_url = db_url or f"sqlite:///{self.db_path}"
        self.settings = workdir / "settings.toml"
        self.settings.write_text(
            f'[lapor]\nbase_url = "{sandbox.url}"\nrequests_per_minute = 0\n'
            f"detail_concurrency = 8\ncall_deadline_s = 30\n"
            f'[storage]\nurl = "{self.db_url}"\n[log]\nlevel = "warning"\nformat = "json"\n'
        )
        self.env = {
            **os.environ,
            "LAPOR_CLIENT_ID": DEMO_CLIENT_ID,
            "LAPOR_CLIENT_SECRET": DEMO_CLIENT_SECRET,
            "PYTHONUNBUFFERED": "1",
        }
        # PostgreSQL: a killed process leaves its instance lease behind until it expires
        # (SQLite's file lock dies with the process), so the lease is short and every kill
        # waits it out: the next process must run, not be refused.
        self.after_kill_s = 0.0
        if self.db_url.startswith("postgresql"):
            self.env["LAPOR_CONNECTOR_STORAGE__LEASE_S"] = "3"
            self.after_kill_s = 3.2

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "connector", "--config", str(self.settings), *args],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "connector", "--config", str(self.settings), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def sync_to_completion(self, tries: int = 8) -> None:
        for _ in range(tries):
            r = self.run("sync")
            if r.returncode == 0:
                return
            time.sleep(self.after_kill_s)
        raise RuntimeError(f"sync did not complete: {r.stderr[-500:]}")

    def kill_at_random(self, rng: random.Random, low: float, high: float, *args: str) -> bool:
        """Start a command and SIGKILL it after a random delay; True if it was killed."""
        proc = self.popen(*args)
        try:
            proc.wait(timeout=rng.uniform(low, high))
            return False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            time.sleep(self.after_kill_s)
            return True

    def tickets(self) -> list[dict[str, Any]]:
        return list(json.loads(self.run("tickets", "list", "--json").stdout))

    def outbox(self) -> list[dict[str, Any]]:
        return list(json.loads(self.run("outbox", "list", "--json").stdout))

    def _engine(self) -> Engine:
        # No pool: the connector processes must find the database free between queries.
        return create_engine(self.db_url, poolclass=NullPool)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        engine = self._engine()
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            engine.dispose()

    def due_now(self) -> None:
        """Skip the entries' backoff waits (minutes) so the final syncs deliver them."""
        engine = self._engine()
        try:
            with engine.begin() as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.state.in_(OPEN_STATES))
                    .values(next_attempt_at=outbox.c.created_at)
                )
        finally:
            engine.dispose()

    def awaiting_verify(self, ttl_s: float) -> int:
        """Entries that must be looked up on LAPOR! before any further POST."""
        from connector.sync.core import must_verify
        from connector.timeutil import as_utc, utcnow

        now = utcnow()
        engine = self._engine()
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(outbox.c.state, outbox.c.key_first_used_at).where(
                        outbox.c.state.in_(OPEN_STATES)
                    )
                ).all()
        finally:
            engine.dispose()
        return sum(
            1 for st, used in rows if must_verify(st, as_utc(used) if used else None, now, ttl_s)
        )


_FAULTS: dict[str, Any] = {
    "rate_5xx": 0.03,
    "move_rate": 0.3,
    "duplicate_rate": 0.2,
    "token_max_uses": 50,
    "late_commit_s": 20,
    "late_commit_rate": 0.05,
}


def campaign(
    workdir: Path,
    *,
    complaints: int = 1500,
    changes: int = 30,
    kills: int = 25,
    seed: int = 6411,
    faults: dict[str, Any] | None = None,
    db_url: str | None = None,
    mappings: Path | None = None,
) -> Figures:
    """``db_url``: the connector's database (default: SQLite in ``workdir``); ``mappings``:
    the folder of mapping files to run with (default: the package's own)."""
    rng = random.Random(seed)
    faults = faults if faults is not None else dict(_FAULTS)
    fig = Figures(complaints=complaints, faults=[*sorted(faults), "sigkill"])
    sandbox = Sandbox(workdir, complaints, seed, faults)
    try:
        conn = Connector(workdir, sandbox, db_url, mappings)
        _pulls(fig, conn, rng, kills)
        _changes(fig, conn, rng, changes)
        _pushes(fig, conn, sandbox, rng, kills)
        _verifies(fig, conn, sandbox, rng, changes, kills)
        _count(fig, conn, sandbox)
    finally:
        sandbox.stop()
    return fig


def _pulls(fig: Figures, conn: Connector, rng: random.Random, kills: int) -> None:
    """1. Pulls of the whole backlog, killed at random moments."""
    for _ in range(kills):
        fig.kills_pull += conn.kill_at_random(rng, 0.4, 4.0, "sync")
    conn.sync_to_completion()


def _changes(fig: Figures, conn: Connector, rng: random.Random, changes: int) -> None:
    """2. Officer changes, some `tickets update` processes killed mid-way."""
    open_tickets = [t for t in conn.tickets() if t["status"] in _OPEN]
    for t in rng.sample(open_tickets, min(changes, len(open_tickets))):
        fig.changes_requested += 1
        args = (
            "tickets",
            "update",
            t["id"],
            "--reply",
            f"Tindak lanjut untuk tiket {t['id']}.",
        )
        if rng.random() < 0.3:
            fig.kills_update += conn.kill_at_random(rng, 0.05, 0.8, *args)
        else:
            conn.run(*args)


def _pushes(
    fig: Figures, conn: Connector, sandbox: Sandbox, rng: random.Random, kills: int
) -> None:
    """3. Pushes with lost POST answers, killed at random moments."""
    sandbox.faults(drop_post_rate=0.4)
    fig.faults.append("drop_post_rate")
    for _ in range(max(3, kills // 2)):
        fig.kills_push += conn.kill_at_random(rng, 0.3, 2.5, "sync")
    sandbox.faults(
        drop_post_rate=0.0,
        rate_5xx=0.0,
        move_rate=0.0,
        duplicate_rate=0.0,
        late_commit_rate=0.0,
    )
    conn.sync_to_completion()


def _verifies(
    fig: Figures,
    conn: Connector,
    sandbox: Sandbox,
    rng: random.Random,
    changes: int,
    kills: int,
) -> None:
    """4. LAPOR! forgets keys after 2 s, loses every POST answer and then stays down for a
    moment: each sync first verifies the entry left waiting by the one before (looks its
    follow-up up on LAPOR!), then posts the next. Syncs are killed at random moments, many
    of them inside that verify step."""
    ttl = 2.0
    conn.env["LAPOR_CONNECTOR_LAPOR__IDEMPOTENCY_TTL_S"] = str(ttl)
    open_tickets = [t for t in conn.tickets() if t["status"] in _OPEN]
    for t in rng.sample(open_tickets, min(max(2, changes // 2), len(open_tickets))):
        fig.changes_requested += 1
        conn.run(
            "tickets",
            "update",
            t["id"],
            "--reply",
            f"Tindak lanjut kedua untuk tiket {t['id']}.",
        )
    sandbox.faults(idempotency_ttl_s=ttl, drop_post_rate=1.0, down_after_drop_s=1.5, latency_ms=150)
    fig.faults += ["idempotency_ttl_s", "down_after_drop_s"]
    conn.run("sync")  # its first POST loses its answer: that entry now waits
    for _ in range(max(6, kills // 2)):
        time.sleep(rng.uniform(0.5, 2.0))  # keys age past their lifetime
        awaiting = conn.awaiting_verify(ttl)
        if conn.kill_at_random(rng, 0.5, 3.0, "sync") and awaiting:
            fig.kills_verify += 1
    sandbox.faults(drop_post_rate=0.0, down_after_drop_s=0.0, latency_ms=0)
    time.sleep(ttl)
    conn.due_now()
    conn.sync_to_completion()
    conn.sync_to_completion()


def _count(fig: Figures, conn: Connector, sandbox: Sandbox) -> None:
    stats = sandbox.stats()
    visible = {str(t) for t in stats["visible_ids"]}
    tickets = conn.tickets()
    ids = [t["tracking_id"] for t in tickets]
    held = {r[0] for r in conn.query("SELECT tracking_id FROM quarantine")}
    fig.tickets = len(ids)
    fig.duplicate_tickets = len(ids) - len(set(ids))
    fig.lost_complaints = len(visible - set(ids) - held)
    changes = conn.query("SELECT id, reply FROM tracker_changes")
    fig.changes_committed = len(changes)
    out_msgs = conn.query(
        "SELECT count(*) FROM messages WHERE source = 'officer' AND direction = 'out'"
    )[0][0]
    fig.half_written_updates = abs(out_msgs - sum(1 for _, r in changes if r))
    entries = conn.outbox()
    by_change = {e["idempotency_key"] for e in entries}
    fig.missing_followups = len(changes) - len(by_change)
    per_key: dict[str, int] = {}
    for e in entries:
        if e["state"] != OutboxState.SENT:
            fig.missing_followups += 1
            continue
        rec = sandbox.inspect(e["tracking_id"])
        for fu in rec["tindak_lanjut"]:
            if fu.get("idempotency_key") == e["idempotency_key"]:
                per_key[e["idempotency_key"]] = per_key.get(e["idempotency_key"], 0) + 1
    fig.missing_followups += sum(
        1
        for e in entries
        if e["state"] == OutboxState.SENT and per_key.get(e["idempotency_key"], 0) == 0
    )
    fig.duplicate_followups = sum(n - 1 for n in per_key.values() if n > 1)
    # A second creation would show as more follow-ups created than distinct changes sent.
    fig.duplicate_followups += max(0, stats["posts_created"] - len(per_key))
    fig.followups_created = stats["posts_created"]
    fig.followups_replayed = stats["posts_replayed"]
    fig.key_changes = sum(e["key_changes"] for e in entries)


def main(config: Config, args: argparse.Namespace) -> int:
    mappings = campaign_mappings(config.mappings_dir)
    if mappings != config.mappings_dir:
        print(
            f"note: {config.mappings_dir} holds no mapping files; "
            f"the campaign runs with the package's own ({mappings})",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="lapor-reliability-") as tmp:
        started = time.monotonic()
        fig = campaign(
            Path(tmp),
            complaints=args.complaints,
            changes=args.changes,
            kills=args.kills,
            seed=args.seed,
            mappings=mappings,
        )
    report = {**asdict(fig), "ok": fig.ok, "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(report, indent=2))
    return 0 if fig.ok else 1
