"""Counters a demo worker keeps, and the log handler that counts concurrency events."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from portfolio_core.demo.ledger import Ledger
from portfolio_core.units import Milliseconds

RETRY_CAUSES: Final = {
    # exception type named by the "retrying" log record -> cause shown in the report
    "StaleDataException": "version conflict",
    "SerializationFailureException": "serialization failure",
    "DeadlockException": "deadlock",
    "PessimisticLockException": "lock not available",
    "ConnectionLostError": "connection lost",
}

CONFLICT_EVENTS: Final = ("version_conflict", "deadlock_detected", "lock_not_available")


class EventCounter(logging.Handler):
    """Counts the structured records of the ``portfolio_core.concurrency`` logger.

    Every record carries ``event`` (version_conflict, deadlock_detected,
    lock_not_available, connection_lost, retrying, retry_succeeded,
    retries_exhausted); ``retrying`` records also name the ``error`` that ended
    the attempt, which gives the retries by cause.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: Counter[str] = Counter()
        self.retry_causes: Counter[str] = Counter()
        self._previous: tuple[int, bool] = (logging.NOTSET, True)

    def emit(self, record: logging.LogRecord) -> None:
        """Count one record (called under the handler's lock)."""
        event = getattr(record, "event", None)
        if event is None:
            return
        self.events[str(event)] += 1
        if event == "commit_outcome_resolved":
            # A lost COMMIT settled through its idempotency key: did it commit?
            committed = bool(getattr(record, "committed", False))
            self.events[f"commit_outcome_resolved_{'committed' if committed else 'rerun'}"] += 1
        if event == "retrying":
            error = str(getattr(record, "error", None))
            self.retry_causes[RETRY_CAUSES.get(error, error)] += 1

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        """Copies of the event and retry-cause counters."""
        # The handler's own lock, the one emit() runs under.
        self.acquire()
        try:
            return Counter(self.events), Counter(self.retry_causes)
        finally:
            self.release()

    def install(self) -> None:
        """Attach to the concurrency logger, at INFO, without printing anything."""
        logger = logging.getLogger("portfolio_core.concurrency")
        self._previous = (logger.level, logger.propagate)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(self)

    def uninstall(self) -> None:
        """Detach, and give the logger back its level and propagation."""
        logger = logging.getLogger("portfolio_core.concurrency")
        logger.removeHandler(self)
        logger.setLevel(self._previous[0])
        logger.propagate = self._previous[1]


@dataclass
class WorkerStats:
    """What one worker (or, merged, the whole run) did.

    ``calls`` counts store calls (the store retries inside each call; those
    retries are counted by the EventCounter); ``reruns`` counts the calls that
    came back with the retry policy exhausted, after which the worker ran the
    operation again.
    """

    done: int = 0
    committed_total: int = 0
    committed: Counter[str] = field(default_factory=Counter)
    committed_by_lock: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    resolved_by_key: int = 0
    calls: int = 0
    reruns: Counter[str] = field(default_factory=Counter)
    abandoned: int = 0
    unexpected: list[str] = field(default_factory=list)
    latencies_ms: list[Milliseconds] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    retry_causes: Counter[str] = field(default_factory=Counter)
    metrics: Counter[str] = field(default_factory=Counter)
    reconnect_waits: int = 0
    keys: dict[str, str] = field(default_factory=dict)
    """idempotency key -> kind, for every keyed operation that committed."""
    ledger: Ledger = field(default_factory=Ledger)

    def merge(self, other: WorkerStats) -> None:
        """Add ``other``'s counts to these."""
        self.done += other.done
        self.committed_total += other.committed_total
        self.resolved_by_key += other.resolved_by_key
        self.calls += other.calls
        self.abandoned += other.abandoned
        self.reconnect_waits += other.reconnect_waits
        for mine, theirs in (
            (self.committed, other.committed),
            (self.committed_by_lock, other.committed_by_lock),
            (self.rejected, other.rejected),
            (self.unknown, other.unknown),
            (self.reruns, other.reruns),
            (self.events, other.events),
            (self.retry_causes, other.retry_causes),
            (self.metrics, other.metrics),
        ):
            mine.update(theirs)
        self.unexpected.extend(other.unexpected)
        self.latencies_ms.extend(other.latencies_ms)
        self.keys.update(other.keys)
        self.ledger.merge(other.ledger)
