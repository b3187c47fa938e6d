"""Deadlocks: PostgreSQL detects them, the library classifies (40P01), retries, and avoids them.

The embedded server runs with deadlock_timeout=100ms, so a forced deadlock is
resolved quickly; which transaction PostgreSQL picks as the victim does not
matter to the assertions.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import Engine

from portfolio_core import PortfolioStore, UnitOfWork
from portfolio_core.concurrency import ConcurrencyService
from tests.integration.helpers import LOCK_ROW

BARRIER_TIMEOUT = 60.0


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    """Run each target in its own thread; return what they raised."""
    failures: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as error:
                failures.append(error)

        return run

    threads = [threading.Thread(target=guarded(target)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_opposite_lock_order_deadlock_is_classified_retried_and_counted(
    store: PortfolioStore,
    engine: Engine,
    service: ConcurrencyService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = store.create_portfolio("a", Decimal("100"))
    b = store.create_portfolio("b", Decimal("100"))
    both_hold_one = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    attempts: dict[str, int] = Counter()

    def locking(name: str, first: UUID, second: UUID) -> Callable[[], None]:
        def work() -> None:
            attempts[name] += 1
            with UnitOfWork(engine) as uow:
                uow.session.execute(LOCK_ROW, {"pid": first})
                if attempts[name] == 1:
                    # Both transactions hold their first row before either asks
                    # for its second: the cycle is certain.
                    both_hold_one.wait()
                uow.session.execute(LOCK_ROW, {"pid": second})
                uow.portfolios.get(first).deposit(Decimal("1"))
                uow.portfolios.get(second).deposit(Decimal("1"))
                uow.commit()

        return lambda: service.run(work, entity_type="Portfolio", entity_id=(first, second))

    with caplog.at_level(logging.INFO, logger="portfolio_core.concurrency"):
        failures = run_threads([locking("a-then-b", a, b), locking("b-then-a", b, a)])

    assert failures == []
    assert sorted(attempts.values()) == [1, 2]
    assert service.get_metrics() == {
        "version_conflicts": 0,
        "successful_retries": 1,
        "failed_retries": 0,
        "deadlocks_detected": 1,
        "lock_timeouts": 0,
        "serialization_failures": 0,
    }
    (detected,) = [r for r in caplog.records if getattr(r, "event", None) == "deadlock_detected"]
    assert getattr(detected, "sqlstate") == "40P01"  # noqa: B009
    assert getattr(detected, "attempt") == 1  # noqa: B009
    for pid in (a, b):
        after = store.get(pid)
        assert (after.cash_balance, after.version) == (Decimal("102"), 3)


def test_transfers_in_random_directions_never_deadlock_and_conserve_money(
    store: PortfolioStore, service: ConcurrencyService
) -> None:
    opening = Decimal("10000")
    ids = [store.create_portfolio(f"t{i}", opening) for i in range(4)]
    workers, transfers_each = 8, 25
    start = threading.Barrier(workers, timeout=BARRIER_TIMEOUT)
    touched: Counter[UUID] = Counter()
    touched_guard = threading.Lock()

    def worker(seed: int) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(seed)
            start.wait()
            for _ in range(transfers_each):
                source, target = rng.sample(ids, 2)
                amount = Decimal(rng.randint(1, 500)) / 100
                store.transfer(source, target, amount)
                with touched_guard:
                    touched.update((source, target))

        return run

    failures = run_threads([worker(seed) for seed in range(workers)])

    assert failures == []
    assert service.get_metrics()["deadlocks_detected"] == 0
    assert service.get_metrics() == dict.fromkeys(service.get_metrics(), 0)
    snapshots = [store.get(pid) for pid in ids]
    assert sum(p.cash_balance for p in snapshots) == opening * len(ids)
    for snapshot in snapshots:
        assert snapshot.money_invariant_holds()
        assert snapshot.version == 1 + touched[snapshot.id]
