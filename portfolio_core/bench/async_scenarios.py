"""The asyncio flavour: AsyncPortfolioStore next to raw asyncpg and a naive AsyncSession.

The scenarios, rounds and checks are the threaded ones (``scenarios``): only
how the workers run differs. Tasks take the place of threads (same counts),
one event loop runs them all, each task of the raw baseline owns one asyncpg
connection (the naive ORM has its own engine), and each timed round is one
``run_until_complete`` on that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar
from uuid import UUID

from portfolio_core.async_store import AsyncPortfolioStore
from portfolio_core.bench import raw_async
from portfolio_core.bench.contenders import COALESCED, LIBRARY, NAIVE_ORM, RAW, Side
from portfolio_core.bench.harness import AsyncOperation, Sample, run_tasks
from portfolio_core.bench.naive_orm import AsyncNaiveOrm
from portfolio_core.bench.scenarios import (
    AMOUNT,
    Bench,
    Deposits,
    Prices,
    bench_service,
    counting_attempts,
    run_scenarios,
)
from portfolio_core.bench.threads import deposit
from portfolio_core.persistence.engine import create_async_engine

T = TypeVar("T")


class AsyncDriver:
    """Runs the scenarios' operations as asyncio tasks: async store vs raw asyncpg vs naive ORM.

    :attr:`operations` maps each side to what builds its operation (as in
    ``threads.ThreadDriver``): a contender more is one entry more.
    """

    label: Final = "async "

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        store: AsyncPortfolioStore,
        coalescing_store: AsyncPortfolioStore,
        connections: list[Any],
        naive: AsyncNaiveOrm,
    ) -> None:
        self.loop = loop
        self.store = store
        self.connections = connections
        self.naive = naive
        self.operations: Mapping[str, Callable[[Deposits], AsyncOperation]] = {
            RAW: self._raw,
            LIBRARY: lambda work: self._library(store, work),
            COALESCED: lambda work: self._library(coalescing_store, work),
            NAIVE_ORM: lambda work: naive.operation(
                work.ids, work.pick, AMOUNT, lock=work.lock == "wait"
            ),
        }

    def _wait(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def _raw(self, work: Deposits) -> AsyncOperation:
        connections, pick, ids = self.connections, work.pick, [UUID(pid) for pid in work.ids]
        call = raw_async.deposit_locked if work.lock == "wait" else raw_async.deposit_optimistic

        async def raw_deposit(worker: int, index: int) -> int:
            return await call(connections[worker], ids[pick(worker, index)], AMOUNT)

        return raw_deposit

    @staticmethod
    def _library(store: AsyncPortfolioStore, work: Deposits) -> AsyncOperation:
        lock, pick, ids = work.lock, work.pick, [UUID(pid) for pid in work.ids]

        async def library_deposit(worker: int, index: int) -> int:
            await store.execute(ids[pick(worker, index)], deposit, lock=lock)
            return 1  # the retries are counted from the metrics

        return library_deposit

    def deposits(self, workers: int, ops_per_worker: int, work: Deposits) -> Sample:
        """Run ``work`` in ``workers`` tasks; library attempts = commits + failed attempts."""
        operation = self.operations[work.side](work)
        return counting_attempts(
            self.store.concurrency,
            work.side,
            lambda: self._wait(run_tasks(workers, ops_per_worker, operation)),
        )

    def reprice(self, side: Side, portfolio_id: str, prices: Prices) -> int:
        """One re-pricing call: raw UPDATE ... FROM unnest(...) or update_all_prices."""
        pid = UUID(portfolio_id)
        if side == "raw":
            return self._wait(raw_async.reprice(self.connections[0], pid, prices.pairs))
        return self._wait(self.store.update_all_prices(pid, prices.by_symbol))


def run_async_scenarios(url: str, bench: Bench, max_workers: int) -> dict[str, Any]:
    """Every scenario with asyncio tasks (library vs raw asyncpg), on a new event loop.

    ``bench`` (the threaded run's) provides the portfolios, rounds and checks.
    """
    loop = asyncio.new_event_loop()
    engine = create_async_engine(url, pool_size=max_workers + 2, max_overflow=4)
    store = AsyncPortfolioStore(engine, bench_service(engine))
    coalescing_store = AsyncPortfolioStore(engine, store.concurrency, coalesce=True)
    try:
        connections = loop.run_until_complete(raw_async.connection_pool(engine.url, max_workers))
        naive = AsyncNaiveOrm(engine.url, max_workers + 2)
        try:
            driver = AsyncDriver(loop, store, coalescing_store, connections, naive)
            return run_scenarios(bench, driver)
        finally:
            loop.run_until_complete(naive.close())
            loop.run_until_complete(raw_async.close_all(connections))
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
