"""The bodies of PortfolioStore's units of work, as functions of a sync repository.

PortfolioStore runs each inside a UnitOfWork; AsyncPortfolioStore runs the
very same function inside an AsyncUnitOfWork (``run_sync``), so the two stores
cannot drift apart: which rows are locked, in which order, and how, and
what an idempotency key stores and checks.

A body that finds its idempotency key already used returns the stored
result without touching the session (``portfolio_core.exactly_once``), so
the commit its runner performs next has nothing to write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Literal, TypeVar
from uuid import UUID

from portfolio_core.domain import arguments, money
from portfolio_core.domain import events as domain_events
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import ValidationError
from portfolio_core.exactly_once import MISSING, execute_with_key, stored_result
from portfolio_core.persistence import idempotency
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository, as_portfolio_id

T = TypeVar("T")

LockMode = Literal["optimistic", "nowait", "wait"]
LOCK_MODES: tuple[LockMode, ...] = ("optimistic", "nowait", "wait")


def checked_lock_mode(lock: str) -> LockMode:
    """``lock`` if it is one of LOCK_MODES; ValidationError otherwise."""
    for mode in LOCK_MODES:
        if lock == mode:
            return mode
    raise ValidationError("lock", lock, f"must be one of {LOCK_MODES}")


def load_for_change(
    repository: PostgreSQLPortfolioRepository,
    portfolio_id: UUID,
    lock: LockMode,
    lock_timeout: float | None,  # float-ok: seconds
) -> Portfolio:
    """Load a portfolio to change it: plain read (optimistic) or row-locked (nowait/wait)."""
    if lock == "optimistic":
        return repository.get(portfolio_id)
    return repository.get_portfolio_for_update(
        portfolio_id, nowait=lock == "nowait", lock_timeout=lock_timeout
    )


def checked_key(idempotency_key: str | None) -> str | None:
    """The validated idempotency key (None stays None)."""
    return None if idempotency_key is None else idempotency.validate_key(idempotency_key)


def execute_work(
    portfolio_id: UUID,
    operation: Callable[[Portfolio], T],
    lock: LockMode,
    lock_timeout: float | None,  # float-ok: seconds
    key: str | None = None,
    fingerprint: list[str] | None = None,
) -> Callable[[PostgreSQLPortfolioRepository], T]:
    """The unit of work of ``execute``: load per ``lock``, call ``operation``.

    With ``key``: a key already stored returns its result (after checking the
    request, see ``exactly_once.execute_with_key``); otherwise the operations
    ``operation`` performed are fingerprinted (into ``fingerprint``, for
    commit outcome resolution) and the key is claimed in the same transaction.
    """
    lock_timeout = arguments.lock_timeout(lock_timeout)

    def body(repository: PostgreSQLPortfolioRepository) -> T:
        portfolio = load_for_change(repository, portfolio_id, lock, lock_timeout)
        if key is None:
            return operation(portfolio)
        _, result = execute_with_key(
            repository.session,
            key,
            portfolio_id,
            portfolio,
            operation,
            fingerprint if fingerprint is not None else [],
        )
        return result

    return body


def transfer_arguments(
    from_id: UUID, to_id: UUID, amount: money.AmountLike
) -> tuple[UUID, UUID, Decimal]:
    """Validated (source, target, amount) of a transfer, before any SQL."""
    source, target = as_portfolio_id(from_id), as_portfolio_id(to_id)
    if source == target:
        raise ValidationError("to_id", to_id, "must differ from from_id")
    return source, target, money.positive(amount, "amount")


def transfer_request(source: UUID, target: UUID, amount: Decimal) -> str:
    """The fingerprint an idempotency key of a transfer is stored with."""
    return idempotency.fingerprint(
        {"request": "transfer", "from": source, "to": target, "amount": amount}
    )


def transfer_cash(
    source: UUID, target: UUID, amount: Decimal, key: str | None = None, request: str = ""
) -> Callable[[PostgreSQLPortfolioRepository], None]:
    """The unit of work of ``transfer``: both rows locked in primary-key order, then moved.

    The legs are recorded as ``transfer_out``/``transfer_in``. With ``key``
    (fingerprinted as ``request``) a transfer already made is not made again.
    """

    def body(repository: PostgreSQLPortfolioRepository) -> None:
        locked = {p.id: p for p in repository.get_portfolios_for_update([source, target])}
        if key is not None and stored_result(repository.session, key, request) is not MISSING:
            return
        locked[source].transfer_out(amount, target)
        locked[target].transfer_in(amount, source)
        if key is not None:
            idempotency.claim_key(repository.session, key, request, None, [source, target])

    return body


def detached_snapshot(repository: PostgreSQLPortfolioRepository, portfolio_id: UUID) -> Portfolio:
    """The portfolio with all its positions, detached from the session."""
    portfolio = repository.get_snapshot(portfolio_id)
    repository.session.expunge_all()
    return portfolio


def reprice_request(portfolio_id: UUID, prices: Mapping[str, money.AmountLike]) -> str:
    """The fingerprint an idempotency key of ``update_all_prices`` is stored with."""
    arguments.mapping(prices, "prices")
    validated = {
        money.validate_symbol(symbol): money.non_negative(price, f"prices[{symbol!r}]")
        for symbol, price in prices.items()
    }
    return idempotency.fingerprint(
        {"request": "update_all_prices", "portfolio_id": portfolio_id, "prices": validated}
    )


def reprice(
    portfolio_id: UUID,
    prices: Mapping[str, money.AmountLike],
    key: str | None = None,
    request: str = "",
) -> Callable[[PostgreSQLPortfolioRepository], int]:
    """The unit of work of ``update_all_prices`` (a repeated key returns the stored count)."""
    arguments.mapping(prices, "prices")

    def body(repository: PostgreSQLPortfolioRepository) -> int:
        if key is not None:
            stored = stored_result(repository.session, key, request)
            if stored is not MISSING:
                return int(stored)
        updated = repository.update_all_prices(portfolio_id, prices)
        if key is not None:
            idempotency.claim_key(repository.session, key, request, updated, [portfolio_id])
        return updated

    return body


def batch(
    updates: Mapping[UUID, Callable[[Portfolio], T]],
) -> Callable[[PostgreSQLPortfolioRepository], dict[UUID, T]]:
    """The unit of work of ``batch_update``: every portfolio locked in key order, all or nothing."""
    arguments.distinct_portfolio_ids(arguments.mapping(updates, "updates"))
    return lambda repository: repository.batch_update_portfolios(updates)


def history(
    portfolio_id: UUID, since_version: int | None
) -> Callable[[PostgreSQLPortfolioRepository], list[domain_events.PortfolioEvent]]:
    """The read of ``history``: the audit trail after ``since_version``."""
    arguments.version(since_version, "since_version")
    return lambda repository: repository.history(portfolio_id, since_version)


def replay(
    portfolio_id: UUID, version: int | None
) -> Callable[[PostgreSQLPortfolioRepository], Portfolio]:
    """The read of ``replay``: the portfolio rebuilt from its events up to ``version``."""
    arguments.version(version, "version", minimum=1)
    return lambda repository: repository.replay(portfolio_id, version)
