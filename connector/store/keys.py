"""Every row of the key/value state table (``connector_state``): its key, as stored.

Names only; ``state.py`` reads and writes them (typed accessors where a value has a type).
A new piece of connector state that is one value gets its key here.
"""

from __future__ import annotations

import enum


class StateKey(enum.StrEnum):
    WATERMARK = "pull_watermark"  # ISO time: the pull re-reads from here (less the overlap)
    PULL_PROGRESS = "pull_progress_at"  # ISO time: the last commit of a pull, even a running one
    PULL_RUNNING = "pull_running"  # JSON: start, last progress and counts of the current pull
    LAST_SWEEP = "last_sweep_at"  # ISO time: the last reconciliation sweep that finished
    DB_NONCE = "db_nonce"  # made once per database (migration 0003): part of every key
    TRACKER_CURSOR = "tracker_cursor"  # the built-in tracker's; see tracker_cursor()
    TRACKER_LAST_CONTACT = "tracker_last_contact"  # ISO time: the tracker's last answer
    TRACKER_LAST_ERROR = "tracker_last_error"  # JSON: since, reason ("" once it answers)
    MAPPING_VERSION = "mapping_version"  # the mapping the daemon (or `sync`) loaded
    MAPPING_ERROR = "mapping_error"  # why the daemon refused the files' last edit ("" = none)
    # JSON: first/last time, and how many, follow-ups were found already on LAPOR! that this
    # database had never tried to send (it looks restored from a backup)
    RESTORE_EVIDENCE = "restore_evidence"


def tracker_cursor(kind: str) -> str:
    """Each tracker kind has its own cursor of officer changes (the built-in one keeps the
    old key)."""
    return StateKey.TRACKER_CURSOR if kind == "builtin" else f"{StateKey.TRACKER_CURSOR}:{kind}"
