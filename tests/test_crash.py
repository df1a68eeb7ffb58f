"""SIGKILL at seeded random moments: real sandbox process, real connector processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.reliability import campaign

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [11])
def test_kills_never_lose_or_duplicate(tmp_path: Path, db_url: str, seed: int) -> None:
    # PostgreSQL: a shorter campaign (fewer complaints and kills) to keep the suite's time.
    pg = db_url.startswith("postgresql")
    fig = campaign(
        tmp_path,
        complaints=250 if pg else 500,
        changes=8 if pg else 12,
        kills=5 if pg else 8,
        seed=seed,
        db_url=db_url,
    )
    assert fig.kills_pull + fig.kills_push >= 3  # the kills really hit running processes
    assert fig.kills_verify >= 1  # ...also while entries waited to be verified on LAPOR!
    assert fig.tickets > 0 and fig.changes_committed > 0
    assert fig.lost_complaints == 0
    assert fig.duplicate_tickets == 0
    assert fig.duplicate_followups == 0
    assert fig.missing_followups == 0
    assert fig.half_written_updates == 0
    assert fig.followups_created == fig.changes_committed
