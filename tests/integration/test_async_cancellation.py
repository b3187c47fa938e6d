"""Cancelling a task in the middle of an async unit of work: rolled back, no connection leaked."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import AsyncPortfolioStore
from tests.integration.helpers import wait_until_blocked

pytestmark = pytest.mark.asyncio

_OPEN_TRANSACTIONS = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
)


async def test_cancel_after_flush_rolls_back_and_returns_the_connection(
    async_engine: AsyncEngine,
) -> None:
    store = AsyncPortfolioStore(async_engine)
    pid = await store.create_portfolio("alpha", Decimal("100"))
    flushed, never = asyncio.Event(), asyncio.Event()

    async def deposit_then_hang() -> None:
        async with store.unit_of_work() as uow:
            (await uow.portfolios.get_portfolio_for_update(pid)).deposit(Decimal("5"))
            await uow.session.flush()
            flushed.set()
            await never.wait()
            await uow.commit()

    task = asyncio.create_task(deposit_then_hang())
    await flushed.wait()
    assert async_engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert async_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    snapshot = await store.get(pid)
    assert (snapshot.cash_balance, snapshot.version) == (Decimal("100"), 1)


async def test_cancel_while_waiting_on_a_row_lock_rolls_back_and_leaks_nothing(
    async_engine: AsyncEngine, engine: Engine
) -> None:
    store = AsyncPortfolioStore(async_engine)
    pid = await store.create_portfolio("alpha", Decimal("100"))
    holder = await async_engine.connect()
    await holder.execute(text("SELECT 1 FROM portfolios WHERE id = :id FOR UPDATE"), {"id": pid})

    task = asyncio.create_task(
        store.execute(pid, lambda p: p.deposit(Decimal("5")), lock="wait"),
    )
    # Polled from a thread so that the event loop is not blocked meanwhile.
    await asyncio.to_thread(wait_until_blocked, engine)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await holder.rollback()
    await holder.close()

    assert async_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with async_engine.connect() as connection:
        assert await connection.scalar(_OPEN_TRANSACTIONS) == 0
    await store.execute(pid, lambda p: p.deposit(Decimal("1")), lock="nowait")
    snapshot = await store.get(pid)
    assert (snapshot.cash_balance, snapshot.version) == (Decimal("101"), 2)
