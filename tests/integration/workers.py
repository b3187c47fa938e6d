"""Code run in child OS processes (multiprocessing, 'spawn'): each builds its own engine.

Kept apart from the test modules so that a spawned child imports only this
and the library, never pytest's collection machinery.
"""

from __future__ import annotations

import traceback
from decimal import Decimal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any
from uuid import UUID

from portfolio_core import PessimisticLockException, PortfolioStore, create_engine
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.store import LockMode
from portfolio_core.units import Seconds

WAIT = 60.0
"""Upper bound on any wait for the other process (a hang fails instead of blocking CI)."""


def contend_for_entity_lock(
    url: str,
    entity_id: UUID,
    held: Event,
    tried: Event,
    released: Event,
    results: Queue[Any],
) -> None:
    """While the parent holds the lock: try once, then with a short timeout; after it
    releases: wait for the lock. Report each outcome."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    service = ConcurrencyService(engine)
    outcomes: list[tuple[str, str | None]] = []

    def attempt(timeout: Seconds) -> None:
        try:
            with service.entity_lock("Portfolio", entity_id, timeout=timeout):
                outcomes.append(("acquired", None))
        except PessimisticLockException as error:
            outcomes.append(("refused", error.sqlstate))

    try:
        if not held.wait(WAIT):
            raise TimeoutError("the parent never took the lock")
        attempt(0)
        attempt(0.05)
        tried.set()
        if not released.wait(WAIT):
            raise TimeoutError("the parent never released the lock")
        attempt(WAIT)
        results.put({"outcomes": outcomes, "lock_timeouts": service.get_metrics()["lock_timeouts"]})
    except BaseException:
        results.put({"error": traceback.format_exc()})
    finally:
        tried.set()
        engine.dispose()


def deposit_in_each_mode(
    url: str,
    portfolio_by_mode: dict[LockMode, UUID],
    count: int,
    start: Barrier,
    results: Queue[Any],
) -> None:
    """For each lock mode in turn (all processes together): ``count`` deposits of 1."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        report: dict[str, Any] = {}
        for mode, pid in portfolio_by_mode.items():
            # Tiny backoff and a huge retry budget: under contention every
            # deposit must eventually commit; the assertions are on the totals.
            service = ConcurrencyService(
                engine, max_retries=100_000, base_delay=0.0005, max_delay=0.005, deadline=None
            )
            store = PortfolioStore(engine, service)
            start.wait(WAIT)
            for _ in range(count):
                store.execute(pid, lambda p: p.deposit(Decimal("1")), lock=mode)
            report[mode] = service.get_metrics()
        results.put(report)
    except BaseException:
        results.put({"error": traceback.format_exc()})
    finally:
        engine.dispose()
