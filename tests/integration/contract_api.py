"""One awaitable API over the sync and the async library, for the shared contract tests.

The async flavour IS the library's async API (AsyncPortfolioStore,
AsyncUnitOfWork, ConcurrencyService.run_async): no adapter. The sync flavour
wraps PortfolioStore/UnitOfWork in coroutines that never suspend
(contract_sync.py); a retried unit of work is driven synchronously inside
``ConcurrencyService.run``. :class:`Flavour` adds what differs between the two
(retries, raw SQL in a unit of work, entity locks); :func:`open_flavour`
builds one on its own engine.
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
from sqlalchemy.pool import QueuePool

from portfolio_core import (
    AsyncPortfolioStore,
    AsyncUnitOfWork,
    ConcurrencyException,
    ConcurrencyService,
    Portfolio,
    PortfolioEvent,
    PortfolioStore,
    Position,
    PositionRequest,
    SerializationFailureException,
    StaleDataException,
    Versioned,
    create_async_engine,
    create_engine,
)
from portfolio_core.domain.money import AmountLike
from portfolio_core.persistence.isolation import IsolationLevel
from portfolio_core.persistence.session import write_events
from portfolio_core.store_call import LockMode
from portfolio_core.units import Seconds
from tests.integration.contract_sync import SyncStore, SyncUnitOfWork, drive

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
        lock: LockMode = "auto",
        lock_timeout: Seconds | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> T: ...
    async def execute_versioned(
        self,
        portfolio_id: UUID,
        operation: Callable[[Portfolio], T],
        *,
        lock: LockMode = "auto",
        lock_timeout: Seconds | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Versioned[T]: ...
    async def transfer(
        self,
        from_id: UUID,
        to_id: UUID,
        amount: AmountLike,
        *,
        idempotency_key: str | None = None,
        expected_version: Mapping[UUID, int] | None = None,
    ) -> None: ...
    async def update_all_prices(
        self,
        portfolio_id: UUID,
        prices: Mapping[str, AmountLike],
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> int: ...
    async def history(
        self, portfolio_id: UUID, since_version: int | None = None
    ) -> list[PortfolioEvent]: ...
    async def replay(self, portfolio_id: UUID, version: int | None = None) -> Portfolio: ...
    async def batch_update(
        self, updates: Mapping[UUID, Callable[[Portfolio], T]]
    ) -> dict[UUID, T]: ...
    def metrics(self) -> dict[str, int]: ...


class Flavour:
    """One flavour of the library (``sync`` or ``async``) under the contract's API."""

    def __init__(
        self,
        name: str,
        store: SyncStore | AsyncPortfolioStore,
        service: ConcurrencyService,
        engine: Engine | AsyncEngine | None = None,
        engine_options: Mapping[str, Any] | None = None,
        isolation: IsolationLevel | None = None,
    ) -> None:
        self.name = name
        self.isolation = isolation
        self.store: ContractStore = store
        self.service = service
        self.engine = engine
        self.engine_options: Mapping[str, Any] = engine_options or {}
        """The options its engine was created with: a second engine of a test keeps them."""

    @property
    def conflict_metric(self) -> str:
        """The counter a write over a concurrently committed change lands in.

        At READ COMMITTED the version check sees the new version (a stale
        version); above it, PostgreSQL refuses the UPDATE first (40001).
        """
        if self.isolation in (None, "read committed"):
            return "version_conflicts"
        return "serialization_failures"

    @property
    def conflict_error(self) -> type[ConcurrencyException]:
        """What that write raises: StaleDataException, or SerializationFailureException."""
        if self.isolation in (None, "read committed"):
            return StaleDataException
        return SerializationFailureException

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
    isolation: IsolationLevel | None = None,
    **engine_options: Any,
) -> AsyncIterator[Flavour]:
    """The library in flavour ``name`` on a new engine to ``url``, disposed afterwards.

    ``isolation`` is the stores' (and their units of work's) isolation level.
    """
    if name == "sync":
        engine = create_engine(url, **engine_options)
        service = ConcurrencyService(engine, max_retries=max_retries, sleep=sleep)
        store = SyncStore(PortfolioStore(engine, service, isolation=isolation))
        try:
            yield Flavour(name, store, service, engine, engine_options, isolation)
        finally:
            engine.dispose()
        return
    async_engine = create_async_engine(url, **engine_options)
    service = ConcurrencyService(async_engine, max_retries=max_retries, sleep=sleep)
    try:
        async_store = AsyncPortfolioStore(async_engine, service, isolation=isolation)
        yield Flavour(name, async_store, service, async_engine, engine_options, isolation)
    finally:
        await async_engine.dispose()
