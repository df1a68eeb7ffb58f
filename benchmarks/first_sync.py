"""Benchmark: the first sync of N complaints against the sandbox, budget off.

Measured side by side in one run:
  floor      a bare concurrent fetch of the same feed pages and details (no database)
  connector  the connector's first pull into a fresh SQLite database
The target is connector/floor <= 1.5. Also reported: requests made by an idle
cycle, and by a cycle after K upstream changes.

    .venv/bin/python benchmarks/first_sync.py [--complaints 6000] [--changes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connector.lapor.client import LaporClient  # noqa: E402
from connector.logging import configure  # noqa: E402
from connector.sandbox import Faults, World, create_app  # noqa: E402
from connector.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Credentials  # noqa: E402
from tests.conftest import FakeTime  # noqa: E402
from tests.harness import Harness  # noqa: E402

CONCURRENCY = 8


def client_for(world: World) -> LaporClient:
    return LaporClient("http://sandbox.bench", Credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                       transport=httpx.ASGITransport(app=create_app(world)),
                       requests_per_minute=0)


async def floor(world: World) -> float:
    """Pages and details, fetched concurrently, parsed, and thrown away."""
    client = client_for(world)
    sem = asyncio.Semaphore(CONCURRENCY)
    t0 = time.perf_counter()

    async def one(tid: str) -> None:
        async with sem:
            await client.complaint(tid)

    async for page in client.feed(lambda: None, 100):
        async with asyncio.TaskGroup() as tg:
            for item in page.items:
                tg.create_task(one(item.tracking_id))
    took = time.perf_counter() - t0
    await client.aclose()
    return took


async def connector(world: World, fake: FakeTime, tmp: Path) -> tuple[float, Harness]:
    h = Harness(tmp, f"sqlite:///{tmp}/bench.db", world, fake,
                extra_settings="", requests_per_minute=0)
    h.config.settings.lapor.__dict__["detail_concurrency"] = CONCURRENCY
    t0 = time.perf_counter()
    await h.pull()
    return time.perf_counter() - t0, h


async def main() -> None:
    # As in production under systemd: JSON lines (here into /dev/null), info level.
    configure(os.environ.get("BENCH_LOG_LEVEL", "info"), "json", stream=open(os.devnull, "w"))  # noqa: SIM115
    ap = argparse.ArgumentParser()
    ap.add_argument("--complaints", type=int, default=6000)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    fake = FakeTime()
    world = World(seed=6411, complaints=args.complaints,
                  faults=Faults(rate_limit_per_minute=0), clock=fake)
    floors, runs = [], []
    harness = None
    for r in range(args.rounds):
        floors.append(await floor(world))
        with tempfile.TemporaryDirectory() as tmp:
            took, h = await connector(world, fake, Path(tmp) / f"r{r}")
            runs.append(took)
            if r == args.rounds - 1:
                before = sum(h.client.requests.values())
                await h.pull()
                idle = sum(h.client.requests.values()) - before
                for tid in list(world.records)[: args.changes]:
                    world.event("touch", tid)
                fake.t += 2
                before = sum(h.client.requests.values())
                await h.pull()
                after_k = sum(h.client.requests.values()) - before
                tickets = len(h.tickets())
                harness = h
    assert harness is not None
    best_floor, best_run = min(floors), min(runs)
    print(json.dumps({
        "complaints": args.complaints, "tickets": tickets, "concurrency": CONCURRENCY,
        "floor_s": round(best_floor, 2), "connector_s": round(best_run, 2),
        "ratio": round(best_run / best_floor, 2), "target_ratio": 1.5,
        "idle_cycle_requests": idle, "changes": args.changes,
        "requests_after_changes": after_k,
    }, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
