"""Two judgements the feed's paging makes: its page size, and whether a pass progresses.

Both are small state machines without I/O, so the client only asks and tells them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

MIN_PAGE = 10  # never smaller: ten summaries fit any link that carries a detail
GROW_AFTER = 5  # whole pages in a row at a reduced size before it doubles again
NO_PROGRESS_PAGES = 5  # pages in a row with nothing new end the pass


class PageSizer:
    """The feed's ``batas`` under a link that cuts long answers (a satellite link that
    drops every answer past a few KB): halved on a cut page, down to ``MIN_PAGE``; doubled
    again after ``GROW_AFTER`` good pages, up to the configured size. It lives as long as
    the client, so what one pull learnt the next one starts from."""

    def __init__(self) -> None:
        self.reduced: int | None = None  # None: as configured
        self._good = 0

    def size(self, configured: int) -> int:
        return configured if self.reduced is None else min(self.reduced, configured)

    def can_shrink(self, configured: int) -> bool:
        return self.size(configured) > MIN_PAGE

    def cut(self, configured: int) -> bool:
        """A page was cut off: the next pages are smaller. True on the first reduction
        from the configured size (the one worth a log line)."""
        first = self.reduced is None
        self.reduced = max(MIN_PAGE, self.size(configured) // 2)
        self._good = 0
        return first

    def good(self, configured: int) -> bool:
        """A page arrived whole. True when the size is back to the configured one."""
        if self.reduced is None:
            return False
        self._good += 1
        if self._good < GROW_AFTER:
            return False
        self._good = 0
        self.reduced *= 2
        if self.reduced >= configured:
            self.reduced = None
            return True
        return False


class Progress:
    """Whether a feed pass gets anywhere: a page that holds neither a tracking id new to
    this pass nor a ``diperbarui`` later than any seen is idle, and ``NO_PROGRESS_PAGES``
    idle pages in a row are a feed that repeats itself under fresh cursors."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._newest: datetime | None = None
        self.idle = 0

    def page(self, items: Iterable[tuple[str, datetime | None]]) -> bool:
        """Note one page; False when the pass should end (no progress for too long)."""
        moved = False
        for tracking_id, updated in items:
            if tracking_id not in self._ids:
                self._ids.add(tracking_id)
                moved = True
            if updated is not None and (self._newest is None or updated > self._newest):
                self._newest = updated
                moved = True
        self.idle = 0 if moved else self.idle + 1
        return self.idle < NO_PROGRESS_PAGES
