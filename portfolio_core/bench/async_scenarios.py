"""The async column: the same scenarios with asyncio tasks, AsyncPortfolioStore vs raw asyncpg.

Tasks take the place of threads (same counts), one event loop runs them all,
and each task of the raw baseline owns one asyncpg connection. The sync
``Bench`` provides the portfolios, the interleaved rounds and the check that
versions and cash moved by exactly the commits (a mismatch is an error, not a
number): each timed round is one ``run_until_complete`` on this module's loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from portfolio_core.async_store import AsyncPortfolioStore
from portfolio_core.bench import raw_async
from portfolio_core.bench.harness import Sample, summarize
from portfolio_core.bench.scenarios import (
    _FAILED_ATTEMPT_METRICS,
    AMOUNT,
    Bench,
    Contender,
    summarize_hot,
)
from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.persistence.engine import create_async_engine
from portfolio_core.store import LOCK_MODES

T = TypeVar("T")

AsyncOperation = Callable[[int, int], Awaitable[int]]
"""``await operation(task, index) -> attempts``: one committed operation."""


async def run_tasks(workers: int, ops_per_worker: int, operation: AsyncOperation) -> Sample:
    """Run ``operation`` ``ops_per_worker`` times in each of ``workers`` tasks; time it."""
    go = asyncio.Event()
    latencies: list[float] = []
    attempts = [0] * workers

    async def worker(number: int) -> None:
        await go.wait()
        for index in range(ops_per_worker):
            started = time.perf_counter()
            attempts[number] += await operation(number, index)
            latencies.append(time.perf_counter() - started)

    tasks = [asyncio.create_task(worker(n)) for n in range(workers)]
    await asyncio.sleep(0)  # let every task reach the start line
    started, cpu = time.perf_counter(), time.process_time()
    go.set()
    await asyncio.gather(*tasks)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Sample(workers, latencies, sum(attempts), seconds, cpu)


class AsyncBench:
    """The async contenders on the sync bench's database, rounds and checks."""

    def __init__(
        self,
        bench: Bench,
        loop: asyncio.AbstractEventLoop,
        store: AsyncPortfolioStore,
        connections: list[Any],
    ) -> None:
        self.bench = bench
        self.loop = loop
        self.store = store
        self.service = store.concurrency
        self.connections = connections

    def _wait(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def _tasks(self, workers: int, ops: int, operation: AsyncOperation) -> Sample:
        return self._wait(run_tasks(workers, ops, operation))

    def _library(
        self, workers: int, ops: int, run: Callable[[int, int], Awaitable[object]]
    ) -> Sample:
        """Time ``run`` through the store; attempts = commits + failed attempts in the metrics."""
        before = self.service.get_metrics()

        async def operation(worker: int, index: int) -> int:
            await run(worker, index)
            return 1

        sample = self._tasks(workers, ops, operation)
        after = self.service.get_metrics()
        failed = sum(after[name] - before[name] for name in _FAILED_ATTEMPT_METRICS)
        return sample.with_attempts(len(sample.latencies) + failed)

    @staticmethod
    def _deposit(portfolio: Portfolio) -> None:
        portfolio.deposit(AMOUNT)

    def uncontended(self, workers: int = 8, portfolio_count: int = 64) -> dict[str, Any]:
        """(a) ``workers`` tasks, each on its own slice of the portfolios."""
        bench, sizes = self.bench, self.bench.sizes
        per_round = max(1, sizes.uncontended_ops // sizes.rounds)
        per_worker = portfolio_count // workers
        conns, store, deposit = self.connections, self.store, self._deposit
        raw_ids = [UUID(pid) for pid in bench._portfolios(portfolio_count)]
        lib_ids = [UUID(pid) for pid in bench._portfolios(portfolio_count)]

        async def raw_op(worker: int, index: int) -> int:
            pid = raw_ids[worker * per_worker + index % per_worker]
            return await raw_async.deposit_optimistic(conns[worker], pid, AMOUNT)

        async def lib_op(worker: int, index: int) -> None:
            await store.execute(lib_ids[worker * per_worker + index % per_worker], deposit)

        self._tasks(workers, sizes.warmup_ops, raw_op)
        self._library(workers, sizes.warmup_ops, lib_op)
        reports = bench._contend(
            {
                "raw": Contender(
                    [str(pid) for pid in raw_ids], partial(self._tasks, workers, per_round, raw_op)
                ),
                "library": Contender(
                    [str(pid) for pid in lib_ids],
                    partial(self._library, workers, per_round, lib_op),
                ),
            }
        )
        ratio = round(reports["library"]["ops_per_s"] / reports["raw"]["ops_per_s"], 3)
        return {"workers": workers, "portfolios": portfolio_count, **reports, "ratio": ratio}

    def hot(self, workers: int) -> dict[str, Any]:
        """(b) ``workers`` tasks on ONE portfolio: raw FOR UPDATE, then each lock mode."""
        bench, sizes = self.bench, self.bench.sizes
        per_round = max(1, sizes.hot_ops // workers // sizes.rounds)
        conns, store, deposit = self.connections, self.store, self._deposit
        (raw_text_id,) = bench._portfolios(1)
        raw_id = UUID(raw_text_id)

        async def raw_op(worker: int, index: int) -> int:
            return await raw_async.deposit_locked(conns[worker], raw_id, AMOUNT)

        self._tasks(workers, sizes.warmup_ops, raw_op)
        contenders = {
            "raw": Contender([raw_text_id], partial(self._tasks, workers, per_round, raw_op))
        }
        for mode in LOCK_MODES:
            (text_id,) = bench._portfolios(1)
            hot_id = UUID(text_id)

            async def lib_op(worker: int, index: int, pid: UUID = hot_id, mode: Any = mode) -> None:
                await store.execute(pid, deposit, lock=mode)

            self._library(workers, sizes.warmup_ops, lib_op)
            contenders[mode] = Contender(
                [text_id], partial(self._library, workers, per_round, lib_op)
            )
        return summarize_hot(workers, per_round * sizes.rounds, bench._contend(contenders))

    def reprice(self) -> dict[str, Any]:
        """(c) update_all_prices on every position vs raw UPDATE ... FROM unnest(...)."""
        bench = self.bench
        count, rounds = bench.sizes.reprice_positions, bench.sizes.reprice_rounds
        symbols = [f"S{n:06d}" for n in range(1, count + 1)]
        price_lists = [
            [(symbol, AMOUNT * (11 + r) + n % 97) for n, symbol in enumerate(symbols)]
            for r in range(rounds + 1)
        ]
        price_maps = [dict(prices) for prices in price_lists]
        result: dict[str, Any] = {"positions": count, "rounds": rounds}
        raw_id, lib_id = bench._big_portfolio(count), bench._big_portfolio(count)
        conn, store = self.connections[0], self.store
        contenders: dict[str, Callable[[int], Awaitable[int]]] = {
            "raw": lambda r: raw_async.reprice(conn, UUID(raw_id), price_lists[r]),
            "library": lambda r: store.update_all_prices(UUID(lib_id), price_maps[r]),
        }
        for name, pid in (("raw", raw_id), ("library", lib_id)):
            call = contenders[name]
            self._wait(call(rounds))  # warm-up (caches, prepared statements)
            latencies: list[float] = []
            bumps: list[int] = []
            cpu = 0.0
            for r in range(rounds):
                before = bench._version(pid)
                started, cpu_started = time.perf_counter(), time.process_time()
                changed = self._wait(call(r))
                latencies.append(time.perf_counter() - started)
                cpu += time.process_time() - cpu_started
                bumps.append(bench._version(pid) - before)
                if changed != count:
                    raise AssertionError(f"async {name} re-priced {changed} of {count} positions")
            if bumps != [1] * rounds:
                raise AssertionError(f"async {name} bumped the version {bumps}, not once per call")
            report = summarize([Sample(1, latencies, rounds, sum(latencies), cpu)]).as_dict()
            report["version_bumps"] = bumps
            result[name] = report
        result["ratio"] = round(result["library"]["ops_per_s"] / result["raw"]["ops_per_s"], 3)
        return result


def run_async_scenarios(url: str, bench: Bench, max_workers: int) -> dict[str, Any]:
    """Every scenario with asyncio tasks (library vs raw asyncpg), on a new event loop."""
    loop = asyncio.new_event_loop()
    engine = create_async_engine(url, pool_size=max_workers + 2, max_overflow=4)
    service = ConcurrencyService(
        engine, max_retries=100_000, base_delay=0.0005, max_delay=0.01, deadline=300.0
    )
    try:
        connections = loop.run_until_complete(raw_async.connection_pool(engine.url, max_workers))
        try:
            runner = AsyncBench(bench, loop, AsyncPortfolioStore(engine, service), connections)
            return {
                "uncontended": runner.uncontended(),
                "hot_8": runner.hot(8),
                "hot_32": runner.hot(32),
                "reprice": runner.reprice(),
            }
        finally:
            loop.run_until_complete(raw_async.close_all(connections))
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
