"""HotRows: portfolios that recently lost an optimistic attempt; ``lock="auto"`` locks them first.

``lock="auto"`` reads optimistically and takes the row lock only after a
version conflict. On a hot portfolio nearly every call would then pay one
failed attempt before locking. A ConcurrencyService remembers, per portfolio
id, the conflicts its ``auto`` calls met: while a portfolio is hot, an
``auto`` call's FIRST attempt takes the row lock (``FOR UPDATE``, bounded by
the lock timeout, as ``"wait"``). A portfolio cools down, and ``auto`` goes
back to optimistic first, after ``cool_after_commits`` locked commits in a
row (none of them can conflict: the next optimistic attempt tells whether it
is still contended) or ``cool_after`` seconds without a conflict.

The memory is per process, bounded (the ``capacity`` most recently heated
portfolios) and shared by threads and asyncio tasks: each method takes a
lock for a few dictionary operations and never awaits. It only chooses the
lock mode of a first attempt: every guarantee comes from the version check.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from portfolio_core.errors import ValidationError
from portfolio_core.units import Seconds

__all__ = ["HotRows"]

DEFAULT_CAPACITY: Final = 1024
DEFAULT_COOL_AFTER_COMMITS: Final = 64
DEFAULT_COOL_AFTER: Final[Seconds] = 5.0


@dataclass
class _Heat:
    """One hot portfolio: when it last conflicted, and its locked commits since."""

    last_conflict: Seconds
    locked_commits: int = 0


class HotRows:
    """Per-portfolio memory of recent version conflicts (a bounded LRU map, thread-safe).

    ``cool_after_commits`` locked commits in a row, or ``cool_after``
    seconds since the last conflict (read from ``clock``), make a portfolio
    cold again. ``capacity`` bounds how many portfolios are remembered (the
    least recently heated is forgotten first).
    """

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        cool_after_commits: int = DEFAULT_COOL_AFTER_COMMITS,
        cool_after: Seconds = DEFAULT_COOL_AFTER,
        clock: Callable[[], Seconds] = time.monotonic,
    ) -> None:
        for name, value in (("capacity", capacity), ("cool_after_commits", cool_after_commits)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(name, value, "must be an int >= 1")
        if isinstance(cool_after, bool) or not cool_after > 0:
            raise ValidationError("cool_after", cool_after, "must be > 0 seconds")
        self.capacity = capacity
        self.cool_after_commits = cool_after_commits
        self.cool_after = cool_after
        self.clock = clock
        self._hot: OrderedDict[object, _Heat] = OrderedDict()
        self._guard = threading.Lock()

    def is_hot(self, portfolio_id: object) -> bool:
        """Whether an ``auto`` call's first attempt on ``portfolio_id`` should lock the row."""
        if not self._hot:  # the common case: nothing hot, no lock taken
            return False
        with self._guard:
            heat = self._hot.get(portfolio_id)
            if heat is None:
                return False
            if self.clock() - heat.last_conflict >= self.cool_after:
                del self._hot[portfolio_id]
                return False
            return True

    def note_conflict(self, portfolio_id: object) -> None:
        """An ``auto`` attempt on ``portfolio_id`` lost to a concurrent change: it is hot."""
        with self._guard:
            self._hot[portfolio_id] = _Heat(self.clock())
            self._hot.move_to_end(portfolio_id)
            while len(self._hot) > self.capacity:
                self._hot.popitem(last=False)

    def note_locked_commit(self, portfolio_id: object) -> None:
        """An ``auto`` call committed with the row locked from its first attempt."""
        with self._guard:
            heat = self._hot.get(portfolio_id)
            if heat is None:
                return
            heat.locked_commits += 1
            if heat.locked_commits >= self.cool_after_commits:
                del self._hot[portfolio_id]

    def hot_portfolios(self) -> list[object]:
        """The portfolio ids remembered as hot now, least recently heated first."""
        with self._guard:
            return list(self._hot)
