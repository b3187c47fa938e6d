"""HotRows: portfolios that recently lost an optimistic attempt; ``lock="auto"`` locks them first.

``lock="auto"`` reads optimistically and takes the row lock only after a
version conflict. On a hot portfolio nearly every call would then pay one
failed attempt before locking. A ConcurrencyService remembers, per portfolio
id, the conflicts its stores' calls met: while a portfolio is hot, an
``auto`` call's FIRST attempt takes the row lock (``FOR UPDATE``, bounded by
the lock timeout, as ``"wait"``). After ``cool_after_commits`` locked commits
in a row (none of them can conflict, so only an optimistic attempt can tell
whether it is still contended) or ``cool_after`` seconds without a conflict,
one call probes optimistically; if it commits, ``auto`` is optimistic first
again.

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
    """One hot portfolio: its last conflict, its locked commits since, and a probe under way."""

    last_conflict: Seconds
    locked_commits: int = 0
    probe_started: Seconds | None = None


class HotRows:
    """Per-portfolio memory of recent version conflicts (a bounded LRU map, thread-safe).

    A hot portfolio cools down through ONE optimistic probe: once it has had
    ``cool_after_commits`` locked commits in a row, or ``cool_after`` seconds
    (read from ``clock``) without a conflict, the next ``auto`` call reads
    without locking while the others keep locking; if it commits, the
    portfolio is cold, if it conflicts, hot again (a probe that ends in
    another way is retried after ``cool_after`` seconds). So a portfolio that
    stays hot costs one failed attempt per ``cool_after_commits`` commits, not
    a burst of them. ``capacity`` bounds how many portfolios are remembered
    (the least recently heated is forgotten first).
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
        """Whether an ``auto`` call's first attempt on ``portfolio_id`` should lock the row.

        False for a cold portfolio, and for the one call that probes a
        portfolio due to cool down.
        """
        if not self._hot:  # the common case: nothing hot, no lock taken
            return False
        with self._guard:
            heat = self._hot.get(portfolio_id)
            if heat is None:
                return False
            now = self.clock()
            if heat.probe_started is not None:
                if now - heat.probe_started < self.cool_after:
                    return True  # another call is probing: keep locking
            elif (
                heat.locked_commits < self.cool_after_commits
                and now - heat.last_conflict < self.cool_after
            ):
                return True
            heat.probe_started = now
            return False

    def note_conflict(self, portfolio_id: object) -> None:
        """An attempt on ``portfolio_id`` lost to a concurrent change: it is hot (again)."""
        with self._guard:
            self._hot[portfolio_id] = _Heat(self.clock())
            self._hot.move_to_end(portfolio_id)
            while len(self._hot) > self.capacity:
                self._hot.popitem(last=False)

    def note_commit(self, portfolio_id: object, *, locked: bool) -> None:
        """An ``auto`` call committed at its first attempt, ``locked`` or not (a probe)."""
        if not self._hot:
            return
        with self._guard:
            heat = self._hot.get(portfolio_id)
            if heat is None:
                return
            if locked:
                heat.locked_commits += 1
            elif heat.probe_started is not None:
                del self._hot[portfolio_id]  # the probe met no conflict: cold

    def hot_portfolios(self) -> list[object]:
        """The portfolio ids remembered as hot now, least recently heated first."""
        with self._guard:
            return list(self._hot)
