"""The mapping in force, and its reload when an admin edits the files.

Loading and validating the files is ``mappings.py``; this module only decides which
loaded mapping is in force: a broken edit is refused and the last good mapping stays.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import structlog

from connector.errors import ConfigError
from connector.mappings import FILES, MappingError, Mappings, load, read_file

log = structlog.get_logger("connector.mappings")


class MappingHolder:
    """The mapping in force. A broken edit is refused and the last good mapping stays."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.current: Mappings | None = None
        self.error: str | None = None
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in FILES:
            path = self.directory / name
            try:
                digest.update(name.encode() + read_file(path))
            except OSError as exc:
                digest.update(f"{name}:{exc.__class__.__name__}".encode())
        return digest.hexdigest()

    def load_initial(self) -> Mappings:
        self._fingerprint = self.fingerprint()
        try:
            self.current = load(self.directory)
        except MappingError as exc:
            raise ConfigError("invalid mappings:\n" + "\n".join(exc.problems)) from None
        return self.current

    def reload_if_changed(self) -> bool:
        """Reload when the files changed; returns True when a new mapping took effect.
        File I/O: the daemon calls it in a worker thread, never on the event loop."""
        fp = self.fingerprint()
        if fp == self._fingerprint:
            return False
        self._fingerprint = fp
        try:
            loaded = load(self.directory)
        except MappingError as exc:
            self.error = "; ".join(exc.problems)
            for problem in exc.problems:
                log.error(
                    "mapping_invalid", error=problem, hint="the last good mapping stays in force"
                )
            return False
        self.current, self.error = loaded, None
        log.info("mapping_loaded", version=loaded.version, agencies=len(loaded.agencies))
        return True

    def __call__(self) -> Mappings:
        if self.current is None:
            raise ConfigError("no valid mapping loaded")
        return self.current
