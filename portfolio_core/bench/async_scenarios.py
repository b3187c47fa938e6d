"""The async column: the same scenarios with asyncio tasks, AsyncPortfolioStore vs raw asyncpg.

Tasks take the place of threads (same counts), one event loop runs them all,
and each task of the raw baseline owns one asyncpg connection. The sync
``Bench`` provides the portfolios and checks afterwards that versions and
cash moved by exactly the commits (a mismatch is an error, not a number).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from uuid import UUID

from portfolio_core.async_store import AsyncPortfolioStore
from portfolio_core.bench import raw_async
from portfolio_core.bench.harness import Stats, summarize
from portfolio_core.bench.scenarios import _FAILED_ATTEMPT_METRICS, AMOUNT, Bench
from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.persistence.engine import create_async_engine
from portfolio_core.store import LOCK_MODES

AsyncOperation = Callable[[int, int], Awaitable[int]]
"""``await operation(task, index) -> attempts``: one committed operation."""


async def run_tasks(workers: int, ops_per_worker: int, operation: AsyncOperation) -> Stats:
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
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return summarize(workers, latencies, sum(attempts), time.perf_counter() - started)


class AsyncBench:
    """The async contenders on the sync bench's database, helpers and checks."""

    def __init__(self, bench: Bench, store: AsyncPortfolioStore, connections: list[Any]) -> None:
        self.bench = bench
        self.store = store
        self.service = store.concurrency
        self.connections = connections

    async def _library(
        self, workers: int, ops: int, run: Callable[[int, int], Awaitable[object]]
    ) -> Stats:
        before = self.service.get_metrics()

        async def operation(worker: int, index: int) -> int:
            await run(worker, index)
            return 1

        stats = await run_tasks(workers, ops, operation)
        after = self.service.get_metrics()
        failed = sum(after[name] - before[name] for name in _FAILED_ATTEMPT_METRICS)
        return replace(stats, attempts=stats.commits + failed)

    @staticmethod
    def _deposit(portfolio: Portfolio) -> None:
        portfolio.deposit(AMOUNT)

    async def uncontended(self, workers: int = 8, portfolio_count: int = 64) -> dict[str, Any]:
        """(a) ``workers`` tasks, each on its own slice of the portfolios."""
        sizes, bench = self.bench.sizes, self.bench
        ops, per_worker = sizes.uncontended_ops, portfolio_count // workers
        result: dict[str, Any] = {"workers": workers, "portfolios": portfolio_count}
        conns = self.connections

        raw_ids = [UUID(pid) for pid in bench._portfolios(portfolio_count)]

        async def raw_op(worker: int, index: int) -> int:
            pid = raw_ids[worker * per_worker + index % per_worker]
            return await raw_async.deposit_optimistic(conns[worker], pid, AMOUNT)

        await run_tasks(workers, sizes.warmup_ops, raw_op)
        report: dict[str, Any] = {}
        with bench._verified([str(pid) for pid in raw_ids], report):
            report.update((await run_tasks(workers, ops, raw_op)).as_dict())
        result["raw"] = report

        lib_ids = [UUID(pid) for pid in bench._portfolios(portfolio_count)]
        store, deposit = self.store, self._deposit

        async def lib_op(worker: int, index: int) -> None:
            await store.execute(lib_ids[worker * per_worker + index % per_worker], deposit)

        await self._library(workers, sizes.warmup_ops, lib_op)
        report = {}
        with bench._verified([str(pid) for pid in lib_ids], report):
            report.update((await self._library(workers, ops, lib_op)).as_dict())
        result["library"] = report
        result["ratio"] = round(result["library"]["ops_per_s"] / result["raw"]["ops_per_s"], 3)
        return result

    async def hot(self, workers: int) -> dict[str, Any]:
        """(b) ``workers`` tasks on ONE portfolio: raw FOR UPDATE, then each lock mode."""
        sizes, bench = self.bench.sizes, self.bench
        ops = max(1, sizes.hot_ops // workers)
        result: dict[str, Any] = {"workers": workers, "ops_per_worker": ops}
        conns = self.connections

        (raw_text_id,) = bench._portfolios(1)
        raw_id = UUID(raw_text_id)

        async def raw_op(worker: int, index: int) -> int:
            return await raw_async.deposit_locked(conns[worker], raw_id, AMOUNT)

        await run_tasks(workers, sizes.warmup_ops, raw_op)
        report: dict[str, Any] = {}
        with bench._verified([raw_text_id], report):
            report.update((await run_tasks(workers, ops, raw_op)).as_dict())
        result["raw"] = report

        store, deposit = self.store, self._deposit
        modes: dict[str, Any] = {}
        for mode in LOCK_MODES:
            (text_id,) = bench._portfolios(1)
            pid = UUID(text_id)

            async def lib_op(worker: int, index: int, pid: UUID = pid, mode: Any = mode) -> None:
                await store.execute(pid, deposit, lock=mode)

            await self._library(workers, sizes.warmup_ops, lib_op)
            report = {}
            with bench._verified([text_id], report):
                report.update((await self._library(workers, ops, lib_op)).as_dict())
            report["ratio"] = round(report["ops_per_s"] / result["raw"]["ops_per_s"], 3)
            modes[mode] = report
        result["library"] = modes
        best = max(modes, key=lambda name: modes[name]["ops_per_s"])
        result["best_mode"] = best
        result["ratio"] = modes[best]["ratio"]
        result["best_attempts_per_commit"] = modes[best]["attempts_per_commit"]
        return result

    async def reprice(self) -> dict[str, Any]:
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
            await call(rounds)  # warm-up (caches, prepared statements)
            latencies: list[float] = []
            bumps: list[int] = []
            for r in range(rounds):
                before = bench._version(pid)
                started = time.perf_counter()
                changed = await call(r)
                latencies.append(time.perf_counter() - started)
                bumps.append(bench._version(pid) - before)
                if changed != count:
                    raise AssertionError(f"async {name} re-priced {changed} of {count} positions")
            if bumps != [1] * rounds:
                raise AssertionError(f"async {name} bumped the version {bumps}, not once per call")
            report = summarize(1, latencies, rounds, sum(latencies)).as_dict()
            report["version_bumps"] = bumps
            result[name] = report
        result["ratio"] = round(result["library"]["ops_per_s"] / result["raw"]["ops_per_s"], 3)
        return result


async def _run(url: str, bench: Bench, max_workers: int) -> dict[str, Any]:
    engine = create_async_engine(url, pool_size=max_workers + 2, max_overflow=4)
    service = ConcurrencyService(
        engine, max_retries=100_000, base_delay=0.0005, max_delay=0.01, deadline=300.0
    )
    connections = await raw_async.connection_pool(engine.url, max_workers)
    try:
        runner = AsyncBench(bench, AsyncPortfolioStore(engine, service), connections)
        return {
            "uncontended": await runner.uncontended(),
            "hot_8": await runner.hot(8),
            "hot_32": await runner.hot(32),
            "reprice": await runner.reprice(),
        }
    finally:
        await raw_async.close_all(connections)
        await engine.dispose()


def run_async_scenarios(url: str, bench: Bench, max_workers: int) -> dict[str, Any]:
    """Every scenario with asyncio tasks (library vs raw asyncpg), in a new event loop."""
    return asyncio.run(_run(url, bench, max_workers))
