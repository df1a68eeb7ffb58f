"""The service manager's side: sd_notify (READY, WATCHDOG, STOPPING) under ``Type=notify``."""

from __future__ import annotations

import os
import socket


def sd_notify(message: str) -> bool:
    """Send one sd_notify datagram when run under systemd (Type=notify)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """How often to send WATCHDOG=1: half of systemd's WatchdogSec, or None when off."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return int(usec) / 2_000_000
