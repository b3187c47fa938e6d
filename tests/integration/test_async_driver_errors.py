"""What only the async side can get wrong: asyncpg's errors, lost connections, advisory locks."""

from __future__ import annotations

import socket
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import (
    AsyncPortfolioStore,
    AsyncUnitOfWork,
    CommitOutcomeUnknownException,
    ConcurrencyService,
    ConfigurationError,
    ConnectionLostError,
    DatabaseConnectionError,
    PessimisticLockException,
    create_async_engine,
)
from portfolio_core.persistence.errors import Failure, classify
from portfolio_core.persistence.session import write_events

pytestmark = pytest.mark.asyncio


async def _backend_pid(uow: AsyncUnitOfWork) -> int:
    pid = await uow.session.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


def _terminate(engine: Engine, backend_pid: int) -> None:
    """Kill a backend and wait (server-side, up to 10 s) until it is gone."""
    with engine.connect() as connection:
        assert connection.execute(
            text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": backend_pid}
        ).scalar_one()


async def test_asyncpg_lock_errors_are_dbapi_errors_classified_by_sqlstate(
    async_engine: AsyncEngine, engine: Engine
) -> None:
    store = AsyncPortfolioStore(async_engine)
    pid = await store.create_portfolio("alpha", Decimal("1"))

    with engine.connect() as holder, holder.begin():
        holder.execute(text("SELECT 1 FROM portfolios WHERE id = :id FOR UPDATE"), {"id": pid})
        async with store.unit_of_work() as uow:
            with pytest.raises(PessimisticLockException) as raised:
                await uow.portfolios.get_portfolio_for_update(pid)

    cause = raised.value.__cause__
    assert isinstance(cause, DBAPIError)
    assert not isinstance(cause, OperationalError)  # unlike psycopg2: SQLSTATE is what counts
    assert getattr(cause.orig, "sqlstate", None) == "55P03"
    assert classify(cause) is Failure.LOCK_NOT_AVAILABLE


async def test_connection_killed_before_commit_is_retried_transparently(
    async_engine: AsyncEngine, engine: Engine
) -> None:
    service = ConcurrencyService(async_engine, max_retries=2, sleep=lambda _: None)
    store = AsyncPortfolioStore(async_engine, service)
    pid = await store.create_portfolio("alpha", Decimal("100"))
    attempts = 0

    async def deposit_losing_the_first_connection() -> None:
        nonlocal attempts
        attempts += 1
        async with store.unit_of_work() as uow:
            (await uow.portfolios.get(pid)).deposit(Decimal("5"))
            if attempts == 1:
                _terminate(engine, await _backend_pid(uow))
            await uow.commit()

    await service.run_async(deposit_losing_the_first_connection, entity_id=pid)

    assert attempts == 2
    assert (await store.get(pid)).cash_balance == Decimal("105")
    assert service.get_metrics()["successful_retries"] == 1


async def test_connection_lost_during_commit_is_outcome_unknown_and_not_retried(
    async_engine: AsyncEngine, engine: Engine
) -> None:
    service = ConcurrencyService(async_engine, max_retries=3, sleep=lambda _: None)
    store = AsyncPortfolioStore(async_engine, service)
    pid = await store.create_portfolio("alpha", Decimal("100"))
    attempts = 0

    async def lose_the_connection_at_commit() -> None:
        nonlocal attempts
        attempts += 1
        async with store.unit_of_work() as uow:
            (await uow.portfolios.get(pid)).deposit(Decimal("5"))
            # Flushed and audit events written: all that is left for commit() is COMMIT.
            await uow.session.run_sync(write_events)
            _terminate(engine, await _backend_pid(uow))
            await uow.commit()

    with pytest.raises(CommitOutcomeUnknownException):
        await service.run_async(lose_the_connection_at_commit, entity_id=pid)

    assert attempts == 1
    assert async_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_unreachable_server_is_a_lost_connection_retried_then_reported() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    # Nothing listens on that port any more: every connection attempt is refused.
    engine = create_async_engine(f"postgresql://postgres@127.0.0.1:{port}/nowhere")
    service = ConcurrencyService(engine, max_retries=2, sleep=lambda _: None)
    try:
        with pytest.raises(DatabaseConnectionError) as raised:
            await AsyncPortfolioStore(engine, service).get(UUID(int=1))
    finally:
        await engine.dispose()

    assert raised.value.attempts == 3
    assert isinstance(raised.value.__cause__, ConnectionLostError)


async def test_async_entity_lock_excludes_other_holders_until_released(
    async_engine: AsyncEngine, engine: Engine
) -> None:
    service = ConcurrencyService(async_engine)
    other = ConcurrencyService(engine)
    entity = UUID(int=7)

    async with service.async_entity_lock("Portfolio", entity, timeout=0.05):
        with (
            pytest.raises(PessimisticLockException),
            other.entity_lock("Portfolio", entity, timeout=0),
        ):
            pass
    with other.entity_lock("Portfolio", entity, timeout=0):
        pass

    assert service.get_metrics()["lock_timeouts"] == 0
    assert other.get_metrics()["lock_timeouts"] == 1


async def test_async_entity_lock_joins_the_unit_of_work_transaction(
    async_engine: AsyncEngine, engine: Engine
) -> None:
    service = ConcurrencyService(async_engine)
    other = ConcurrencyService(engine)
    store = AsyncPortfolioStore(async_engine, service)
    pid = await store.create_portfolio("alpha", Decimal("1"))

    async with store.unit_of_work() as uow:
        (await uow.portfolios.get(pid)).deposit(Decimal("1"))
        async with service.async_entity_lock("Portfolio", pid, session=uow.session):
            pass
        # Still held: the lock lives as long as the unit of work's transaction.
        with (
            pytest.raises(PessimisticLockException),
            other.entity_lock("Portfolio", pid, timeout=0),
        ):
            pass
        await uow.commit()

    with other.entity_lock("Portfolio", pid, timeout=0):
        pass
    assert (await store.get(pid)).cash_balance == Decimal("2")


async def test_async_entity_lock_not_obtained_leaves_the_unit_of_work_usable(
    async_engine: AsyncEngine, engine: Engine
) -> None:
    service = ConcurrencyService(async_engine)
    store = AsyncPortfolioStore(async_engine, service)
    pid = await store.create_portfolio("alpha", Decimal("1"))

    with ConcurrencyService(engine).entity_lock("Portfolio", pid):
        async with store.unit_of_work() as uow:
            (await uow.portfolios.get(pid)).deposit(Decimal("1"))
            with pytest.raises(PessimisticLockException) as raised:
                async with service.async_entity_lock(
                    "Portfolio", pid, timeout=0.05, session=uow.session
                ):
                    pass
            await uow.commit()

    assert raised.value.timeout == 0.05
    assert service.get_metrics()["lock_timeouts"] == 1
    assert (await store.get(pid)).cash_balance == Decimal("2")


async def test_async_entity_lock_without_session_needs_an_async_engine(engine: Engine) -> None:
    with pytest.raises(ConfigurationError):
        async with ConcurrencyService(engine).async_entity_lock("Portfolio", 1):
            pass
