"""AsyncPortfolioStore: PortfolioStore for asyncio services, with the same guarantees.

::

    store = AsyncPortfolioStore(create_async_engine())
    pid = await store.create_portfolio("alpha", Decimal("10000"))
    await store.execute(pid, lambda p: p.deposit(Decimal("250")), lock="wait")

Each method is one AsyncUnitOfWork running the same unit-of-work body as
PortfolioStore (portfolio_core.store_work) on the session's sync side, retried
as a whole by ``ConcurrencyService.run_async`` (same classification, metrics
and exhaustion errors as the sync store). ``operation`` callables are plain
sync functions of the portfolio, as in PortfolioStore. Idempotency keys, the
audit trail (``history``/``replay``) and the resolution of a lost COMMIT work
as in PortfolioStore: the events are written by the same commit path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TypeVar
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import coalescing, replicas, store_call, store_work
from portfolio_core.async_unit_of_work import AsyncUnitOfWork, run_in_own_unit_of_work_async
from portfolio_core.concurrency.reentrancy import unit_of_work_on
from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.domain import money
from portfolio_core.domain.arguments import PortfolioId
from portfolio_core.domain.events import PortfolioEvent
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import ConfigurationError
from portfolio_core.exactly_once import run_resolving_outcome_async
from portfolio_core.observability.tracking import observed_call, observed_store_call
from portfolio_core.persistence import idempotency
from portfolio_core.persistence.isolation import IsolationLevel, checked_isolation
from portfolio_core.persistence.read_routing import (
    ReadPolicy,
    ReadRouter,
    ReadToken,
    as_read_token,
)
from portfolio_core.persistence.repository import as_portfolio_id
from portfolio_core.store_call import LockMode, StoreCall, Versioned
from portfolio_core.units import Seconds

T = TypeVar("T")


class AsyncPortfolioStore:
    """Create, read and change portfolios from asyncio code: PortfolioStore's API, awaitable.

    ``lock`` modes and ``isolation`` as in PortfolioStore: ``"auto"`` (the default)
    is optimistic first, row-locked after a version conflict, and row-locked from
    the first attempt while the portfolio is hot (``ConcurrencyService.hot_rows``,
    shared with the service's other stores). Share one store (and its engine's
    pool) between all the tasks of a service; tasks beyond the pool size wait
    for a connection. ``read_engines`` (AsyncEngines on hot standbys) and
    ``read_token`` as in PortfolioStore. ``coalesce`` and ``coalesce_max_batch`` as in
    PortfolioStore, for the tasks of one event loop (``portfolio_core.coalescing``).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        concurrency_service: ConcurrencyService | None = None,
        *,
        read_engines: Sequence[AsyncEngine] = (),
        read_policy: ReadPolicy | None = None,
        isolation: IsolationLevel | None = None,
        coalesce: bool = False,
        coalesce_max_batch: int = coalescing.DEFAULT_MAX_BATCH,
    ) -> None:
        self.engine = engine
        self.coalesce = coalescing.wanted(coalesce, False, "auto")
        self._coalescer = coalescing.TaskCoalescer(
            self.unit_of_work,
            coalescing.checked_max_batch(coalesce_max_batch),
            lambda: coalescing.overlaps_commit(self.engine.sync_engine, self.isolation),
        )
        self.reads = replicas.router_for(read_engines, AsyncEngine, read_policy)
        """The read engines' router (None without read engines); ``reads.metrics()``."""
        self.isolation = checked_isolation(isolation)
        if concurrency_service is None:
            concurrency_service = ConcurrencyService(async_engine=engine)
        elif concurrency_service.async_engine is None:
            concurrency_service.async_engine = engine
        elif concurrency_service.async_engine is not engine:
            raise ConfigurationError("the concurrency service is bound to another AsyncEngine")
        self.concurrency = concurrency_service

    def unit_of_work(self) -> AsyncUnitOfWork:
        """A new AsyncUnitOfWork on this store's engine (the primary) and concurrency service.

        With read engines, its commit is remembered for read-your-writes.
        """
        if self.reads is None:
            return AsyncUnitOfWork(
                self.engine, concurrency_service=self.concurrency, isolation=self.isolation
            )
        return TrackedAsyncUnitOfWork(
            self.engine, self.reads, concurrency_service=self.concurrency, isolation=self.isolation
        )

    async def last_commit_token(self) -> ReadToken:
        """A token covering this store's commits so far; as PortfolioStore.last_commit_token."""
        if self.reads is not None and not self.reads.must_learn_token():
            token = self.reads.last_commit_token()
            if token is not None:
                return token
        return await replicas.current_token_async(self.engine)

    async def _run(
        self, call: StoreCall[T], coalesced: coalescing.CoalescedCall[T] | None = None
    ) -> T:
        """Run ``call`` in an AsyncUnitOfWork, retried as a whole per the policy.

        With an idempotency key, a COMMIT whose outcome was lost is resolved
        through the key, as PortfolioStore does (``portfolio_core.exactly_once``).
        """
        with observed_store_call(call, self.engine.url):
            if not call.commit:  # a read takes no lock: it can not wait on its caller
                return await self._run_resolving(call)
            with unit_of_work_on(call.entity_id):
                if self.reads is None:
                    return await self._run_resolving(call, coalesced)
                with replicas.noting_commit(self.reads):
                    result = await self._run_resolving(call, coalesced)
                await replicas.note_commit_token_async(self.reads, self.engine)
                return result

    async def _read(self, call: StoreCall[T], read_token: ReadToken | str | None) -> T:
        """Run the read ``call`` on a standby that has what it must see, else on the primary."""
        token = as_read_token(read_token)
        with observed_store_call(call, self.engine.url):
            if self.reads is None:
                return await self._run_resolving(call)
            return await replicas.read_async(
                self.reads,
                call,
                token,
                primary=self.engine,
                service=self.concurrency,
                on_primary=lambda: self._run_resolving(call),
            )

    async def _run_resolving(
        self, call: StoreCall[T], coalesced: coalescing.CoalescedCall[T] | None = None
    ) -> T:
        async def run() -> T:
            if coalesced is None:
                return await run_in_own_unit_of_work_async(
                    self.engine, self.concurrency, call, self.isolation
                )
            wait = coalescing.queue_wait(coalesced)
            return await self.concurrency.run_async(
                lambda: self._coalescer.run(coalescing.Ticket(coalesced), wait),
                entity_id=call.entity_id,
            )

        return await run_resolving_outcome_async(
            run,
            engine=self.engine,
            policy=self.concurrency.policy,
            key=call.key,
            request_fingerprint=lambda: call.fingerprint,
            entity_id=call.entity_id,
        )

    async def create_portfolio(self, name: str, cash_balance: money.AmountLike = 0) -> UUID:
        """Create a portfolio with an opening cash balance; return its id."""
        return await self._run(store_work.create_portfolio(name, cash_balance))

    async def get(
        self, portfolio_id: PortfolioId, *, read_token: ReadToken | str | None = None
    ) -> Portfolio:
        """A detached snapshot: the portfolio with its open and closed positions.

        ``read_token`` as in PortfolioStore.get.
        """
        return await self._read(store_work.snapshot(portfolio_id), read_token)

    async def execute(
        self,
        portfolio_id: PortfolioId,
        operation: Callable[[Portfolio], T],
        *,
        lock: LockMode = "auto",
        lock_timeout: Seconds | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        coalesce: bool | None = None,
    ) -> T:
        """Run ``operation(portfolio)`` in a unit of work, commit, and return its result.

        ``operation`` is a sync function (domain calls); it runs where lazy
        loads may do I/O, and is called again on each retry.
        ``idempotency_key``, ``expected_version`` and ``coalesce`` as in PortfolioStore.execute.
        """
        if coalescing.wanted(coalesce, self.coalesce, lock):
            answer = await self._run_coalesced(
                portfolio_id, operation, lock, lock_timeout, idempotency_key, expected_version
            )
            return answer.result
        call = store_work.execute(
            portfolio_id,
            operation,
            lock,
            lock_timeout,
            idempotency_key,
            expected_version,
            self.concurrency.policy.wait_lock_timeout,
            self.concurrency.hot_rows,
        )
        return await self._run(call)

    async def execute_versioned(
        self,
        portfolio_id: PortfolioId,
        operation: Callable[[Portfolio], T],
        *,
        lock: LockMode = "auto",
        lock_timeout: Seconds | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        coalesce: bool | None = None,
    ) -> Versioned[T]:
        """``execute``, answering the result together with the version committed (the new ETag)."""
        if coalescing.wanted(coalesce, self.coalesce, lock):
            return await self._run_coalesced(
                portfolio_id,
                operation,
                lock,
                lock_timeout,
                idempotency_key,
                expected_version,
                "execute_versioned",
            )
        call = store_work.execute(
            portfolio_id,
            operation,
            lock,
            lock_timeout,
            idempotency_key,
            expected_version,
            self.concurrency.policy.wait_lock_timeout,
            self.concurrency.hot_rows,
        )
        call.operation = "execute_versioned"
        result = await self._run(call)
        return Versioned(result, store_call.committed_version(call))

    async def _run_coalesced(
        self,
        portfolio_id: PortfolioId,
        operation: Callable[[Portfolio], T],
        lock: LockMode,
        lock_timeout: Seconds | None,
        idempotency_key: str | None,
        expected_version: int | None,
        name: str = "execute",
    ) -> Versioned[T]:
        """A coalesced ``execute``: its result and the version right after its operation."""
        request = coalescing.request(
            portfolio_id,
            operation,
            lock,
            lock_timeout,
            idempotency_key,
            expected_version,
            self.concurrency.policy.wait_lock_timeout,
        )
        request.call.operation = name
        result = await self._run(request.call, request)
        return Versioned(result, coalescing.committed_version(request))

    async def transfer(
        self,
        from_id: PortfolioId,
        to_id: PortfolioId,
        amount: money.AmountLike,
        *,
        idempotency_key: str | None = None,
        expected_version: Mapping[UUID, int] | None = None,
    ) -> None:
        """Move cash between two portfolios atomically (rows locked in primary-key order).

        ``expected_version`` as in PortfolioStore.transfer.
        """
        await self._run(
            store_work.transfer(from_id, to_id, amount, idempotency_key, expected_version)
        )

    async def update_all_prices(
        self,
        portfolio_id: PortfolioId,
        prices: Mapping[str, money.AmountLike],
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Re-price every open position found in ``prices`` (constant statements, one bump)."""
        return await self._run(
            store_work.update_all_prices(portfolio_id, prices, idempotency_key, expected_version)
        )

    async def history(
        self,
        portfolio_id: PortfolioId,
        since_version: int | None = None,
        *,
        read_token: ReadToken | str | None = None,
    ) -> list[PortfolioEvent]:
        """The portfolio's audit trail after ``since_version`` (all if None), oldest first."""
        return await self._read(store_work.history(portfolio_id, since_version), read_token)

    async def replay(
        self,
        portfolio_id: PortfolioId,
        version: int | None = None,
        *,
        read_token: ReadToken | str | None = None,
    ) -> Portfolio:
        """The portfolio at ``version`` (default: latest) rebuilt from its events alone."""
        return await self._read(store_work.replay(portfolio_id, version), read_token)

    async def purge_idempotency_keys(self, older_than: timedelta) -> int:
        """Delete idempotency keys created more than ``older_than`` ago; return how many."""

        async def work() -> int:
            async with self.engine.begin() as connection:
                return await connection.run_sync(idempotency.purge_keys, older_than)

        with observed_call("purge_idempotency_keys", url=self.engine.url):
            return await self.concurrency.run_async(work, entity_type="IdempotencyKey")

    async def batch_update(self, updates: Mapping[UUID, Callable[[Portfolio], T]]) -> dict[UUID, T]:
        """Apply one operation per portfolio in one unit of work: all commit or none."""
        return await self._run(store_work.batch(updates))

    def coalescing_queue(self, portfolio_id: PortfolioId) -> int:
        """How many coalesced calls of this loop's tasks on ``portfolio_id`` wait to be taken."""
        return self._coalescer.queued(as_portfolio_id(portfolio_id))

    def metrics(self) -> dict[str, int]:
        """The concurrency service's counters (same keys as get_metrics()); no I/O, not awaited."""
        return self.concurrency.get_metrics()


class TrackedAsyncUnitOfWork(AsyncUnitOfWork):
    """An AsyncUnitOfWork on the primary whose commit a store's router remembers."""

    def __init__(
        self,
        engine: AsyncEngine,
        router: ReadRouter[AsyncEngine],
        *,
        concurrency_service: ConcurrencyService | None = None,
        isolation: IsolationLevel | None = None,
    ) -> None:
        super().__init__(engine, concurrency_service=concurrency_service, isolation=isolation)
        self._primary = engine
        self._router = router

    async def commit(self) -> None:
        """AsyncUnitOfWork.commit, then the commit's token noted."""
        with replicas.noting_commit(self._router):
            await super().commit()
        await replicas.note_commit_token_async(self._router, self._primary)
