"""Builders shared by several test modules: tests import them from here, never from another
test module (whose import would also collect its tests' module-level set-up)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from connector.lapor import models as m
from connector.mappings import load
from connector.sync import core

T = TypeVar("T")

MAPPINGS = load(Path(__file__).resolve().parent.parent / "mappings")
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
UNITS = {6411001: 6411, 6411003: 6411, 6411777: 6411, 6400103: 64}  # 6411777: ours, unmapped


def narrow(kind: type[T], value: object) -> T:
    """``value`` as the type the test expects it to be: a failed assertion otherwise (for
    the type checker, where a test reads an attribute only one member of a union has)."""
    assert isinstance(value, kind), f"expected a {kind.__name__}, got {value!r}"
    return value


def linked(d: core.Decision) -> core.Linked:
    """A decision that keeps a link (create, update, unchanged), not one set aside."""
    assert not isinstance(d, core.SetAside), f"expected a linked decision, got {d!r}"
    return d


def complaint(tid: str, status: str, units: tuple[int, ...], fus: tuple[m.FollowUp, ...],
              at: datetime, deadline: datetime | None = None) -> m.Complaint:
    """A complaint disposed to ``units`` (keys of ``UNITS``), as a detail request reads it."""
    return m.Complaint(
        tracking_id=tid, title="t", body="b", classification="pengaduan",
        category=m.Category(101, "Pelayanan Puskesmas", 1), status=status, anonymous=False,
        confidential=False, reporter=m.Reporter("N", None, None), channel="web", location=None,
        dispositions=tuple(m.Disposition(u, "u", UNITS[u], T0) for u in units),
        attachments=(), follow_ups=fus, submitted_at=T0, updated_at=at, deadline=deadline)
