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

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Literal, TypeVar
from uuid import UUID

from sqlalchemy import Engine

from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.domain import money
from portfolio_core.domain.events import PortfolioEvent
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import ValidationError
from portfolio_core.exactly_once import (
    MISSING,
    execute_with_key,
    run_resolving_outcome,
    stored_result,
)
from portfolio_core.persistence import idempotency
from portfolio_core.persistence.repository import as_portfolio_id
from portfolio_core.unit_of_work import UnitOfWork

T = TypeVar("T")

LockMode = Literal["optimistic", "nowait", "wait"]
LOCK_MODES: tuple[LockMode, ...] = ("optimistic", "nowait", "wait")


class PortfolioStore:
    """Create, read and change portfolios safely from many threads, processes and hosts.

    ``lock`` chooses how a change meets concurrent ones: ``"optimistic"`` reads
    without locking and relies on the version check (best when conflicts are
    rare); ``"nowait"`` row-locks with FOR UPDATE NOWAIT and retries when the
    row is busy; ``"wait"`` row-locks and queues (best for a hot portfolio),
    bounded by ``lock_timeout`` seconds if given.
    """

    def __init__(self, engine: Engine, concurrency_service: ConcurrencyService | None = None):
        self.engine = engine
        self.concurrency = concurrency_service or ConcurrencyService(engine)

    def unit_of_work(self) -> UnitOfWork:
        """A new UnitOfWork on this store's engine and concurrency service."""
        return UnitOfWork(self.engine, concurrency_service=self.concurrency)

    def create_portfolio(self, name: str, cash_balance: money.AmountLike = 0) -> UUID:
        """Create a portfolio with an opening cash balance; return its id."""
        portfolio = Portfolio(name, cash_balance)

        def work() -> UUID:
            with self.unit_of_work() as uow:
                uow.portfolios.add(portfolio)
                uow.commit()
            return portfolio.id

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=portfolio.id)

    def get(self, portfolio_id: UUID) -> Portfolio:
        """A detached snapshot: the portfolio with its open and closed positions."""
        pid = as_portfolio_id(portfolio_id)

        def work() -> Portfolio:
            with self.unit_of_work() as uow:
                portfolio = uow.portfolios.get_snapshot(pid)
                uow.session.expunge_all()
            return portfolio

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=pid)

    def execute(
        self,
        portfolio_id: UUID,
        operation: Callable[[Portfolio], T],
        *,
        lock: LockMode = "optimistic",
        lock_timeout: float | None = None,  # float-ok: seconds
        idempotency_key: str | None = None,
    ) -> T:
        """Run ``operation(portfolio)`` in a unit of work, commit, and return its result.

        Retried as a whole per the concurrency service's policy, so
        ``operation`` must be safe to call again (it only touches the portfolio).
        With ``idempotency_key`` the result must be JSON-able (see
        ``persistence.idempotency``) and the request is fingerprinted by the
        operations ``operation`` performs; a repeated key re-applies
        ``operation`` to the portfolio as it stood before the keyed change
        (replayed from the audit trail), compares, and changes nothing.
        """
        pid = as_portfolio_id(portfolio_id)
        if lock not in LOCK_MODES:
            raise ValidationError("lock", lock, f"must be one of {LOCK_MODES}")
        key = None if idempotency_key is None else idempotency.validate_key(idempotency_key)
        last_fingerprint: list[str] = []

        def work() -> T:
            with self.unit_of_work() as uow:
                if lock == "optimistic":
                    portfolio = uow.portfolios.get(pid)
                else:
                    portfolio = uow.portfolios.get_portfolio_for_update(
                        pid, nowait=lock == "nowait", lock_timeout=lock_timeout
                    )
                if key is None:
                    result = operation(portfolio)
                else:
                    repeated, result = execute_with_key(
                        uow.session, key, pid, portfolio, operation, last_fingerprint
                    )
                    if repeated:
                        return result  # nothing to commit
                uow.commit()
            return result

        return self._run(work, pid, key, last_fingerprint)

    def transfer(
        self,
        from_id: UUID,
        to_id: UUID,
        amount: money.AmountLike,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Move cash between two portfolios atomically.

        Both rows are locked in primary-key order, so transfers in opposite
        directions queue up instead of deadlocking. The legs are recorded as
        ``transfer_out``/``transfer_in`` (booked as a withdrawal and a deposit).
        """
        source, target = as_portfolio_id(from_id), as_portfolio_id(to_id)
        if source == target:
            raise ValidationError("to_id", to_id, "must differ from from_id")
        value = money.positive(amount, "amount")
        key = None if idempotency_key is None else idempotency.validate_key(idempotency_key)
        request = idempotency.fingerprint(
            {"request": "transfer", "from": source, "to": target, "amount": value}
        )  # cheap: computed even without a key, which keeps work() simple

        def work() -> None:
            with self.unit_of_work() as uow:
                locked = {
                    p.id: p for p in uow.portfolios.get_portfolios_for_update([source, target])
                }
                if key is not None and stored_result(uow.session, key, request) is not MISSING:
                    return
                locked[source].transfer_out(value, target)
                locked[target].transfer_in(value, source)
                if key is not None:
                    idempotency.claim_key(uow.session, key, request, None, [source, target])
                uow.commit()

        self._run(work, (source, target), key, [request])

    def update_all_prices(
        self,
        portfolio_id: UUID,
        prices: Mapping[str, money.AmountLike],
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Re-price every open position found in ``prices`` (constant statements, one bump)."""
        pid = as_portfolio_id(portfolio_id)
        key = None if idempotency_key is None else idempotency.validate_key(idempotency_key)
        request = ""
        if key is not None:
            validated = {
                money.validate_symbol(symbol): money.non_negative(price, f"prices[{symbol!r}]")
                for symbol, price in prices.items()
            }
            request = idempotency.fingerprint(
                {"request": "update_all_prices", "portfolio_id": pid, "prices": validated}
            )

        def work() -> int:
            with self.unit_of_work() as uow:
                if key is not None:
                    stored = stored_result(uow.session, key, request)
                    if stored is not MISSING:
                        return int(stored)
                updated = uow.portfolios.update_all_prices(pid, prices)
                if key is not None:
                    idempotency.claim_key(uow.session, key, request, updated, [pid])
                uow.commit()
            return updated

        return self._run(work, pid, key, [request] if key is not None else [])

    def history(self, portfolio_id: UUID, since_version: int | None = None) -> list[PortfolioEvent]:
        """The portfolio's audit trail after ``since_version`` (all if None), oldest first."""
        pid = as_portfolio_id(portfolio_id)

        def work() -> list[PortfolioEvent]:
            with self.unit_of_work() as uow:
                return uow.portfolios.history(pid, since_version)

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=pid)

    def replay(self, portfolio_id: UUID, version: int | None = None) -> Portfolio:
        """The portfolio at ``version`` (default: latest) rebuilt from its events alone."""
        pid = as_portfolio_id(portfolio_id)

        def work() -> Portfolio:
            with self.unit_of_work() as uow:
                return uow.portfolios.replay(pid, version)

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=pid)

    def purge_idempotency_keys(self, older_than: timedelta) -> int:
        """Delete idempotency keys created more than ``older_than`` ago; return how many.

        A purged key can be used again: keep keys longer than clients retry.
        """

        def work() -> int:
            with self.engine.begin() as connection:
                return idempotency.purge_keys(connection, older_than)

        return self.concurrency.run(work, entity_type="IdempotencyKey")

    def _run(self, work: Callable[[], T], entity_id: object, key: str | None, fp: list[str]) -> T:
        """Run a whole unit of work under the retry policy, resolving a lost COMMIT via ``key``."""
        return run_resolving_outcome(
            lambda: self.concurrency.run(work, entity_type="Portfolio", entity_id=entity_id),
            engine=self.engine,
            policy=self.concurrency.policy,
            key=key,
            request_fingerprint=lambda: fp[0] if fp else None,
            entity_id=entity_id,
        )

    def batch_update(self, updates: Mapping[UUID, Callable[[Portfolio], T]]) -> dict[UUID, T]:
        """Apply one operation per portfolio in one unit of work: all commit or none."""

        def work() -> dict[UUID, T]:
            with self.unit_of_work() as uow:
                results = uow.portfolios.batch_update_portfolios(updates)
                uow.commit()
            return results

        return self.concurrency.run(work, entity_type="Portfolio", entity_id=tuple(updates))

    def metrics(self) -> dict[str, int]:
        """The concurrency service's counters (same keys as get_metrics())."""
        return self.concurrency.get_metrics()
