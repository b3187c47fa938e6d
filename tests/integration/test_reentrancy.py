"""A store call nested in one on the same portfolio fails at once; "wait" has a default bound."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import (
    AsyncPortfolioStore,
    ConcurrencyService,
    PessimisticLockException,
    Portfolio,
    PortfolioStore,
    ReentrantUnitOfWorkError,
    RetryPolicy,
)


def test_a_nested_wait_execute_on_the_same_portfolio_raises_at_once(
    store: PortfolioStore,
) -> None:
    pid = store.create_portfolio("alpha", Decimal(100))

    def outer(portfolio: Portfolio) -> None:
        portfolio.deposit(1)
        # lock_timeout only so that code without the check fails instead of hanging.
        store.execute(pid, lambda p: p.deposit(2), lock="wait", lock_timeout=5)

    with pytest.raises(ReentrantUnitOfWorkError) as raised:
        store.execute(pid, outer, lock="wait")

    assert raised.value.portfolio_id == pid
    assert store.get(pid).cash_balance == Decimal(100)
    assert store.metrics()["successful_retries"] == 0


def test_nested_calls_on_other_portfolios_and_reads_still_work(store: PortfolioStore) -> None:
    first = store.create_portfolio("alpha", Decimal(100))
    second = store.create_portfolio("beta", Decimal(100))

    def outer(portfolio: Portfolio) -> Decimal:
        store.execute(second, lambda p: p.deposit(5), lock="wait")
        portfolio.deposit(1)
        return store.get(first).cash_balance

    assert store.execute(first, outer, lock="wait") == Decimal(100)
    assert store.get(first).cash_balance == Decimal(101)
    assert store.get(second).cash_balance == Decimal(105)
    # The marks are gone once the call returned: the same portfolio is free again.
    store.execute(first, lambda p: p.deposit(1), lock="wait")


@pytest.mark.asyncio
async def test_a_sync_call_nested_in_an_async_execute_is_refused(
    async_engine: AsyncEngine, store: PortfolioStore
) -> None:
    pid = store.create_portfolio("alpha", Decimal(100))
    async_store = AsyncPortfolioStore(async_engine)

    def outer(portfolio: Portfolio) -> None:
        store.execute(pid, lambda p: p.deposit(2), lock="wait", lock_timeout=5)

    with pytest.raises(ReentrantUnitOfWorkError):
        await async_store.execute(pid, outer, lock="wait")
    assert store.get(pid).cash_balance == Decimal(100)


def test_wait_mode_is_bounded_by_the_policy_default(store: PortfolioStore, engine: Engine) -> None:
    assert RetryPolicy().wait_lock_timeout == 30.0
    pid = store.create_portfolio("alpha", Decimal(100))
    bounded = PortfolioStore(
        engine,
        ConcurrencyService(
            engine, policy=RetryPolicy(wait_lock_timeout=0.2, retry_lock_not_available=False)
        ),
    )

    with engine.begin() as holder:  # holds the row lock until the assertion is done
        holder.execute(text("SELECT 1 FROM portfolios WHERE id = :p FOR UPDATE"), {"p": pid})
        with pytest.raises(PessimisticLockException):
            bounded.execute(pid, lambda p: p.deposit(1), lock="wait")

    assert store.get(pid).cash_balance == Decimal(100)
