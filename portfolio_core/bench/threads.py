"""The threaded flavour: PortfolioStore next to raw psycopg2 and a naive ORM, one thread per worker.

Each worker thread owns one raw connection (``Bench.connections``); the
library side shares the bench's engine, store and retry policy; the naive ORM
has its own engine and sessionmaker (``naive_orm``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final
from uuid import UUID

from portfolio_core.bench import raw
from portfolio_core.bench.contenders import COALESCED, LIBRARY, NAIVE_ORM, RAW, Side
from portfolio_core.bench.harness import Operation, Sample, run_workers
from portfolio_core.bench.naive_orm import NaiveOrm
from portfolio_core.bench.scenarios import (
    AMOUNT,
    Bench,
    Deposits,
    Prices,
    counting_attempts,
)
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.store import PortfolioStore


def deposit(portfolio: Portfolio) -> None:
    """The unit of work every library deposit runs."""
    portfolio.deposit(AMOUNT)


class ThreadDriver:
    """Runs the scenarios' operations in threads: sync store vs raw psycopg2 vs naive ORM.

    :attr:`operations` maps each side to what builds its operation: a
    contender more (a store with other options) is one entry more.
    """

    label: Final = ""

    def __init__(self, bench: Bench, pool_size: int) -> None:
        self.bench = bench
        self.naive = NaiveOrm(bench.engine.url, pool_size)
        self.operations: Mapping[str, Callable[[Deposits], Operation]] = {
            RAW: self._raw,
            LIBRARY: lambda work: self._library(bench.store, work),
            COALESCED: lambda work: self._library(bench.coalescing_store, work),
            NAIVE_ORM: lambda work: self.naive.operation(
                work.ids, work.pick, AMOUNT, lock=work.lock == "wait"
            ),
        }

    def close(self) -> None:
        """Release the naive ORM's engine."""
        self.naive.close()

    def _raw(self, work: Deposits) -> Operation:
        connections, pick, ids = self.bench.connections, work.pick, list(work.ids)
        call = raw.deposit_locked if work.lock == "wait" else raw.deposit_optimistic

        def raw_deposit(worker: int, index: int) -> int:
            return call(connections[worker], ids[pick(worker, index)], AMOUNT)

        return raw_deposit

    @staticmethod
    def _library(store: PortfolioStore, work: Deposits) -> Operation:
        lock, pick, uuids = work.lock, work.pick, [UUID(pid) for pid in work.ids]

        def library_deposit(worker: int, index: int) -> int:
            store.execute(uuids[pick(worker, index)], deposit, lock=lock)
            return 1  # the retries are counted from the metrics

        return library_deposit

    def deposits(self, workers: int, ops_per_worker: int, work: Deposits) -> Sample:
        """Run ``work`` in ``workers`` threads; library attempts = commits + failed attempts."""
        operation = self.operations[work.side](work)
        return counting_attempts(
            self.bench.service, work.side, lambda: run_workers(workers, ops_per_worker, operation)
        )

    def reprice(self, side: Side, portfolio_id: str, prices: Prices) -> int:
        """One re-pricing call: raw UPDATE ... FROM (VALUES ...) or update_all_prices."""
        if side == "raw":
            return raw.reprice(self.bench.connections[0], portfolio_id, prices.pairs)
        return self.bench.store.update_all_prices(UUID(portfolio_id), prices.by_symbol)
