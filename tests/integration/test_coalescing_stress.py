"""Coalescing under load: threads of two stores (separate engines, as two processes
would be) hammer one portfolio with keyed deposits and withdrawals, some failing.

Whatever the interleaving: money is conserved, version == events == successful
operations + 1, each key is applied once (failed ones never), and each
thread's operations apply in its own order.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine

from portfolio_core import InsufficientFundsError, Portfolio, PortfolioStore, create_engine
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.units import Seconds
from tests.integration.coalescing_tools import committed_state, key_count

THREADS_PER_STORE = 4
OPERATIONS = 20
OPENING = Decimal("300")


@dataclass
class Done:
    key: str
    amount: Decimal
    version: int | None


def test_threads_of_two_stores_coalescing_on_one_portfolio_lose_nothing(
    engine: Engine, database_url: str, no_sleep: list[Seconds]
) -> None:
    other_engine = create_engine(database_url)
    stores = [
        PortfolioStore(
            bound, ConcurrencyService(bound, max_retries=20, sleep=no_sleep.append), coalesce=True
        )
        for bound in (engine, other_engine)
    ]
    pid = stores[0].create_portfolio("hot", OPENING)
    start = threading.Barrier(2 * THREADS_PER_STORE)
    done: list[list[Done]] = [[] for _ in range(2 * THREADS_PER_STORE)]
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        store = stores[index % 2]
        rng = random.Random(index)
        start.wait()
        for n in range(OPERATIONS):
            amount = Decimal(rng.randint(1, 120))
            signed = amount if n % 2 == 0 else -amount

            def operation(portfolio: Portfolio, signed: Decimal = signed) -> None:
                if signed > 0:
                    portfolio.deposit(signed)
                else:
                    portfolio.withdraw(-signed)

            key = f"t{index}-{n}"
            try:
                # The last thread of each store sometimes opts out: mixed callers are safe.
                coalesce = None if index < 2 * THREADS_PER_STORE - 2 else n % 3 != 0
                answer = store.execute_versioned(
                    pid, operation, idempotency_key=key, coalesce=coalesce
                )
                done[index].append(Done(key, signed, answer.version))
            except InsufficientFundsError:
                done[index].append(Done(key, signed, None))
            except BaseException as error:
                failures.append(error)
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2 * THREADS_PER_STORE)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
            assert not thread.is_alive()
    finally:
        other_engine.dispose()
    assert failures == []
    succeeded = [d for per_thread in done for d in per_thread if d.version is not None]
    failed = [d for per_thread in done for d in per_thread if d.version is None]
    assert len(succeeded) + len(failed) == 2 * THREADS_PER_STORE * OPERATIONS
    expected_cash = OPENING + sum((d.amount for d in succeeded), Decimal(0))
    assert committed_state(engine, pid) == (len(succeeded) + 1, expected_cash, len(succeeded) + 1)
    assert sorted(d.version or 0 for d in succeeded) == list(range(2, len(succeeded) + 2))
    assert all(key_count(engine, d.key) == 1 for d in succeeded)
    assert all(key_count(engine, d.key) == 0 for d in failed)
    for per_thread in done:
        versions = [d.version for d in per_thread if d.version is not None]
        assert versions == sorted(versions)
    assert stores[0].replay(pid).cash_balance == expected_cash
