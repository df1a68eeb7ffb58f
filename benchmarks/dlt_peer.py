"""Benchmark peer: dlt's ``rest_api`` source pulls the same pages and details into SQLite.

Side by side in one run, against one sandbox process on loopback (budget off):

  connector   ``lapor-connector sync`` (default settings) into a fresh SQLite database
  dlt         a dlt pipeline: the feed as a cursor-paginated resource, each complaint's
              detail as a dependent resource (parallelised), loaded into SQLite through
              dlt's sqlalchemy destination

dlt is a benchmark-only extra, never a runtime dependency:

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/dlt_peer.py [--complaints 6000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from first_sync import CREDS, sandbox_process, sync_process, write_settings


def dlt_pull(base: str, workdir: Path) -> tuple[float, int]:
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")  # dlt's schema notes are noise here
    import dlt
    from dlt.sources.rest_api import rest_api_source

    token = httpx.post(f"{base}/api/v3/auth/token", json=CREDS).json()["data"]["access_token"]
    source = rest_api_source(
        {
            "client": {
                "base_url": f"{base}/api/v3/",
                "auth": {"type": "bearer", "token": token},
            },
            "resource_defaults": {"write_disposition": "replace"},
            "resources": [
                {
                    "name": "laporan",
                    "endpoint": {
                        "path": "laporan",
                        "params": {"batas": 100},
                        "data_selector": "data",
                        "paginator": {
                            "type": "cursor",
                            "cursor_path": "meta.kursor_berikutnya",
                            "cursor_param": "kursor",
                        },
                    },
                },
                {
                    "name": "laporan_detail",
                    "parallelized": True,
                    "endpoint": {
                        "path": "laporan/{resources.laporan.tracking_id}",
                        "data_selector": "data",
                        "paginator": "single_page",
                    },
                },
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="lapor_peer",
        pipelines_dir=str(workdir / "dlt"),
        destination=dlt.destinations.sqlalchemy(f"sqlite:///{workdir}/dlt.db"),
        dataset_name="lapor",
        progress="log" if os.environ.get("BENCH_VERBOSE") else None,
    )
    t0 = time.perf_counter()
    pipeline.run(source)
    took = time.perf_counter() - t0
    with pipeline.sql_client() as sql:
        rows: Any = sql.execute_sql("SELECT count(*) FROM laporan_detail")
    return took, int(rows[0][0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--complaints", type=int, default=6000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    try:
        import dlt  # noqa: F401
    except ImportError:
        raise SystemExit("dlt is not installed: .venv/bin/pip install -e '.[bench]'") from None
    ours, theirs, loads, loaded = [], [], [], 0
    with tempfile.TemporaryDirectory(prefix="lapor-peer-") as tmp:
        work = Path(tmp)
        with sandbox_process(args.complaints, work) as base:
            for r in range(args.rounds):
                ours.append(sync_process(write_settings(work / f"c{r}", base))["wall_s"])
                took, loaded = dlt_pull(base, work / f"d{r}")
                theirs.append(took)
                loads.append(round(os.getloadavg()[0], 2))
    print(
        json.dumps(
            {
                "complaints": args.complaints,
                "dlt_rows": loaded,
                "connector_s": round(min(ours), 2),
                "dlt_s": round(min(theirs), 2),
                "dlt_over_connector": round(min(theirs) / min(ours), 2),
                "dlt_over_connector_per_round": [
                    round(t / o, 2) for o, t in zip(ours, theirs, strict=True)
                ],
                "load": loads,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
