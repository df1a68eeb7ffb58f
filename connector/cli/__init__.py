"""The command line: ``lapor-connector`` and ``python -m connector`` (see CONTRACT.md).

One module per command group; ``main`` imports only the group of the command it runs,
so that a command that reads the database (``status``, ``tickets list``) never pays for
the LAPOR! client, the sandbox or the desk.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from connector.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, check_identity, note_local_settings
from connector.cli.parser import build_parser
from connector.errors import ConfigError, ConnectorError, Fatal, RetryLater
from connector.settings import Config, load_config
from connector.term import SafeWriter, safe

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "build_parser", "check_identity", "main"]

# Commands whose plain-text output carries LAPOR!'s text: neutralised on the way out.
SAFE_STDOUT = frozenset(
    {"sync", "tickets", "status", "quarantine", "outbox", "mappings", "db", "users"}
)
SAFE_STDERR = SAFE_STDOUT - {"sync"}  # sync's stderr carries the (coloured) log

# (command, action) -> "module:function", imported when that command runs.
HANDLERS: dict[tuple[str, str | None], str] = {
    ("run", None): "connector.cli:cmd_run",
    ("sync", None): "connector.cli.sync:cmd_sync",
    ("tickets", "list"): "connector.cli.tickets:cmd_tickets_list",
    ("tickets", "show"): "connector.cli.tickets:cmd_tickets_show",
    ("tickets", "update"): "connector.cli.tickets:cmd_tickets_update",
    ("mappings", "check"): "connector.cli.mappings:cmd_mappings_check",
    ("mappings", "suggest"): "connector.cli.mappings:cmd_mappings_suggest",
    ("status", None): "connector.cli.status:cmd_status",
    ("report", None): "connector.cli.status:cmd_report",
    ("quarantine", "list"): "connector.cli.queues:cmd_quarantine_list",
    ("quarantine", "retry"): "connector.cli.queues:cmd_quarantine_retry",
    ("outbox", "list"): "connector.cli.queues:cmd_outbox_list",
    ("outbox", "retry"): "connector.cli.queues:cmd_outbox_retry",
    ("outbox", "dismiss"): "connector.cli.queues:cmd_outbox_dismiss",
    ("intents", "retry"): "connector.cli.queues:cmd_intents_retry",
    ("sandbox", None): "connector.cli.tools:cmd_sandbox",
    ("reliability", None): "connector.cli.tools:cmd_reliability",
    ("db", "upgrade"): "connector.cli.db:cmd_db_upgrade",
    ("db", "backup"): "connector.cli.db:cmd_db_backup",
    ("web", None): "connector.cli.users:cmd_web",
    ("users", "add"): "connector.cli.users:cmd_users_add",
    ("users", "list"): "connector.cli.users:cmd_users_list",
    ("users", "disable"): "connector.cli.users:cmd_users_disable",
    ("users", "enable"): "connector.cli.users:cmd_users_enable",
    ("users", "password"): "connector.cli.users:cmd_users_password",
    ("users", "notify"): "connector.cli.notify:cmd_users_notify",
    ("notify", "test"): "connector.cli.notify:cmd_notify_test",
}


def _handler(command: str, action: str | None) -> Callable[..., int]:
    module, _, name = HANDLERS[(command, action)].partition(":")
    fn: Callable[..., int] = getattr(importlib.import_module(module), name)
    return fn


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    if args.command in SAFE_STDOUT and not getattr(args, "json", False):
        sys.stdout = SafeWriter(out)
    if args.command in SAFE_STDERR:
        sys.stderr = SafeWriter(err)
    try:
        return _main(args)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(args: argparse.Namespace) -> int:
    handler = _handler(args.command, getattr(args, "action", None))
    try:
        if args.command == "sandbox":
            return handler(None, args)
        config = load_config(getattr(args, "config", None))
        note_local_settings(config, getattr(args, "config", None))
        check_identity(config)
        return handler(config, args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Fatal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RetryLater as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except ConnectorError as exc:  # e.g. LAPOR! refused a call (4xx): never a traceback
        from connector.logging import redact_text

        print(safe(redact_text(f"error: {exc}")), file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `tickets list | head`
        sys.stderr.close()
        return EXIT_OK


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from connector.service import run

    return run(config)
