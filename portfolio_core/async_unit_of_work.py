"""AsyncUnitOfWork: UnitOfWork for asyncio, on asyncpg, with the same semantics.

::

    async with AsyncUnitOfWork(async_engine) as uow:
        portfolio = await uow.portfolios.get(portfolio_id)
        portfolio.deposit(Decimal("100"))
        await uow.commit()

The session is an AsyncSession whose sync side is a PortfolioSession, so the
version bump hook, the flush/stale translation and the COMMIT translation
(``PortfolioSession.commit``) are the sync ones, run on the greenlet-backed
sync side. Leaving the block rolls back what was not committed,
also when the task is cancelled: the connection goes back to the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import TypeVar
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from portfolio_core import store_work
from portfolio_core.concurrency.service import ConcurrencyService, default_service
from portfolio_core.domain.position import Position, PositionRequest
from portfolio_core.persistence.async_repository import AsyncPostgreSQLPortfolioRepository
from portfolio_core.persistence.isolation import IsolationLevel, read_isolation
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository
from portfolio_core.persistence.session import PortfolioSession
from portfolio_core.store_call import StoreCall
from portfolio_core.unit_of_work import UnitOfWorkBase

T = TypeVar("T")


class AsyncUnitOfWork(UnitOfWorkBase[AsyncEngine | AsyncConnection]):
    """A transaction with an AsyncPostgreSQLPortfolioRepository, used with ``async with``.

    Given an AsyncConnection in a transaction of the caller's, it runs in a
    SAVEPOINT of it as UnitOfWork does: ``commit()`` releases it, the caller commits.
    ``isolation`` as in UnitOfWork (an AsyncEngine only).
    """

    _CALLER_CONNECTIONS = (AsyncConnection,)
    portfolios: AsyncPostgreSQLPortfolioRepository
    session: AsyncSession

    async def __aenter__(self) -> AsyncUnitOfWork:
        self._enter_once("an AsyncUnitOfWork")
        self.session = AsyncSession(
            bind=self._bind(),
            sync_session_class=PortfolioSession,
            autoflush=False,
            expire_on_commit=False,
            join_transaction_mode="create_savepoint",  # see UnitOfWork.__enter__
        )
        self.portfolios = AsyncPostgreSQLPortfolioRepository(
            self.session,
            partial(
                open_position_transactional_async,
                _engine_of(self.engine),
                self._service,
                self.isolation,
            ),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.session.rollback()
        finally:
            # close() releases the connection even if the rollback failed (a
            # cancelled query leaves asyncpg mid-protocol: the pool resets or
            # terminates that connection rather than losing it).
            await self.session.close()
            self._active = False

    async def commit(self) -> None:
        """Flush every change (bumping and checking versions), then COMMIT.

        As UnitOfWork.commit: StaleDataException with the versions re-read on
        a conflict; CommitOutcomeUnknownException if the connection died during
        COMMIT itself (never retried blindly).
        """
        await self.session.commit()

    async def rollback(self) -> None:
        """Discard everything not committed."""
        await self.session.rollback()

    async def run_sync(self, function: Callable[[PostgreSQLPortfolioRepository], T]) -> T:
        """Call ``function(sync_repository)`` on this unit of work's session.

        The way to run sync domain code that may lazy-load (closed positions,
        say) against this transaction; see AsyncPostgreSQLPortfolioRepository.
        """
        return await self.portfolios.run_sync(function)


def _engine_of(bind: AsyncEngine | AsyncConnection) -> AsyncEngine:
    """The AsyncEngine behind ``bind`` (own transactions, e.g. open_position_transactional)."""
    return bind.engine if isinstance(bind, AsyncConnection) else bind


async def run_in_own_unit_of_work_async(
    engine: AsyncEngine,
    service: ConcurrencyService | None,
    call: StoreCall[T],
    isolation: IsolationLevel | None = None,
) -> T:
    """``unit_of_work.run_in_own_unit_of_work`` on asyncio: the same call, awaited.

    Each attempt makes one trip to the session's sync side (body and COMMIT).
    """

    level = isolation if call.commit else read_isolation(isolation)  # a read: one snapshot

    async def attempt() -> T:
        async with AsyncUnitOfWork(engine, concurrency_service=service, isolation=level) as uow:
            return await uow.run_sync(call.attempt)

    runner = service or default_service()
    return await runner.run_async(attempt, entity_type="Portfolio", entity_id=call.entity_id)


async def open_position_transactional_async(
    engine: AsyncEngine,
    service: ConcurrencyService | None,
    isolation: IsolationLevel | None,
    portfolio_id: UUID,
    request: PositionRequest,
) -> Position:
    """Open a position in an async unit of work of its own; the position as committed."""
    call = store_work.open_position(portfolio_id, request)
    return await run_in_own_unit_of_work_async(engine, service, call, isolation)
