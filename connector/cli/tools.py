"""``sandbox`` (LAPOR!'s stand-in) and ``reliability`` (the crash campaign)."""

from __future__ import annotations

import argparse

from connector.settings import Config


def cmd_sandbox(config: Config | None, args: argparse.Namespace) -> int:
    from connector.sandbox.serve import serve

    return serve(args)


def cmd_reliability(config: Config, args: argparse.Namespace) -> int:
    from connector.reliability import main as reliability_main

    return reliability_main(config, args)
