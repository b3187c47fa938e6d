"""Exact, thread-safe counters of concurrency events, and their structured log records.

:func:`record_failure` says what one failed attempt counts as (conflict,
deadlock, refused lock...) for every caller: the retry loops and entity_lock.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from portfolio_core.concurrency.retry import RETRYABLE_CONFLICTS
from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    ConnectionLostError,
    DeadlockException,
    PessimisticLockException,
    SerializationFailureException,
    VersionMismatchError,
)
from portfolio_core.persistence.errors import sqlstate_of

logger: Final = logging.getLogger("portfolio_core.concurrency")
"""Every concurrency event is logged here with ``extra={"event": ..., ...}``."""

METRIC_NAMES: Final = (
    "version_conflicts",
    "successful_retries",
    "failed_retries",
    "deadlocks_detected",
    "lock_timeouts",
    "serialization_failures",
)


class ConcurrencyMetrics:
    """Counters that stay exact under any number of threads.

    * ``version_conflicts``: stale versions seen (optimistic version check);
    * ``successful_retries``: operations that succeeded after at least one retry;
    * ``failed_retries``: operations that gave up once the retry policy ran out;
    * ``deadlocks_detected``: deadlocks PostgreSQL reported (SQLSTATE 40P01);
    * ``lock_timeouts``: row or advisory locks not obtained (NOWAIT, SKIP
      LOCKED, lock_timeout);
    * ``serialization_failures``: transactions PostgreSQL could not serialize
      (SQLSTATE 40001, REPEATABLE READ / SERIALIZABLE); retried like conflicts.
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


_COUNTED: Final = "_portfolio_core_counted_in"
"""Attribute of an error already counted (by entity_lock): the metrics it was counted in."""


def failure_sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE behind a failure: its own field, else its driver cause's."""
    return getattr(error, "sqlstate", None) or sqlstate_of(error.__cause__ or error)


def record_failure(
    metrics: ConcurrencyMetrics,
    error: BaseException,
    entity_type: str,
    entity_id: object,
    attempt: int,
    *,
    mark_counted: bool = False,
) -> None:
    """Count and log one failed attempt in ``metrics``, once per raise.

    ``mark_counted`` marks ``error`` as counted (entity_lock does, since a
    retry loop around it records the same raise again); recording a marked
    error consumes the mark instead of counting twice, so the same object
    raised again later counts again.
    """
    if vars(error).get(_COUNTED) is metrics:
        del vars(error)[_COUNTED]
        return
    if mark_counted:
        setattr(error, _COUNTED, metrics)
    common: dict[str, object] = {
        "entity_type": getattr(error, "entity_type", None) or entity_type,
        "entity_id": getattr(error, "entity_id", None) or entity_id,
        "attempt": attempt,
        "sqlstate": failure_sqlstate(error),
    }
    if isinstance(error, VersionMismatchError):
        # The caller's expected version, not a race between writers: not counted.
        log_event(
            "version_mismatch",
            **common,
            expected_version=error.expected_version,
            actual_version=error.actual_version,
        )
    elif isinstance(error, SerializationFailureException):
        metrics.increment("serialization_failures")
        log_event("serialization_failure", **common)
    elif isinstance(error, RETRYABLE_CONFLICTS):
        metrics.increment("version_conflicts")
        log_event(
            "version_conflict",
            **common,
            expected_version=getattr(error, "expected_version", None),
            actual_version=getattr(error, "actual_version", None),
        )
    elif isinstance(error, DeadlockException):
        metrics.increment("deadlocks_detected")
        log_event("deadlock_detected", logging.WARNING, **common)
    elif isinstance(error, PessimisticLockException):
        metrics.increment("lock_timeouts")
        log_event("lock_not_available", **common)
    elif isinstance(error, ConnectionLostError):
        log_event("connection_lost", logging.WARNING, **common)
    elif isinstance(error, CommitOutcomeUnknownException):
        # Not retried: the caller must find out whether it committed.
        log_event("commit_outcome_unknown", logging.ERROR, **common)
