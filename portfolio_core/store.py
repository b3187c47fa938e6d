"""PortfolioStore: the facade services call.

Each method is one unit of work wrapped, from outside, in the retry policy:
a conflict re-runs the whole thing (fresh session, reload, re-apply, commit).
::

    store = PortfolioStore(create_engine())
    pid = store.create_portfolio("alpha", Decimal("10000"))
    store.execute(pid, lambda p: p.deposit(Decimal("250")))
    store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 10, "150")), lock="wait")

``execute``, ``transfer`` and ``update_all_prices`` take an ``idempotency_key``:
the first call with a key applies the change and stores the key, the request's
fingerprint and the result in the same transaction; a later call with the same
key and request returns the stored result and changes nothing; with another
request it raises IdempotencyConflictError. A COMMIT whose reply was lost is
resolved through the key (``portfolio_core.exactly_once``). Every committed
change is in the audit trail: ``history`` and ``replay``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TypeVar
from uuid import UUID

from sqlalchemy import Engine

from portfolio_core import coalescing, replicas, store_call, store_work
from portfolio_core.concurrency.reentrancy import unit_of_work_on
from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.domain import money
from portfolio_core.domain.arguments import PortfolioId
from portfolio_core.domain.events import PortfolioEvent
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.exactly_once import run_resolving_outcome
from portfolio_core.observability.tracking import observed_call, observed_store_call
from portfolio_core.persistence import idempotency
from portfolio_core.persistence.isolation import IsolationLevel, checked_isolation
from portfolio_core.persistence.read_routing import ReadPolicy, ReadToken, as_read_token
from portfolio_core.persistence.repository import as_portfolio_id
from portfolio_core.store_call import LOCK_MODES, LockMode, StoreCall, Versioned
from portfolio_core.unit_of_work import UnitOfWork, run_in_own_unit_of_work
from portfolio_core.units import Seconds

T = TypeVar("T")

__all__ = ["LOCK_MODES", "LockMode", "PortfolioStore"]


class PortfolioStore:
    """Create, read and change portfolios safely from many threads, processes and hosts.

    ``lock`` chooses how a change meets concurrent ones: ``"auto"`` (the
    default) reads without locking first and, if that attempt loses to a
    concurrent change (a version conflict), retries with the row locked
    (FOR UPDATE, bounded like ``"wait"``), and while a portfolio is hot (a
    call on it met a conflict lately; see ``ConcurrencyService.hot_rows``)
    locks from the first attempt; ``"optimistic"`` reads without
    locking and relies on the version check on every attempt (best when
    conflicts are rare); ``"nowait"`` row-locks with FOR UPDATE NOWAIT and
    retries when the row is busy; ``"wait"`` row-locks and queues (best for a
    hot portfolio), bounded by ``lock_timeout`` seconds (default: the policy's
    ``wait_lock_timeout``, 30 s). A store call made from inside another on the
    same portfolio, in the same thread or task, raises ReentrantUnitOfWorkError
    at once instead of waiting on itself.

    ``read_engines`` (hot standbys of ``engine``'s primary): ``get``,
    ``history`` and ``replay`` may be served there, seeing at least this
    store's own commits (read-your-writes) and ``read_token=``'s; everything
    else stays on ``engine``. See ``portfolio_core.replicas``.

    ``isolation`` ("read committed", "repeatable read", "serializable"; None:
    the engine's own level) is the level of every unit of work the store runs;
    serialization failures (40001) are retried and counted as
    ``serialization_failures``. A VersionMismatchError (``expected_version``)
    is never retried, at any level.

    ``coalesce=True`` makes ``execute`` coalesce by default: concurrent calls on
    one portfolio from this process's threads are applied by one leader in
    one transaction (at most ``coalesce_max_batch``), each with its own
    version, event, key, result or error (``portfolio_core.coalescing``).
    """

    def __init__(
        self,
        engine: Engine,
        concurrency_service: ConcurrencyService | None = None,
        *,
        read_engines: Sequence[Engine] = (),
        read_policy: ReadPolicy | None = None,
        isolation: IsolationLevel | None = None,
        coalesce: bool = False,
        coalesce_max_batch: int = coalescing.DEFAULT_MAX_BATCH,
    ):
        self.engine = engine
        self.coalesce = coalescing.wanted(coalesce, False, "auto")
        self._coalescer = coalescing.ThreadCoalescer(
            self.unit_of_work,
            coalescing.checked_max_batch(coalesce_max_batch),
            lambda: coalescing.overlaps_commit(self.engine, self.isolation),
        )
        self.isolation = checked_isolation(isolation)
        self.concurrency = concurrency_service or ConcurrencyService(engine)
        self.reads = replicas.router_for(read_engines, Engine, read_policy)
        """The read engines' router (None without read engines); ``reads.metrics()``."""

    def unit_of_work(self) -> UnitOfWork:
        """A new UnitOfWork on this store's engine (the primary) and concurrency service.

        With read engines, its commit is remembered for read-your-writes.
        """
        if self.reads is None:
            return UnitOfWork(
                self.engine, concurrency_service=self.concurrency, isolation=self.isolation
            )
        return replicas.TrackedUnitOfWork(
            self.engine,
            self.reads,
            concurrency_service=self.concurrency,
            isolation=self.isolation,
        )

    def last_commit_token(self) -> ReadToken:
        """A token covering this store's commits so far, for reads elsewhere (``read_token=``).

        With read engines, the one remembered at the last commit; otherwise
        (or before the first commit) the primary's WAL position now, which
        covers every commit that has returned. ``str(token)`` fits an HTTP header.
        """
        if self.reads is not None and not self.reads.must_learn_token():
            token = self.reads.last_commit_token()
            if token is not None:
                return token
        return replicas.current_token(self.engine)

    def _run(self, call: StoreCall[T], coalesced: coalescing.CoalescedCall[T] | None = None) -> T:
        """Run ``call`` in a unit of work, retried as a whole per the policy.

        With an idempotency key, a COMMIT whose outcome was lost is resolved
        through the key (``portfolio_core.exactly_once``).
        """
        with observed_store_call(call, self.engine.url):
            if not call.commit:  # a read takes no lock: it can not wait on its caller
                return self._run_resolving(call)
            with unit_of_work_on(call.entity_id):
                if self.reads is None:
                    return self._run_resolving(call, coalesced)
                with replicas.noting_commit(self.reads):
                    result = self._run_resolving(call, coalesced)
                replicas.note_commit_token(self.reads, self.engine)
                return result

    def _read(self, call: StoreCall[T], read_token: ReadToken | str | None) -> T:
        """Run the read ``call`` on a standby that has what it must see, else on the primary."""
        token = as_read_token(read_token)
        with observed_store_call(call, self.engine.url):
            if self.reads is None:
                return self._run_resolving(call)
            return replicas.read(
                self.reads,
                call,
                token,
                primary=self.engine,
                service=self.concurrency,
                on_primary=lambda: self._run_resolving(call),
            )

    def _run_resolving(
        self, call: StoreCall[T], coalesced: coalescing.CoalescedCall[T] | None = None
    ) -> T:
        def run() -> T:
            if coalesced is None:
                return run_in_own_unit_of_work(self.engine, self.concurrency, call, self.isolation)
            wait = coalescing.queue_wait(coalesced)
            return self.concurrency.run(
                lambda: self._coalescer.run(coalescing.Ticket(coalesced), wait),
                entity_id=call.entity_id,
            )

        if call.key is None:  # no key, nothing to resolve a lost COMMIT with
            return run()
        return run_resolving_outcome(
            run,
            engine=self.engine,
            policy=self.concurrency.policy,
            key=call.key,
            request_fingerprint=lambda: call.fingerprint,
            entity_id=call.entity_id,
        )

    def create_portfolio(self, name: str, cash_balance: money.AmountLike = 0) -> UUID:
        """Create a portfolio with an opening cash balance; return its id."""
        return self._run(store_work.create_portfolio(name, cash_balance))

    def get(
        self, portfolio_id: PortfolioId, *, read_token: ReadToken | str | None = None
    ) -> Portfolio:
        """A detached snapshot: the portfolio with its open and closed positions.

        With read engines it may come from a standby that shows this store's
        own commits and, if given, every commit before ``read_token``.
        """
        return self._read(store_work.snapshot(portfolio_id), read_token)

    def execute(
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

        Retried as a whole per the concurrency service's policy, so
        ``operation`` must be safe to call again (it only touches the portfolio).
        ``lock_timeout`` (seconds) bounds the wait for the row lock in
        ``"wait"`` mode and in ``"auto"``'s attempts after a version conflict
        (None: the policy's ``wait_lock_timeout``); the other modes never wait
        for a row lock before the operation runs.
        With ``idempotency_key`` the result must be JSON-able (see
        ``persistence.idempotency``) and the request is fingerprinted by the
        operations ``operation`` performs; a repeated key re-applies
        ``operation`` to the portfolio as it stood before the keyed change
        (replayed from the audit trail), compares, and changes nothing.
        ``coalesce`` (None: the store's default) coalesces the call with
        concurrent ones on the same portfolio (``portfolio_core.coalescing``).
        """
        if coalescing.wanted(coalesce, self.coalesce, lock):
            return self._run_coalesced(
                portfolio_id, operation, lock, lock_timeout, idempotency_key, expected_version
            ).result
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
        return self._run(call)

    def execute_versioned(
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
            return self._run_coalesced(
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
        result = self._run(call)
        return Versioned(result, store_call.committed_version(call))

    def _run_coalesced(
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
        result = self._run(request.call, request)
        return Versioned(result, coalescing.committed_version(request))

    def transfer(
        self,
        from_id: PortfolioId,
        to_id: PortfolioId,
        amount: money.AmountLike,
        *,
        idempotency_key: str | None = None,
        expected_version: Mapping[UUID, int] | None = None,
    ) -> None:
        """Move cash between two portfolios atomically.

        Both rows are locked in primary-key order, so transfers in opposite
        directions queue up instead of deadlocking. The legs are recorded as
        ``transfer_out``/``transfer_in`` (booked as a withdrawal and a deposit).
        ``expected_version`` maps either or both portfolio ids to the version
        it must still be at (VersionMismatchError otherwise, never retried).
        """
        self._run(store_work.transfer(from_id, to_id, amount, idempotency_key, expected_version))

    def update_all_prices(
        self,
        portfolio_id: PortfolioId,
        prices: Mapping[str, money.AmountLike],
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Re-price every open position found in ``prices`` (constant statements, one bump)."""
        return self._run(
            store_work.update_all_prices(portfolio_id, prices, idempotency_key, expected_version)
        )

    def history(
        self,
        portfolio_id: PortfolioId,
        since_version: int | None = None,
        *,
        read_token: ReadToken | str | None = None,
    ) -> list[PortfolioEvent]:
        """The portfolio's audit trail after ``since_version`` (all if None), oldest first.

        ``read_token`` as in :meth:`get`.
        """
        return self._read(store_work.history(portfolio_id, since_version), read_token)

    def replay(
        self,
        portfolio_id: PortfolioId,
        version: int | None = None,
        *,
        read_token: ReadToken | str | None = None,
    ) -> Portfolio:
        """The portfolio at ``version`` (default: latest) rebuilt from its events alone.

        ``read_token`` as in :meth:`get`.
        """
        return self._read(store_work.replay(portfolio_id, version), read_token)

    def purge_idempotency_keys(self, older_than: timedelta) -> int:
        """Delete idempotency keys created more than ``older_than`` ago; return how many.

        A purged key can be used again: keep keys longer than clients retry.
        """

        def work() -> int:
            with self.engine.begin() as connection:
                return idempotency.purge_keys(connection, older_than)

        with observed_call("purge_idempotency_keys", url=self.engine.url):
            return self.concurrency.run(work, entity_type="IdempotencyKey")

    def batch_update(self, updates: Mapping[UUID, Callable[[Portfolio], T]]) -> dict[UUID, T]:
        """Apply one operation per portfolio in one unit of work: all commit or none."""
        return self._run(store_work.batch(updates))

    def coalescing_queue(self, portfolio_id: PortfolioId) -> int:
        """How many coalesced calls on ``portfolio_id`` wait for a leader to take them now."""
        return self._coalescer.queued(as_portfolio_id(portfolio_id))

    def metrics(self) -> dict[str, int]:
        """The concurrency service's counters (same keys as get_metrics())."""
        return self.concurrency.get_metrics()
