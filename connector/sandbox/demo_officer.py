"""The demo officer: with ``sync.demo_officer`` on the embedded sandbox, it acts as an
agency officer on the built-in tracker so follow-ups can be seen going back."""

from __future__ import annotations

import random
from typing import Any


class DemoOfficer:
    """Sandbox only: acts as an agency officer so follow-ups can be seen going back."""

    REPLIES = (
        "Petugas kami sudah dijadwalkan meninjau lokasi minggu ini.",
        "Terima kasih, laporan sudah kami teruskan ke bidang terkait.",
        "Perbaikan sedang dikerjakan; mohon kesabarannya.",
    )

    def __init__(self, rng: random.Random | None = None):
        self.rng = rng or random.Random(6411)

    def act(self, conn: Any, tracker: Any, mappings: Any, now: Any) -> str | None:
        from connector.sync.push import ingest
        from connector.tracker.builtin import OfficerAction

        open_ = tracker.list_tickets(conn, status="new") + tracker.list_tickets(
            conn, status="in_progress"
        )
        if not open_:
            return None
        ticket = self.rng.choice(open_)
        if ticket["status"] == "new":
            action = OfficerAction(
                status="in_progress", reply=self.rng.choice(self.REPLIES), author="demo-petugas"
            )
        else:
            # statuses.toml requires the officer's own words for "resolved".
            action = OfficerAction(
                status="resolved",
                author="demo-petugas",
                reply="Perbaikan sudah selesai dikerjakan oleh petugas kami.",
            )
        tracker.officer_update(conn, ticket["id"], action, now)
        ingest(conn, tracker, mappings, now)
        return str(ticket["tracking_id"])
