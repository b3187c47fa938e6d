"""UnitOfWork: one database transaction around one piece of business work.

::

    with UnitOfWork(engine) as uow:
        portfolio = uow.portfolios.get(portfolio_id)
        portfolio.deposit(Decimal("100"))
        uow.commit()

Nothing is written unless ``commit()`` is called; leaving the block rolls back
whatever was not committed. The session never autoflushes: all writes go out at
``commit()``, where the aggregate versions are bumped (once per portfolio) and
checked, and the audit trail's events are written in the same transaction
(``portfolio_core.persistence.events``). Errors come out translated
(StaleDataException with the version re-read, DeadlockException, ...):
SQLAlchemy's StaleDataError never leaks.

A UnitOfWork does not retry. Retrying means running the whole unit of work
again in a fresh session: that is ``ConcurrencyService.run`` and
``PortfolioStore``'s job, from outside.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from sqlalchemy import Engine

from portfolio_core.errors import PortfolioCoreError
from portfolio_core.persistence.mapping import PortfolioSession
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository

if TYPE_CHECKING:
    from portfolio_core.concurrency.service import ConcurrencyService

T = TypeVar("T")


class UnitOfWork:
    """A transaction with a PostgreSQLPortfolioRepository, used as a context manager."""

    portfolios: PostgreSQLPortfolioRepository
    session: PortfolioSession

    def __init__(
        self, engine: Engine, *, concurrency_service: ConcurrencyService | None = None
    ) -> None:
        self.engine = engine
        self._service = concurrency_service
        self._active = False

    def __enter__(self) -> UnitOfWork:
        if self._active:
            raise PortfolioCoreError("a UnitOfWork cannot be entered twice at once")
        self.session = PortfolioSession(bind=self.engine, autoflush=False, expire_on_commit=False)
        self.portfolios = PostgreSQLPortfolioRepository(self.session, self._run_in_new_unit_of_work)
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()
            self._active = False

    def commit(self) -> None:
        """Flush every change (bumping and checking versions), write the events, then COMMIT.

        A failure while flushing is definite (nothing committed). A connection
        lost while COMMIT itself was in flight raises CommitOutcomeUnknownException:
        the transaction may have committed, so it must not be retried blindly.
        """
        self.session.commit()

    def rollback(self) -> None:
        """Discard everything not committed."""
        self.session.rollback()

    def _run_in_new_unit_of_work(
        self, work: Callable[[PostgreSQLPortfolioRepository], T], entity_id: UUID
    ) -> T:
        from portfolio_core.concurrency.service import default_service

        service = self._service or default_service()

        def attempt() -> T:
            with UnitOfWork(self.engine, concurrency_service=self._service) as uow:
                result = work(uow.portfolios)
                uow.commit()
                return result

        return service.run(attempt, entity_type="Portfolio", entity_id=entity_id)
