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
again in a fresh session, from outside: :func:`run_in_own_unit_of_work` does
it for PortfolioStore and for the repository's ``open_position_transactional``
(:func:`open_position_transactional`), with ``ConcurrencyService.run``.
"""

from __future__ import annotations

from functools import partial
from types import TracebackType
from typing import ClassVar, Generic, TypeVar
from uuid import UUID

from sqlalchemy import Connection, Engine

from portfolio_core import store_work
from portfolio_core.concurrency.service import ConcurrencyService, default_service
from portfolio_core.domain.position import Position, PositionRequest
from portfolio_core.errors import ConfigurationError, PortfolioCoreError
from portfolio_core.persistence.isolation import (
    IsolationLevel,
    bind_with_isolation,
    checked_isolation,
    read_isolation,
)
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository
from portfolio_core.persistence.session import PortfolioSession
from portfolio_core.store_call import StoreCall

T = TypeVar("T")
EngineT = TypeVar("EngineT")


class UnitOfWorkBase(Generic[EngineT]):
    """What UnitOfWork and AsyncUnitOfWork share: an engine, a concurrency service, one entry.

    ``isolation`` ("read committed", "repeatable read", "serializable"; None:
    the engine's own level) applies to this unit of work's transaction only.
    It needs an engine: on a caller's connection the transaction, and so its
    level, is the caller's (ConfigurationError, before any SQL).
    """

    _CALLER_CONNECTIONS: ClassVar[tuple[type, ...]] = ()
    """Bind types that are a caller's connection: the unit of work runs in its savepoint."""

    def __init__(
        self,
        engine: EngineT,
        *,
        concurrency_service: ConcurrencyService | None = None,
        isolation: IsolationLevel | None = None,
    ) -> None:
        self.engine = engine
        self.isolation = checked_isolation(isolation)
        if self.isolation is not None and isinstance(engine, self._CALLER_CONNECTIONS):
            # The caller's transaction has begun (or will, at its own level):
            # a SAVEPOINT can not change it, and silently running at another
            # level than asked would hide anomalies the caller meant to exclude.
            raise ConfigurationError(
                "isolation= needs an engine (a unit of work owning its transaction); on a "
                "caller's connection begin the transaction at that level instead, e.g. "
                "engine.execution_options(isolation_level='SERIALIZABLE').begin()"
            )
        self._service = concurrency_service
        self._active = False

    def _bind(self) -> EngineT:
        """What the session binds to: the engine at this unit of work's level, or the caller's."""
        if self.isolation is None:
            return self.engine
        return bind_with_isolation(self.engine, self.isolation)  # type: ignore[type-var]

    def _enter_once(self, name: str) -> None:
        """Mark the unit of work entered; PortfolioCoreError if it already is."""
        if self._active:
            raise PortfolioCoreError(f"{name} cannot be entered twice at once")
        self._active = True


class UnitOfWork(UnitOfWorkBase[Engine | Connection]):
    """A transaction with a PostgreSQLPortfolioRepository, used as a context manager.

    Given an Engine, it owns its transaction. Given a Connection in a
    transaction of the caller's (``with engine.begin() as conn:
    UnitOfWork(conn)``), it runs in a SAVEPOINT of it: ``commit()`` writes the
    version bump, the events and the idempotency keys and releases the
    savepoint, committing nothing; leaving without ``commit()`` (or on an
    error) rolls back to the savepoint only. The caller's block commits or
    rolls back the app's rows and the portfolio change together. A conflict
    surfaces to the caller, whose transaction it is to retry. ``isolation``
    is for an Engine only: the caller's transaction keeps the caller's level.
    """

    _CALLER_CONNECTIONS = (Connection,)
    portfolios: PostgreSQLPortfolioRepository
    session: PortfolioSession

    def __enter__(self) -> UnitOfWork:
        self._enter_once("a UnitOfWork")
        # On a caller's Connection: a SAVEPOINT of the caller's transaction,
        # so that leaving without commit() undoes only this unit of work.
        self.session = PortfolioSession(
            bind=self._bind(),
            autoflush=False,
            expire_on_commit=False,
            join_transaction_mode="create_savepoint",
        )
        self.portfolios = PostgreSQLPortfolioRepository(
            self.session,
            partial(
                open_position_transactional, _engine_of(self.engine), self._service, self.isolation
            ),
        )
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


def _engine_of(bind: Engine | Connection) -> Engine:
    """The Engine behind ``bind`` (own transactions, e.g. open_position_transactional)."""
    return bind.engine if isinstance(bind, Connection) else bind


def run_in_own_unit_of_work(
    engine: Engine,
    service: ConcurrencyService | None,
    call: StoreCall[T],
    isolation: IsolationLevel | None = None,
) -> T:
    """Run ``call`` in a fresh UnitOfWork, retried as a whole by ``service``.

    Committed unless the call is a read. ``service`` None: the process-wide
    default service (its policy and metrics).
    """

    level = isolation if call.commit else read_isolation(isolation)  # a read: one snapshot

    def attempt() -> T:
        with UnitOfWork(engine, concurrency_service=service, isolation=level) as uow:
            return call.attempt(uow.portfolios)

    runner = service or default_service()
    return runner.run(attempt, entity_type="Portfolio", entity_id=call.entity_id)


def open_position_transactional(
    engine: Engine,
    service: ConcurrencyService | None,
    isolation: IsolationLevel | None,
    portfolio_id: UUID,
    request: PositionRequest,
) -> Position:
    """Open a position in a unit of work of its own; the position as committed (detached)."""
    call = store_work.open_position(portfolio_id, request)
    return run_in_own_unit_of_work(engine, service, call, isolation)
