"""AsyncPostgreSQLPortfolioRepository: the sync repository's methods, awaitable.

Each method runs the *same* PostgreSQLPortfolioRepository method on the
AsyncSession's sync side (``AsyncSession.run_sync``), so the SQL, the
aggregate version bump, the savepoint-guarded lock attempts and the SQLSTATE
translation exist once; asyncpg does the I/O without blocking the event loop.

Objects returned to async code have their open positions loaded, since a lazy
load outside ``run_sync`` cannot do I/O (SQLAlchemy raises MissingGreenlet).
Closed positions come with :meth:`get_snapshot`; for anything else, run sync
code on the aggregate inside :meth:`run_sync`.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast
from uuid import UUID

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from portfolio_core.domain import money
from portfolio_core.domain.events import PortfolioEvent
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position, PositionRequest
from portfolio_core.errors import ValidationError
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository, as_portfolio_id
from portfolio_core.persistence.session import PortfolioSession
from portfolio_core.units import Seconds

T = TypeVar("T")


AsyncOpenPositionTransactional = Callable[[UUID, PositionRequest], Awaitable[Position]]
"""Opens a position in an async unit of work of its own (AsyncUnitOfWork provides one)."""


def _with_positions(portfolio: Portfolio) -> Portfolio:
    """Load the open positions now, while I/O is possible (inside run_sync)."""
    if "_positions" in inspect(portfolio).unloaded:
        portfolio._positions  # noqa: B018 - the attribute access is the lazy load
    return portfolio


class AsyncPostgreSQLPortfolioRepository:
    """Portfolio aggregates in PostgreSQL, within one AsyncUnitOfWork's session."""

    def __init__(
        self,
        session: AsyncSession,
        open_position_transactional: AsyncOpenPositionTransactional | None = None,
    ) -> None:
        if not isinstance(session.sync_session, PortfolioSession):
            raise ValidationError(
                "session",
                session,
                "needs sync_session_class=PortfolioSession (use AsyncUnitOfWork)",
            )
        self.session = session
        self._open_position_transactional = open_position_transactional

    async def run_sync(self, function: Callable[[PostgreSQLPortfolioRepository], T]) -> T:
        """Call ``function(sync_repository)`` where lazy loads and sync domain code may do I/O."""

        def call(session: Session) -> T:
            return function(PostgreSQLPortfolioRepository(cast(PortfolioSession, session)))

        return await self.session.run_sync(call)

    # -- basic access ----------------------------------------------------------

    async def add(self, portfolio: Portfolio) -> None:
        """Stage a new portfolio; it is INSERTed when the unit of work commits."""
        self.session.add(portfolio)

    async def get(self, portfolio_id: UUID) -> Portfolio:
        """The portfolio with this id, open positions loaded."""
        return await self.run_sync(lambda repo: _with_positions(repo.get(portfolio_id)))

    async def get_snapshot(self, portfolio_id: UUID) -> Portfolio:
        """The portfolio with its open and closed positions loaded, ready to detach."""
        return await self.run_sync(lambda repo: repo.get_snapshot(portfolio_id))

    async def list(self) -> Sequence[Portfolio]:
        """Every portfolio, oldest first, open positions loaded."""
        return await self.run_sync(lambda repo: [_with_positions(p) for p in repo.list()])

    async def update_portfolio(self, portfolio: Portfolio) -> Portfolio:
        """Persist a detached copy; StaleDataException if the stored one moved on."""
        return await self.run_sync(lambda repo: _with_positions(repo.update_portfolio(portfolio)))

    # -- audit trail -------------------------------------------------------------

    async def history(
        self, portfolio_id: UUID, since_version: int | None = None
    ) -> builtins.list[PortfolioEvent]:
        """The portfolio's committed events after ``since_version`` (all if None), oldest first."""
        return await self.run_sync(lambda repo: repo.history(portfolio_id, since_version))

    async def replay(self, portfolio_id: UUID, version: int | None = None) -> Portfolio:
        """The portfolio as it stood at ``version`` (default: latest), rebuilt from events alone."""
        return await self.run_sync(lambda repo: repo.replay(portfolio_id, version))

    # -- pessimistic locking ---------------------------------------------------

    async def get_portfolio_for_update(
        self,
        portfolio_id: UUID,
        nowait: bool = True,
        skip_locked: bool = False,
        lock_timeout: Seconds | None = None,
    ) -> Portfolio:
        """``SELECT ... FOR UPDATE [NOWAIT|SKIP LOCKED]``; a failed attempt keeps the UoW usable."""
        return await self.run_sync(
            lambda repo: _with_positions(
                repo.get_portfolio_for_update(
                    portfolio_id, nowait=nowait, skip_locked=skip_locked, lock_timeout=lock_timeout
                )
            )
        )

    async def get_portfolios_for_update(
        self,
        portfolio_ids: Iterable[UUID],
        nowait: bool = False,
        skip_locked: bool = False,
        lock_timeout: Seconds | None = None,
    ) -> builtins.list[Portfolio]:
        """Row-lock several portfolios in primary-key order (the order that cannot deadlock)."""
        ids = builtins.list(portfolio_ids)
        return await self.run_sync(
            lambda repo: [
                _with_positions(p)
                for p in repo.get_portfolios_for_update(
                    ids, nowait=nowait, skip_locked=skip_locked, lock_timeout=lock_timeout
                )
            ]
        )

    # -- single-statement updates ----------------------------------------------

    async def update_portfolio_atomic(
        self, portfolio_id: UUID, fields: Mapping[str, Any], expected_version: int
    ) -> int:
        """UPDATE ``fields`` if the row is at ``expected_version``; return the new version."""
        return await self.run_sync(
            lambda repo: repo.update_portfolio_atomic(portfolio_id, fields, expected_version)
        )

    async def update_all_prices(
        self, portfolio_id: UUID, prices: Mapping[str, money.AmountLike]
    ) -> int:
        """Re-price open positions with a constant number of statements and one version bump."""
        return await self.run_sync(lambda repo: repo.update_all_prices(portfolio_id, prices))

    # -- several portfolios at once ----------------------------------------------

    async def batch_update_portfolios(
        self, updates: Mapping[UUID, Callable[[Portfolio], T]]
    ) -> dict[UUID, T]:
        """Apply one (sync, domain) operation per portfolio in this unit of work: all or nothing."""
        return await self.run_sync(lambda repo: repo.batch_update_portfolios(updates))

    async def open_position_transactional(
        self, portfolio_id: UUID, request: PositionRequest
    ) -> Position:
        """Open a position in its own transaction, retried as a whole on conflicts.

        Forwards to the AsyncUnitOfWork that made this repository
        (``async_unit_of_work.open_position_transactional_async``).
        """
        if self._open_position_transactional is None:
            raise ValidationError(
                "repository", self, "has no unit-of-work runner (create it through AsyncUnitOfWork)"
            )
        return await self._open_position_transactional(as_portfolio_id(portfolio_id), request)
