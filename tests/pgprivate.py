"""A private PostgreSQL for tests that stop or restart the server (never the shared one)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> bool:
    return (BIN / "initdb").exists() and (os.geteuid() != 0 or shutil.which("runuser") is not None)


class PrivatePg:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="lapor-pg-private-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.runas: list[str] = []
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres", str(self.tmp)], check=True)
            self.runas = ["runuser", "-u", "postgres", "--"]
        self._run(
            str(BIN / "initdb"),
            "-D",
            str(self.tmp / "data"),
            "-U",
            "lapor",
            "--auth=trust",
            "-E",
            "UTF8",
        )
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://lapor@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self.runas, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def _ctl(self, *args: str) -> None:
        self._run(str(BIN / "pg_ctl"), "-D", str(self.tmp / "data"), *args)

    def start(self) -> None:
        self._ctl(
            "-l",
            str(self.tmp / "log"),
            "-w",
            "-o",
            f"-k {self.tmp} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def restart(self) -> None:
        # -l: the new postmaster must not hold our pipes open.
        self._ctl("-m", "fast", "-w", "-l", str(self.tmp / "log"), "restart")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(self.tmp, ignore_errors=True)
