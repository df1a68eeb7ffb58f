"""SIGKILL at seeded random moments: real sandbox process, real connector processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.reliability import campaign

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [11])
def test_kills_never_lose_or_duplicate(tmp_path: Path, seed: int) -> None:
    fig = campaign(tmp_path, complaints=500, changes=12, kills=8, seed=seed)
    assert fig.kills_pull + fig.kills_push >= 3  # the kills really hit running processes
    assert fig.kills_verify >= 1  # ...also while entries waited to be verified on LAPOR!
    assert fig.tickets > 0 and fig.changes_committed > 0
    assert fig.lost_complaints == 0
    assert fig.duplicate_tickets == 0
    assert fig.duplicate_followups == 0
    assert fig.missing_followups == 0
    assert fig.half_written_updates == 0
    assert fig.followups_created == fig.changes_committed
