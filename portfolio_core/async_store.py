"""AsyncPortfolioStore: PortfolioStore for asyncio services, with the same guarantees.

::

    store = AsyncPortfolioStore(create_async_engine())
    pid = await store.create_portfolio("alpha", Decimal("10000"))
    await store.execute(pid, lambda p: p.deposit(Decimal("250")), lock="wait")

Each method is one AsyncUnitOfWork running the same unit-of-work body as
PortfolioStore (portfolio_core.operations) on the session's sync side, retried
as a whole by ``ConcurrencyService.run_async`` (same classification, metrics
and exhaustion errors as the sync store). ``operation`` callables are plain
sync functions of the portfolio, as in PortfolioStore.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import operations
from portfolio_core.async_unit_of_work import AsyncUnitOfWork
from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.domain import money
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import ConfigurationError
from portfolio_core.operations import LockMode
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository, as_portfolio_id
from portfolio_core.unit_of_work import commit_session

T = TypeVar("T")


class AsyncPortfolioStore:
    """Create, read and change portfolios from asyncio code: PortfolioStore's API, awaitable.

    ``lock`` modes as in PortfolioStore. Share one store (and its engine's
    pool) between all the tasks of a service; tasks beyond the pool size wait
    for a connection.
    """

    def __init__(
        self, engine: AsyncEngine, concurrency_service: ConcurrencyService | None = None
    ) -> None:
        self.engine = engine
        if concurrency_service is None:
            concurrency_service = ConcurrencyService(async_engine=engine)
        elif concurrency_service.async_engine is None:
            concurrency_service.async_engine = engine
        elif concurrency_service.async_engine is not engine:
            raise ConfigurationError("the concurrency service is bound to another AsyncEngine")
        self.concurrency = concurrency_service

    def unit_of_work(self) -> AsyncUnitOfWork:
        """A new AsyncUnitOfWork on this store's engine and concurrency service."""
        return AsyncUnitOfWork(self.engine, concurrency_service=self.concurrency)

    async def _run(
        self,
        body: Callable[[PostgreSQLPortfolioRepository], T],
        entity_id: object,
        *,
        commit: bool = True,
    ) -> T:
        """Run ``body`` in an AsyncUnitOfWork (committed), retried as a whole per the policy."""

        def body_then_commit(repository: PostgreSQLPortfolioRepository) -> T:
            # One trip to the sync side per attempt, not two.
            result = body(repository)
            if commit:
                commit_session(repository.session)
            return result

        async def work() -> T:
            async with self.unit_of_work() as uow:
                return await uow.run_sync(body_then_commit)

        return await self.concurrency.run_async(work, entity_type="Portfolio", entity_id=entity_id)

    async def create_portfolio(self, name: str, cash_balance: money.AmountLike = 0) -> UUID:
        """Create a portfolio with an opening cash balance; return its id."""
        portfolio = Portfolio(name, cash_balance)

        def body(repository: PostgreSQLPortfolioRepository) -> UUID:
            repository.add(portfolio)
            return portfolio.id

        return await self._run(body, portfolio.id)

    async def get(self, portfolio_id: UUID) -> Portfolio:
        """A detached snapshot: the portfolio with its open and closed positions."""
        pid = as_portfolio_id(portfolio_id)
        return await self._run(
            lambda repository: operations.detached_snapshot(repository, pid), pid, commit=False
        )

    async def execute(
        self,
        portfolio_id: UUID,
        operation: Callable[[Portfolio], T],
        *,
        lock: LockMode = "optimistic",
        lock_timeout: float | None = None,  # float-ok: seconds
    ) -> T:
        """Run ``operation(portfolio)`` in a unit of work, commit, and return its result.

        ``operation`` is a sync function (domain calls); it runs where lazy
        loads may do I/O, and is called again on each retry.
        """
        pid = as_portfolio_id(portfolio_id)
        mode = operations.checked_lock_mode(lock)
        return await self._run(operations.apply_operation(pid, operation, mode, lock_timeout), pid)

    async def transfer(self, from_id: UUID, to_id: UUID, amount: money.AmountLike) -> None:
        """Move cash between two portfolios atomically (rows locked in primary-key order)."""
        source, target, value = operations.transfer_arguments(from_id, to_id, amount)
        await self._run(operations.transfer_cash(source, target, value), (source, target))

    async def update_all_prices(
        self, portfolio_id: UUID, prices: Mapping[str, money.AmountLike]
    ) -> int:
        """Re-price every open position found in ``prices`` (constant statements, one bump)."""
        pid = as_portfolio_id(portfolio_id)
        return await self._run(operations.reprice(pid, prices), pid)

    async def batch_update(self, updates: Mapping[UUID, Callable[[Portfolio], T]]) -> dict[UUID, T]:
        """Apply one operation per portfolio in one unit of work: all commit or none."""
        return await self._run(operations.batch(updates), tuple(updates))

    def metrics(self) -> dict[str, int]:
        """The concurrency service's counters (same keys as get_metrics()); no I/O, not awaited."""
        return self.concurrency.get_metrics()
