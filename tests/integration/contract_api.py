"""One awaitable API over the sync and the async library, for the shared contract tests.

The async flavour IS the library's async API (AsyncPortfolioStore,
AsyncUnitOfWork, ConcurrencyService.run_async): no adapter. The sync flavour
wraps PortfolioStore/UnitOfWork in coroutines that never suspend: each call
runs the sync library directly, and a retried unit of work is driven
synchronously inside ``ConcurrencyService.run`` (see :func:`drive`).
"""

from __future__ import annotations

import builtins
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast
from uuid import UUID

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from portfolio_core import (
    AsyncPortfolioStore,
    AsyncUnitOfWork,
    ConcurrencyService,
    Portfolio,
    PortfolioEvent,
    PortfolioStore,
    Position,
    PositionRequest,
    PostgreSQLPortfolioRepository,
    UnitOfWork,
    create_async_engine,
    create_engine,
)
from portfolio_core.domain.money import AmountLike
from portfolio_core.persistence.events import write_events
from portfolio_core.store_work import LockMode
from portfolio_core.units import Seconds

T = TypeVar("T")


class ContractRepository(Protocol):
    """The repository API both flavours offer (awaitable)."""

    async def add(self, portfolio: Portfolio) -> None: ...
    async def get(self, portfolio_id: UUID) -> Portfolio: ...
    async def get_snapshot(self, portfolio_id: UUID) -> Portfolio: ...
    async def list(self) -> Sequence[Portfolio]: ...
    async def update_portfolio(self, portfolio: Portfolio) -> Portfolio: ...
    async def get_portfolio_for_update(
        self,
        portfolio_id: UUID,
        nowait: bool = True,
        skip_locked: bool = False,
        lock_timeout: Seconds | None = None,
    ) -> Portfolio: ...
    async def get_portfolios_for_update(
        self,
        portfolio_ids: Iterable[UUID],
        nowait: bool = False,
        skip_locked: bool = False,
        lock_timeout: Seconds | None = None,
    ) -> builtins.list[Portfolio]: ...
    async def update_portfolio_atomic(
        self, portfolio_id: UUID, fields: Mapping[str, Any], expected_version: int
    ) -> int: ...
    async def update_all_prices(
        self, portfolio_id: UUID, prices: Mapping[str, AmountLike]
    ) -> int: ...
    async def batch_update_portfolios(
        self, updates: Mapping[UUID, Callable[[Portfolio], T]]
    ) -> dict[UUID, T]: ...
    async def open_position_transactional(
        self, portfolio_id: UUID, request: PositionRequest
    ) -> Position: ...


class ContractUnitOfWork(Protocol):
    """A unit of work used with ``async with`` in both flavours."""

    @property
    def portfolios(self) -> ContractRepository: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    async def __aenter__(self) -> ContractUnitOfWork: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class ContractStore(Protocol):
    """PortfolioStore's API, awaitable."""

    def unit_of_work(self) -> ContractUnitOfWork: ...
    async def create_portfolio(self, name: str, cash_balance: AmountLike = 0) -> UUID: ...
    async def get(self, portfolio_id: UUID) -> Portfolio: ...
    async def execute(
        self,
        portfolio_id: UUID,
        operation: Callable[[Portfolio], T],
        *,
        lock: LockMode = "optimistic",
        lock_timeout: Seconds | None = None,
        idempotency_key: str | None = None,
    ) -> T: ...
    async def transfer(
        self,
        from_id: UUID,
        to_id: UUID,
        amount: AmountLike,
        *,
        idempotency_key: str | None = None,
    ) -> None: ...
    async def update_all_prices(
        self,
        portfolio_id: UUID,
        prices: Mapping[str, AmountLike],
        *,
        idempotency_key: str | None = None,
    ) -> int: ...
    async def history(
        self, portfolio_id: UUID, since_version: int | None = None
    ) -> list[PortfolioEvent]: ...
    async def replay(self, portfolio_id: UUID, version: int | None = None) -> Portfolio: ...
    async def batch_update(
        self, updates: Mapping[UUID, Callable[[Portfolio], T]]
    ) -> dict[UUID, T]: ...
    def metrics(self) -> dict[str, int]: ...


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to completion, with no event loop.

    The sync flavour's coroutines only call the sync library, so they finish
    at the first ``send``; one that suspends would be a bug in this adapter.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a sync-flavour coroutine suspended: it awaited real async work")


class SyncRepository:
    """PostgreSQLPortfolioRepository's methods as coroutines that never suspend."""

    def __init__(self, repository: PostgreSQLPortfolioRepository) -> None:
        self._repository = repository

    async def add(self, portfolio: Portfolio) -> None:
        self._repository.add(portfolio)

    async def get(self, portfolio_id: UUID) -> Portfolio:
        return self._repository.get(portfolio_id)

    async def get_snapshot(self, portfolio_id: UUID) -> Portfolio:
        return self._repository.get_snapshot(portfolio_id)

    async def list(self) -> Sequence[Portfolio]:
        return self._repository.list()

    async def update_portfolio(self, portfolio: Portfolio) -> Portfolio:
        return self._repository.update_portfolio(portfolio)

    async def get_portfolio_for_update(
        self,
        portfolio_id: UUID,
        nowait: bool = True,
        skip_locked: bool = False,
        lock_timeout: Seconds | None = None,
    ) -> Portfolio:
        return self._repository.get_portfolio_for_update(
            portfolio_id, nowait=nowait, skip_locked=skip_locked, lock_timeout=lock_timeout
        )

    async def get_portfolios_for_update(
        self,
        portfolio_ids: Iterable[UUID],
        nowait: bool = False,
        skip_locked: bool = False,
        lock_timeout: Seconds | None = None,
    ) -> builtins.list[Portfolio]:
        return self._repository.get_portfolios_for_update(
            portfolio_ids, nowait=nowait, skip_locked=skip_locked, lock_timeout=lock_timeout
        )

    async def update_portfolio_atomic(
        self, portfolio_id: UUID, fields: Mapping[str, Any], expected_version: int
    ) -> int:
        return self._repository.update_portfolio_atomic(portfolio_id, fields, expected_version)

    async def update_all_prices(self, portfolio_id: UUID, prices: Mapping[str, AmountLike]) -> int:
        return self._repository.update_all_prices(portfolio_id, prices)

    async def batch_update_portfolios(
        self, updates: Mapping[UUID, Callable[[Portfolio], T]]
    ) -> dict[UUID, T]:
        return self._repository.batch_update_portfolios(updates)

    async def open_position_transactional(
        self, portfolio_id: UUID, request: PositionRequest
    ) -> Position:
        return self._repository.open_position_transactional(portfolio_id, request)


class SyncUnitOfWork:
    """UnitOfWork behind ``async with``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._portfolios: SyncRepository | None = None

    @property
    def portfolios(self) -> SyncRepository:
        assert self._portfolios is not None, "enter the unit of work first"
        return self._portfolios

    @property
    def session(self) -> Session:
        """The wrapped unit of work's session."""
        return self._uow.session

    async def commit(self) -> None:
        self._uow.commit()

    async def rollback(self) -> None:
        self._uow.rollback()

    async def __aenter__(self) -> SyncUnitOfWork:
        self._portfolios = SyncRepository(self._uow.__enter__().portfolios)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._uow.__exit__(exc_type, exc, traceback)


class SyncStore:
    """PortfolioStore behind coroutines."""

    def __init__(self, store: PortfolioStore) -> None:
        self._store = store

    def unit_of_work(self) -> SyncUnitOfWork:
        return SyncUnitOfWork(self._store.unit_of_work())

    async def create_portfolio(self, name: str, cash_balance: AmountLike = 0) -> UUID:
        return self._store.create_portfolio(name, cash_balance)

    async def get(self, portfolio_id: UUID) -> Portfolio:
        return self._store.get(portfolio_id)

    async def execute(
        self,
        portfolio_id: UUID,
        operation: Callable[[Portfolio], T],
        *,
        lock: LockMode = "optimistic",
        lock_timeout: Seconds | None = None,
        idempotency_key: str | None = None,
    ) -> T:
        return self._store.execute(
            portfolio_id,
            operation,
            lock=lock,
            lock_timeout=lock_timeout,
            idempotency_key=idempotency_key,
        )

    async def transfer(
        self,
        from_id: UUID,
        to_id: UUID,
        amount: AmountLike,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        self._store.transfer(from_id, to_id, amount, idempotency_key=idempotency_key)

    async def update_all_prices(
        self,
        portfolio_id: UUID,
        prices: Mapping[str, AmountLike],
        *,
        idempotency_key: str | None = None,
    ) -> int:
        return self._store.update_all_prices(portfolio_id, prices, idempotency_key=idempotency_key)

    async def history(
        self, portfolio_id: UUID, since_version: int | None = None
    ) -> list[PortfolioEvent]:
        return self._store.history(portfolio_id, since_version)

    async def replay(self, portfolio_id: UUID, version: int | None = None) -> Portfolio:
        return self._store.replay(portfolio_id, version)

    async def batch_update(self, updates: Mapping[UUID, Callable[[Portfolio], T]]) -> dict[UUID, T]:
        return self._store.batch_update(updates)

    def metrics(self) -> dict[str, int]:
        return self._store.metrics()


class Flavour:
    """One flavour of the library (``sync`` or ``async``) under the contract's API."""

    def __init__(
        self,
        name: str,
        store: SyncStore | AsyncPortfolioStore,
        service: ConcurrencyService,
        engine: Engine | AsyncEngine | None = None,
    ) -> None:
        self.name = name
        self.store: ContractStore = store
        self.service = service
        self.engine = engine

    def connections_checked_out(self) -> int:
        """How many of the engine's pooled connections are in use right now."""
        assert self.engine is not None, "this flavour was built without its engine"
        pool = self.engine.pool if isinstance(self.engine, Engine) else self.engine.sync_engine.pool
        assert isinstance(pool, QueuePool), "create_engine / create_async_engine pool"
        return pool.checkedout()

    async def write_pending_events(self, uow: ContractUnitOfWork) -> None:
        """Flush and write the audit events now, so that commit() has only COMMIT left to send."""
        if isinstance(uow, SyncUnitOfWork):
            write_events(uow.session)
            return
        assert isinstance(uow, AsyncUnitOfWork)
        await uow.session.run_sync(write_events)

    async def retried(self, work: Callable[[], Awaitable[T]], entity_id: object = None) -> T:
        """Run a whole unit of work under the service's retry policy (run / run_async)."""
        if self.name == "async":
            return await self.service.run_async(work, entity_id=entity_id)

        def attempt() -> T:
            awaitable = work()
            assert isinstance(awaitable, Coroutine)
            return drive(cast("Coroutine[Any, Any, T]", awaitable))

        return self.service.run(attempt, entity_id=entity_id)

    async def scalar(self, uow: ContractUnitOfWork, sql: str) -> Any:
        """One value of raw SQL run in the unit of work's own transaction."""
        if isinstance(uow, SyncUnitOfWork):
            return uow.session.execute(text(sql)).scalar_one()
        assert isinstance(uow, AsyncUnitOfWork)
        return (await uow.session.execute(text(sql))).scalar_one()

    def entity_lock(
        self,
        entity_type: str,
        entity_id: object,
        *,
        timeout: Seconds | None = None,
        uow: ContractUnitOfWork | None = None,
    ) -> AbstractAsyncContextManager[None]:
        """The service's advisory entity lock (entity_lock / async_entity_lock) for ``async with``.

        With ``uow`` the lock joins that unit of work's transaction.
        """
        if self.name == "async":
            session = None
            if uow is not None:
                assert isinstance(uow, AsyncUnitOfWork)
                session = uow.session
            return self.service.async_entity_lock(
                entity_type, entity_id, timeout=timeout, session=session
            )
        sync_session = None
        if uow is not None:
            assert isinstance(uow, SyncUnitOfWork)
            sync_session = uow.session
        return _held(
            self.service.entity_lock(entity_type, entity_id, timeout=timeout, session=sync_session)
        )


@asynccontextmanager
async def _held(lock: AbstractContextManager[None]) -> AsyncIterator[None]:
    with lock:
        yield


FLAVOURS = ("sync", "async")


@asynccontextmanager
async def open_flavour(
    name: str,
    url: str | URL,
    sleep: Callable[[Seconds], None],
    *,
    max_retries: int = 5,
    **engine_options: Any,
) -> AsyncIterator[Flavour]:
    """The library in flavour ``name`` on a new engine to ``url``, disposed afterwards."""
    if name == "sync":
        engine = create_engine(url, **engine_options)
        service = ConcurrencyService(engine, max_retries=max_retries, sleep=sleep)
        try:
            yield Flavour(name, SyncStore(PortfolioStore(engine, service)), service, engine)
        finally:
            engine.dispose()
        return
    async_engine = create_async_engine(url, **engine_options)
    service = ConcurrencyService(async_engine, max_retries=max_retries, sleep=sleep)
    try:
        yield Flavour(name, AsyncPortfolioStore(async_engine, service), service, async_engine)
    finally:
        await async_engine.dispose()
