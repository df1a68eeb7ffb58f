"""``lapor-connector sandbox``: the sandbox on 127.0.0.1 with its life generator."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import uvicorn

from connector.sandbox.app import create_app, run_generator
from connector.sandbox.faults import Faults
from connector.sandbox.world import World
from connector.settings import SandboxSettings, default_config_path, load_config


def serve(args: argparse.Namespace) -> int:
    path = getattr(args, "config", None)
    try:
        # The sandbox needs no settings file: without one it runs on the defaults.
        if path is None and not default_config_path().exists():
            s = SandboxSettings()
        else:
            s = load_config(path).settings.sandbox
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    faults = Faults(
        rate_limit_per_minute=s.rate_limit_per_minute,
        extra_keys=s.extra_keys,
        cursor_ttl_s=s.cursor_ttl_s,
    )
    world = World(
        seed=args.seed if args.seed is not None else s.seed,
        complaints=args.complaints if args.complaints is not None else s.complaints,
        faults=faults,
        token_ttl_s=s.token_ttl_s,
    )
    if args.faults:
        try:
            world.set_faults(json.loads(args.faults))
        except (ValueError, TypeError) as exc:
            print(f"error: --faults: {exc}", file=sys.stderr)
            return 2
    app = create_app(world)
    generator = s.generator and not args.no_generator

    async def main() -> None:
        stop = asyncio.Event()
        server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off"
            )
        )
        gen = (
            asyncio.create_task(run_generator(world, s.generator_interval_s, stop))
            if generator
            else None
        )
        print(
            f"LAPOR! sandbox on http://127.0.0.1:{args.port}  (client_id mahulu-demo, "
            f"client_secret rahasia-demo-6411; {len(world.records)} complaints)",
            flush=True,
        )
        try:
            await server.serve()
        finally:
            stop.set()
            if gen:
                await gen

    asyncio.run(main())
    return 0
