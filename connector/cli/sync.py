"""``sync [--sweep]``: one pull (or sweep) and one push, then exit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING

from connector.cli.common import EXIT_FAIL, EXIT_OK
from connector.errors import Fatal, RetryLater
from connector.logging import configure_for
from connector.settings import Config
from connector.term import safe

if TYPE_CHECKING:
    from connector.runtime import Runtime


def cmd_sync(config: Config, args: argparse.Namespace) -> int:
    from connector.cli_format import summary_line
    from connector.errors import ApiError
    from connector.logging import redact_text
    from connector.runtime import open_runtime
    from connector.store import state
    from connector.sync.cycle import CycleKind, run_cycle

    configure_for(config)

    async def go() -> int:
        async with contextlib.AsyncExitStack() as stack:
            # Its store is locked: never beside a running daemon on the same storage.
            rt = open_runtime(config, stack)
            return await once(rt)

    async def once(rt: Runtime) -> int:
        try:
            ctx = rt.context()
            await ctx.db(lambda c: state.set_mapping_version(c, rt.mappings().version))
            pulled = await run_cycle(ctx, CycleKind.SWEEP if args.sweep else CycleKind.PULL)
            if ctx.sink.queued:  # an external tracker: apply what the pull wrote
                try:
                    await run_cycle(ctx, CycleKind.TRACKER)
                except RetryLater as exc:
                    print(
                        safe(
                            f"warning: the tracker is unreachable ({exc}); the changes "
                            "wait and are applied later"
                        ),
                        file=sys.stderr,
                    )
            pushed = await run_cycle(ctx, CycleKind.PUSH)
            line = summary_line(pulled, pushed)
            if args.sweep:
                line += f" sweep=1 late={pulled.counts.get('late', 0)}"
            print("sync ok: " + line)
            return EXIT_OK
        except (RetryLater, Fatal, ApiError) as exc:  # ApiError: LAPOR! refused feed/token
            print(safe(redact_text(f"sync failed: {exc}")), file=sys.stderr)
            return exc.exit_code if isinstance(exc, Fatal) else EXIT_FAIL

    return asyncio.run(go())
