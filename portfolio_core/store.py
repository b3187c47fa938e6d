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
from typing import Literal, TypeVar
from uuid import UUID

from sqlalchemy import Engine

from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.domain import money
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import ValidationError
from portfolio_core.persistence.repository import as_portfolio_id
from portfolio_core.unit_of_work import UnitOfWork

T = TypeVar("T")

LockMode = Literal["optimistic", "nowait", "wait"]
LOCK_MODES: tuple[LockMode, ...] = ("optimistic", "nowait", "wait")


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

    def create_portfolio(self, name: str, cash_balance: money.AmountLike = 0) -> UUID:
        """Create a portfolio with an opening cash balance; return its id."""
        portfolio = Portfolio(name, cash_balance)

        def work() -> UUID:
            with self.unit_of_work() as uow:
                uow.portfolios.add(portfolio)
                uow.commit()
            return portfolio.id

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=portfolio.id)

    def get(self, portfolio_id: UUID) -> Portfolio:
        """A detached snapshot: the portfolio with its open and closed positions."""
        pid = as_portfolio_id(portfolio_id)

        def work() -> Portfolio:
            with self.unit_of_work() as uow:
                portfolio = uow.portfolios.get_snapshot(pid)
                uow.session.expunge_all()
            return portfolio

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=pid)

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
        ``lock_timeout`` (seconds) bounds the wait for the row lock in
        ``"wait"`` mode; the other modes never wait for a row lock before the
        operation runs.
        """
        pid = as_portfolio_id(portfolio_id)
        if lock not in LOCK_MODES:
            raise ValidationError("lock", lock, f"must be one of {LOCK_MODES}")

        def work() -> T:
            with self.unit_of_work() as uow:
                if lock == "optimistic":
                    portfolio = uow.portfolios.get(pid)
                else:
                    portfolio = uow.portfolios.get_portfolio_for_update(
                        pid, nowait=lock == "nowait", lock_timeout=lock_timeout
                    )
                result = operation(portfolio)
                uow.commit()
            return result

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=pid)

    def transfer(self, from_id: UUID, to_id: UUID, amount: money.AmountLike) -> None:
        """Move cash between two portfolios atomically.

        Both rows are locked in primary-key order, so transfers in opposite
        directions queue up instead of deadlocking.
        """
        source, target = as_portfolio_id(from_id), as_portfolio_id(to_id)
        if source == target:
            raise ValidationError("to_id", to_id, "must differ from from_id")
        value = money.positive(amount, "amount")

        def work() -> None:
            with self.unit_of_work() as uow:
                locked = {
                    p.id: p for p in uow.portfolios.get_portfolios_for_update([source, target])
                }
                locked[source].withdraw(value)
                locked[target].deposit(value)
                uow.commit()

        self.concurrency.run(work, entity_type="Portfolio", entity_id=(source, target))

    def update_all_prices(self, portfolio_id: UUID, prices: Mapping[str, money.AmountLike]) -> int:
        """Re-price every open position found in ``prices`` (constant statements, one bump)."""
        pid = as_portfolio_id(portfolio_id)

        def work() -> int:
            with self.unit_of_work() as uow:
                updated = uow.portfolios.update_all_prices(pid, prices)
                uow.commit()
            return updated

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=pid)

    def batch_update(self, updates: Mapping[UUID, Callable[[Portfolio], T]]) -> dict[UUID, T]:
        """Apply one operation per portfolio in one unit of work: all commit or none."""

        def work() -> dict[UUID, T]:
            with self.unit_of_work() as uow:
                results = uow.portfolios.batch_update_portfolios(updates)
                uow.commit()
            return results

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=tuple(updates))

    def metrics(self) -> dict[str, int]:
        """The concurrency service's counters (same keys as get_metrics())."""
        return self.concurrency.get_metrics()
