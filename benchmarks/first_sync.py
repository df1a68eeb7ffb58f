"""Benchmark: the first sync, measured the way production runs.

The sandbox runs in its own process (uvicorn on a loopback port) and the connector runs as
``lapor-connector sync`` in another, with the shipped default settings (only the request
budget is off, so the figures show the connector and not LAPOR!'s 60/min). Measured side by
side in one run:

  floor(W)     a bare threaded fetch of the same feed pages and details: W worker threads,
               each with its own HTTP client, the JSON parsed and thrown away; no database.
               W = the connector's detail concurrency, and W = 8.
  connector    the first ``sync`` into a fresh SQLite database: wall time, CPU per complaint
               (the CPU of an idle ``sync`` subtracted, so interpreter start-up is not
               counted), and the requests an idle cycle and a cycle after K changes make.
  http         CPU per request of the connector's HTTP stack alone (httpx over the
               aiohttp transport, ``connector.lapor.transport``) over the same details:
               what the connector's own code adds is the difference. Beside it, httpx's
               own stack (httpcore + h11), which the connector used before.
  rss          peak RSS of a first sync at each of ``--rss-sizes`` complaints.
  idle         CPU used by the daemon (``run``) over ``--idle-s`` seconds at the shipped
               cadence, after its first pull, as a share of one core.
  in-process   the old figure: sandbox and connector in one process through ASGI (the
               server's cost dominates both sides, so this ratio flatters the connector).

    .venv/bin/python benchmarks/first_sync.py [--complaints 6000] [--rounds 2]
        [--rss-sizes 5000,50000] [--idle-s 600] [--changes 25] [--no-inprocess]
        [--concurrency-sweep 2,8,16]

Every figure is the best of ``--rounds`` where it is repeated; each round runs the floors
right before the connector, and its own ratio is listed too (``*_per_round``), with the
load average, so the spread shows how much a shared machine moved the figures. Ratios,
not absolute times, are what to compare between machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connector.lapor.client import LaporClient  # noqa: E402
from connector.lapor.transport import default_transport  # noqa: E402
from connector.logging import configure  # noqa: E402
from connector.sandbox import Faults, World, create_app  # noqa: E402
from connector.settings import (  # noqa: E402
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    Credentials,
    LaporSettings,
    load_config,
)

SEED = 6411
CREDS = {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET}
DEFAULTS = LaporSettings()  # the shipped defaults the connector runs with


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_settings(
    directory: Path, base_url: str, *, sandbox: str = "", concurrency: int | None = None
) -> Path:
    """Default settings; only the URL, the budget (off) and the database path are set
    (and the detail concurrency, when a sweep over it asks)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "mappings", directory / "mappings", dirs_exist_ok=True)
    path = directory / "settings.toml"
    lapor = "" if concurrency is None else f"detail_concurrency = {concurrency}\n"
    path.write_text(
        f'[lapor]\nbase_url = "{base_url}"\nrequests_per_minute = 0\n{lapor}'
        f'[storage]\nurl = "sqlite:///{directory}/bench.db"\n'
        f'[log]\nformat = "json"\n'
        f"[sandbox]\nrate_limit_per_minute = 0\ngenerator = false\n{sandbox}",
        encoding="utf-8",
    )
    return path


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(LAPOR_CLIENT_ID=DEMO_CLIENT_ID, LAPOR_CLIENT_SECRET=DEMO_CLIENT_SECRET)
    env.pop("LAPOR_CONNECTOR_CONFIG", None)
    return env


def wait_until_up(proc: subprocess.Popen[bytes], url: str, timeout_s: float, failure: str) -> None:
    """Until ``url`` answers 200; a process that exits, or the timeout, ends the run."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(failure)
        time.sleep(0.2)


@contextmanager
def sandbox_process(complaints: int, workdir: Path) -> Iterator[str]:
    """The sandbox as its own process on loopback; yields its base URL."""
    port = free_port()
    cfg = write_settings(workdir / f"sandbox-{complaints}", "sandbox")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector",
            "--config",
            str(cfg),
            "sandbox",
            "--port",
            str(port),
            "--seed",
            str(SEED),
            "--complaints",
            str(complaints),
            "--no-generator",
            "--faults",
            json.dumps({"rate_limit_per_minute": 0}),
        ],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, f"{base}/api/v3/ping", 600, "the sandbox did not start")
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


FLOOR_CPU: dict[int, list[float]] = {}  # CPU seconds of each floor run, by width


def floor(base: str, workers: int, page_size: int) -> float:
    """Pages in order, every detail handed to a pool of ``workers`` threads at once."""
    token = httpx.post(f"{base}/api/v3/auth/token", json=CREDS).json()["data"]["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def detail(tid: int) -> None:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = httpx.Client(base_url=base, headers=headers, timeout=60)
            with lock:
                clients.append(c)
        r = c.get(f"/api/v3/laporan/{tid}")
        r.raise_for_status()
        r.json()

    t0, c0 = time.perf_counter(), time.process_time()
    with (
        ThreadPoolExecutor(workers) as pool,
        httpx.Client(base_url=base, headers=headers, timeout=60) as feed,
    ):
        futures = []
        params: dict[str, Any] = {"batas": page_size}
        while True:
            body = feed.get("/api/v3/laporan", params=params).json()
            futures += [pool.submit(detail, item["tracking_id"]) for item in body["data"]]
            cursor = body["meta"].get("kursor_berikutnya")
            if not cursor:
                break
            params = {"kursor": cursor}
        for f in futures:
            f.result()
    took = time.perf_counter() - t0
    FLOOR_CPU.setdefault(workers, []).append(time.process_time() - c0)
    for c in clients:
        c.close()
    return took


def async_http_cpu(base: str, workers: int, n: int, *, own_stack: bool = False) -> float:
    """CPU seconds per request of bare async httpx over the connector's transport (or
    httpx's own stack), without the connector: ``n`` detail GETs, ``workers`` at a time,
    the JSON parsed."""

    async def go() -> float:
        token = httpx.post(f"{base}/api/v3/auth/token", json=CREDS).json()["data"]["access_token"]
        ids = httpx.get(f"{base}/_sandbox/stats", timeout=60).json()["visible_ids"][:n]
        sem = asyncio.Semaphore(workers)
        transport = None if own_stack else default_transport(httpx.URL(base), max_connections=16)
        async with httpx.AsyncClient(
            base_url=base,
            timeout=60,
            transport=transport,
            headers={"Authorization": f"Bearer {token}"},
        ) as c:

            async def one(tid: int) -> None:
                async with sem:
                    r = await c.get(f"/api/v3/laporan/{tid}")
                    r.raise_for_status()
                    r.json()

            c0 = time.process_time()
            await asyncio.gather(*(one(t) for t in ids))
            return (time.process_time() - c0) / len(ids)

    return asyncio.run(go())


def sync_process(cfg: Path, *extra: str) -> dict[str, float]:
    """``lapor-connector sync`` as a process: wall time, CPU seconds, peak RSS (MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "--config", str(cfg), "sync", *extra],
        cwd=cfg.parent,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"sync exited {proc.returncode} ({cfg})")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
    }


def sandbox_requests(base: str) -> int:
    return int(httpx.get(f"{base}/_sandbox/stats", timeout=60).json()["requests"])


def touch(base: str, k: int) -> None:
    ids = httpx.get(f"{base}/_sandbox/stats", timeout=60).json()["visible_ids"][:k]
    for tid in ids:
        httpx.post(f"{base}/_sandbox/event", json={"type": "touch", "tracking_id": tid})


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(cfg: Path, seconds: float) -> float:
    """Share of one core the daemon uses over ``seconds``, after a warm-up of one cycle."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "--config", str(cfg), "run"],
        cwd=cfg.parent,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(20)  # start-up, migrations, the first (idle) pull and push
        c0, t0 = proc_cpu_s(proc.pid), time.monotonic()
        time.sleep(seconds)
        return (proc_cpu_s(proc.pid) - c0) / (time.monotonic() - t0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def inprocess(complaints: int, workdir: Path, workers: int) -> dict[str, float]:
    """The old figure: one process, the sandbox behind httpx.ASGITransport."""
    from connector.runtime import open_runtime
    from connector.sync.cycle import run_cycle

    world = World(seed=SEED, complaints=complaints, faults=Faults(rate_limit_per_minute=0))
    client = LaporClient(
        "http://sandbox.bench",
        Credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
        transport=httpx.ASGITransport(app=create_app(world)),
        requests_per_minute=0,
    )
    sem = asyncio.Semaphore(workers)

    async def one(tid: str) -> None:
        async with sem:
            await client.complaint(tid)

    t0 = time.perf_counter()
    async for page in client.feed(lambda: None, DEFAULTS.page_size):
        async with asyncio.TaskGroup() as tg:
            for item in page.items:
                tg.create_task(one(item.tracking_id))
    floor_s = time.perf_counter() - t0
    await client.aclose()

    cfg = write_settings(
        workdir / "inprocess", "sandbox", sandbox=f"seed = {SEED}\ncomplaints = {complaints}\n"
    )
    rt = open_runtime(load_config(cfg, environ={}))
    try:
        t0 = time.perf_counter()
        await run_cycle(rt.context(), "pull")
        run_s = time.perf_counter() - t0
    finally:
        await rt.aclose()
    return {"floor_s": floor_s, "connector_s": run_s}


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def first_syncs(
    base: str,
    work: Path,
    name: str,
    rounds: int,
    floors: dict[int, list[float]],
    concurrency: int | None = None,
) -> dict[str, Any]:
    """``rounds`` first syncs, each right after a floor of every width in ``floors`` (so
    each ratio compares runs seconds apart, under the same load)."""
    runs: list[dict[str, float]] = []
    for r in range(rounds):
        for width, got in floors.items():
            got.append(floor(base, width, DEFAULTS.page_size))
        cfg = write_settings(work / f"{name}-{r}", base, concurrency=concurrency)
        first = sync_process(cfg)
        idle = sync_process(cfg)  # the same start-up, one feed request, no details
        runs.append(
            {
                "wall_s": first["wall_s"],
                "startup_s": idle["wall_s"],
                "cpu_s": first["cpu_s"] - idle["cpu_s"],
                "load": loadavg(),
            }
        )
    return {"runs": runs, "cfg": cfg}


def summary(
    runs: list[dict[str, float]], floors: dict[int, list[float]], complaints: int
) -> dict[str, Any]:
    best = min(r["wall_s"] for r in runs)
    out: dict[str, Any] = {
        "connector_s": round(best, 2),
        "cpu_ms_per_complaint": round(1000 * min(r["cpu_s"] for r in runs) / complaints, 3),
        "startup_s": round(min(r["startup_s"] for r in runs), 2),
    }
    for width, got in floors.items():
        out[f"floor_{width}_s"] = round(min(got), 2)
        out[f"floor_{width}_cpu_ms_per_complaint"] = round(
            1000 * min(FLOOR_CPU[width]) / complaints, 3
        )
        out[f"ratio_floor_{width}"] = round(best / min(got), 2)
        # Each round's own ratio (connector and floor seconds apart): the spread shows
        # how much the machine's load moved the figures.
        out[f"ratio_floor_{width}_per_round"] = [
            round(r["wall_s"] / f, 2) for r, f in zip(runs, got, strict=True)
        ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--complaints", type=int, default=6000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--changes", type=int, default=25)
    ap.add_argument(
        "--rss-sizes",
        default="5000,50000",
        help="comma-separated sizes for the peak-RSS runs ('' to skip)",
    )
    ap.add_argument("--idle-s", type=float, default=600.0, help="0 to skip the idle daemon")
    ap.add_argument(
        "--concurrency-sweep",
        default="",
        help="comma-separated detail concurrencies to compare (e.g. 4,8,16)",
    )
    ap.add_argument("--no-inprocess", action="store_true")
    args = ap.parse_args()
    workers = DEFAULTS.detail_concurrency
    out: dict[str, Any] = {
        "complaints": args.complaints,
        "detail_concurrency": workers,
        "page_size": DEFAULTS.page_size,
        "cpus": os.cpu_count(),
        "load_at_start": loadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="lapor-bench-") as tmp:
        work = Path(tmp)
        with sandbox_process(args.complaints, work) as base:
            floors: dict[int, list[float]] = {workers: [], 8: []}
            got = first_syncs(base, work, "r", args.rounds, floors)
            cfg = got["cfg"]
            out.update(summary(got["runs"], floors, args.complaints))
            out["load_per_round"] = [r["load"] for r in got["runs"]]
            http = min(
                async_http_cpu(base, workers, min(args.complaints, 3000))
                for _ in range(args.rounds)
            )
            out["http_stack_cpu_ms_per_request"] = round(1000 * http, 3)
            out["httpx_own_stack_cpu_ms_per_request"] = round(
                1000
                * min(
                    async_http_cpu(base, workers, min(args.complaints, 3000), own_stack=True)
                    for _ in range(args.rounds)
                ),
                3,
            )
            # What the connector adds to the HTTP library it is built on.
            out["connector_own_cpu_ms_per_complaint"] = round(
                out["cpu_ms_per_complaint"] - 1000 * http, 3
            )
            for width in [int(c) for c in args.concurrency_sweep.split(",") if c.strip()]:
                wf: dict[int, list[float]] = {width: [], 8: []}
                sw = first_syncs(base, work, f"c{width}", args.rounds, wf, width)
                out.setdefault("concurrency_sweep", {})[str(width)] = summary(
                    sw["runs"], wf, args.complaints
                )
            before = sandbox_requests(base)
            sync_process(cfg)
            out["idle_cycle_requests"] = sandbox_requests(base) - before - 1  # minus the token
            touch(base, args.changes)
            time.sleep(1.1)  # LAPOR! timestamps have whole seconds
            before = sandbox_requests(base)
            sync_process(cfg)
            out["changes"] = args.changes
            # minus the token and the one feed page: detail requests only
            out["detail_requests_after_changes"] = sandbox_requests(base) - before - 2
            if args.idle_s > 0:
                out["idle_daemon_cpu_percent_of_core"] = round(100 * idle_cpu(cfg, args.idle_s), 3)
                out["idle_window_s"] = args.idle_s
        rss: dict[str, float] = {}
        for size in [int(s) for s in args.rss_sizes.split(",") if s.strip()]:
            with sandbox_process(size, work) as base:
                got_rss = sync_process(write_settings(work / f"rss-{size}", base))
                rss[str(size)] = round(got_rss["rss_mib"], 1)
        if rss:
            out["peak_rss_mib"] = rss
            sizes = sorted(rss, key=int)
            out["rss_ratio_largest_to_smallest"] = round(rss[sizes[-1]] / rss[sizes[0]], 2)
        if not args.no_inprocess:
            configure("info", "json", stream=open(os.devnull, "w"))  # noqa: SIM115
            got_ip = asyncio.run(inprocess(args.complaints, work, workers))
            out["inprocess"] = {k: round(v, 2) for k, v in got_ip.items()} | {
                "ratio": round(got_ip["connector_s"] / got_ip["floor_s"], 2)
            }
    out["load_at_end"] = loadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
