"""The sync flavour of the contract API: PortfolioStore / UnitOfWork behind coroutines.

Each coroutine calls the sync library directly and never suspends, so it can
be awaited inside the test's event loop or driven without one (:func:`drive`,
used for a unit of work retried by ``ConcurrencyService.run``).
"""

from __future__ import annotations

import builtins
from collections.abc import (
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy.orm import Session

from portfolio_core import (
    Portfolio,
    PortfolioEvent,
    PortfolioStore,
    Position,
    PositionRequest,
    PostgreSQLPortfolioRepository,
    UnitOfWork,
    Versioned,
)
from portfolio_core.domain.money import AmountLike
from portfolio_core.store_call import LockMode
from portfolio_core.units import Seconds

T = TypeVar("T")


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
        lock: LockMode = "auto",
        lock_timeout: Seconds | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> T:
        return self._store.execute(
            portfolio_id,
            operation,
            lock=lock,
            lock_timeout=lock_timeout,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )

    async def execute_versioned(
        self,
        portfolio_id: UUID,
        operation: Callable[[Portfolio], T],
        *,
        lock: LockMode = "auto",
        lock_timeout: Seconds | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Versioned[T]:
        return self._store.execute_versioned(
            portfolio_id,
            operation,
            lock=lock,
            lock_timeout=lock_timeout,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )

    async def transfer(
        self,
        from_id: UUID,
        to_id: UUID,
        amount: AmountLike,
        *,
        idempotency_key: str | None = None,
        expected_version: Mapping[UUID, int] | None = None,
    ) -> None:
        self._store.transfer(
            from_id,
            to_id,
            amount,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )

    async def update_all_prices(
        self,
        portfolio_id: UUID,
        prices: Mapping[str, AmountLike],
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        return self._store.update_all_prices(
            portfolio_id,
            prices,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )

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
