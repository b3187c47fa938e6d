"""The threaded flavour: PortfolioStore next to raw psycopg2, one thread per worker.

Each worker thread owns one raw connection (``Bench.connections``); the
library side shares the bench's engine, store and retry policy.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

from portfolio_core.bench import raw
from portfolio_core.bench.harness import Operation, Sample, run_workers
from portfolio_core.bench.scenarios import (
    AMOUNT,
    Bench,
    Deposits,
    Prices,
    Side,
    counting_attempts,
)
from portfolio_core.domain.portfolio import Portfolio


def deposit(portfolio: Portfolio) -> None:
    """The unit of work every library deposit runs."""
    portfolio.deposit(AMOUNT)


class ThreadDriver:
    """Runs the scenarios' operations in threads: sync store vs raw psycopg2."""

    label: Final = ""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench

    def _operation(self, work: Deposits) -> Operation:
        connections, pick = self.bench.connections, work.pick
        if work.side == "raw":
            ids = list(work.ids)
            call = raw.deposit_locked if work.lock == "wait" else raw.deposit_optimistic

            def raw_deposit(worker: int, index: int) -> int:
                return call(connections[worker], ids[pick(worker, index)], AMOUNT)

            return raw_deposit
        store, lock, uuids = self.bench.store, work.lock, [UUID(pid) for pid in work.ids]

        def library_deposit(worker: int, index: int) -> int:
            store.execute(uuids[pick(worker, index)], deposit, lock=lock)
            return 1  # the retries are counted from the metrics

        return library_deposit

    def deposits(self, workers: int, ops_per_worker: int, work: Deposits) -> Sample:
        """Run ``work`` in ``workers`` threads; library attempts = commits + failed attempts."""
        operation = self._operation(work)
        return counting_attempts(
            self.bench.service, work.side, lambda: run_workers(workers, ops_per_worker, operation)
        )

    def reprice(self, side: Side, portfolio_id: str, prices: Prices) -> int:
        """One re-pricing call: raw UPDATE ... FROM (VALUES ...) or update_all_prices."""
        if side == "raw":
            return raw.reprice(self.bench.connections[0], portfolio_id, prices.pairs)
        return self.bench.store.update_all_prices(UUID(portfolio_id), prices.by_symbol)
