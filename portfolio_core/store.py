"""PortfolioStore: the facade services call.

Each method is one unit of work wrapped, from outside, in the retry policy:
a conflict re-runs the whole thing (fresh session, reload, re-apply, commit).
::

    store = PortfolioStore(create_engine())
    pid = store.create_portfolio("alpha", Decimal("10000"))
    store.execute(pid, lambda p: p.deposit(Decimal("250")))
    store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 10, "150")), lock="wait")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar
from uuid import UUID

from sqlalchemy import Engine

from portfolio_core import operations
from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.domain import money
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.operations import LOCK_MODES, LockMode
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository, as_portfolio_id
from portfolio_core.unit_of_work import UnitOfWork

T = TypeVar("T")

__all__ = ["LOCK_MODES", "LockMode", "PortfolioStore"]


class PortfolioStore:
    """Create, read and change portfolios safely from many threads, processes and hosts.

    ``lock`` chooses how a change meets concurrent ones: ``"optimistic"`` reads
    without locking and relies on the version check (best when conflicts are
    rare); ``"nowait"`` row-locks with FOR UPDATE NOWAIT and retries when the
    row is busy; ``"wait"`` row-locks and queues (best for a hot portfolio),
    bounded by ``lock_timeout`` seconds if given.
    """

    def __init__(self, engine: Engine, concurrency_service: ConcurrencyService | None = None):
        self.engine = engine
        self.concurrency = concurrency_service or ConcurrencyService(engine)

    def unit_of_work(self) -> UnitOfWork:
        """A new UnitOfWork on this store's engine and concurrency service."""
        return UnitOfWork(self.engine, concurrency_service=self.concurrency)

    def _run(
        self,
        body: Callable[[PostgreSQLPortfolioRepository], T],
        entity_id: object,
        *,
        commit: bool = True,
    ) -> T:
        """Run ``body`` in a unit of work (committed), retried as a whole per the policy."""

        def work() -> T:
            with self.unit_of_work() as uow:
                result = body(uow.portfolios)
                if commit:
                    uow.commit()
            return result

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=entity_id)

    def create_portfolio(self, name: str, cash_balance: money.AmountLike = 0) -> UUID:
        """Create a portfolio with an opening cash balance; return its id."""
        portfolio = Portfolio(name, cash_balance)

        def body(repository: PostgreSQLPortfolioRepository) -> UUID:
            repository.add(portfolio)
            return portfolio.id

        return self._run(body, portfolio.id)

    def get(self, portfolio_id: UUID) -> Portfolio:
        """A detached snapshot: the portfolio with its open and closed positions."""
        pid = as_portfolio_id(portfolio_id)
        return self._run(
            lambda repository: operations.detached_snapshot(repository, pid), pid, commit=False
        )

    def execute(
        self,
        portfolio_id: UUID,
        operation: Callable[[Portfolio], T],
        *,
        lock: LockMode = "optimistic",
        lock_timeout: float | None = None,  # float-ok: seconds
    ) -> T:
        """Run ``operation(portfolio)`` in a unit of work, commit, and return its result.

        Retried as a whole per the concurrency service's policy, so
        ``operation`` must be safe to call again (it only touches the portfolio).
        """
        pid = as_portfolio_id(portfolio_id)
        mode = operations.checked_lock_mode(lock)
        return self._run(operations.apply_operation(pid, operation, mode, lock_timeout), pid)

    def transfer(self, from_id: UUID, to_id: UUID, amount: money.AmountLike) -> None:
        """Move cash between two portfolios atomically.

        Both rows are locked in primary-key order, so transfers in opposite
        directions queue up instead of deadlocking.
        """
        source, target, value = operations.transfer_arguments(from_id, to_id, amount)
        self._run(operations.transfer_cash(source, target, value), (source, target))

    def update_all_prices(self, portfolio_id: UUID, prices: Mapping[str, money.AmountLike]) -> int:
        """Re-price every open position found in ``prices`` (constant statements, one bump)."""
        pid = as_portfolio_id(portfolio_id)
        return self._run(operations.reprice(pid, prices), pid)

    def batch_update(self, updates: Mapping[UUID, Callable[[Portfolio], T]]) -> dict[UUID, T]:
        """Apply one operation per portfolio in one unit of work: all commit or none."""
        return self._run(operations.batch(updates), tuple(updates))

    def metrics(self) -> dict[str, int]:
        """The concurrency service's counters (same keys as get_metrics())."""
        return self.concurrency.get_metrics()
