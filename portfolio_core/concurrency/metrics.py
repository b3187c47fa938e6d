"""Exact, thread-safe counters of concurrency events, and their structured log records."""

from __future__ import annotations

import logging
import threading
from typing import Final

logger: Final = logging.getLogger("portfolio_core.concurrency")
"""Every concurrency event is logged here with ``extra={"event": ..., ...}``."""

METRIC_NAMES: Final = (
    "version_conflicts",
    "successful_retries",
    "failed_retries",
    "deadlocks_detected",
    "lock_timeouts",
)


class ConcurrencyMetrics:
    """Counters that stay exact under any number of threads.

    * ``version_conflicts``: stale versions and serialization failures seen;
    * ``successful_retries``: operations that succeeded after at least one retry;
    * ``failed_retries``: operations that gave up once the retry policy ran out;
    * ``deadlocks_detected``: deadlocks PostgreSQL reported (SQLSTATE 40P01);
    * ``lock_timeouts``: row or advisory locks not obtained (NOWAIT, SKIP
      LOCKED, lock_timeout).
    """

    def __init__(self) -> None:
        # An in-process lock guards in-process counters only; it is never used
        # to exclude other processes from an entity (see ConcurrencyService.entity_lock).
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(METRIC_NAMES, 0)

    def increment(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to one counter."""
        if name not in self._counts:
            raise KeyError(name)
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of every counter."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._counts = dict.fromkeys(METRIC_NAMES, 0)


def log_event(event: str, level: int = logging.INFO, /, **fields: object) -> None:
    """Log one concurrency event as a structured record (the fields go to ``extra``)."""
    if logger.isEnabledFor(level):
        details = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        logger.log(level, "%s %s", event, details, extra={"event": event, **fields})
