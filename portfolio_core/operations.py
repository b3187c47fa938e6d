"""The bodies of PortfolioStore's units of work, as functions of a sync repository.

PortfolioStore runs each inside a UnitOfWork; AsyncPortfolioStore runs the
very same function inside an AsyncUnitOfWork (``run_sync``), so the two stores
cannot drift apart: which rows are locked, in which order, and how.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Literal, TypeVar
from uuid import UUID

from portfolio_core.domain import money
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import ValidationError
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


def apply_operation(
    portfolio_id: UUID,
    operation: Callable[[Portfolio], T],
    lock: LockMode,
    lock_timeout: float | None,  # float-ok: seconds
) -> Callable[[PostgreSQLPortfolioRepository], T]:
    """The unit of work of ``execute``: load per ``lock``, call ``operation``."""

    def body(repository: PostgreSQLPortfolioRepository) -> T:
        return operation(load_for_change(repository, portfolio_id, lock, lock_timeout))

    return body


def transfer_arguments(
    from_id: UUID, to_id: UUID, amount: money.AmountLike
) -> tuple[UUID, UUID, Decimal]:
    """Validated (source, target, amount) of a transfer, before any SQL."""
    source, target = as_portfolio_id(from_id), as_portfolio_id(to_id)
    if source == target:
        raise ValidationError("to_id", to_id, "must differ from from_id")
    return source, target, money.positive(amount, "amount")


def transfer_cash(
    source: UUID, target: UUID, amount: Decimal
) -> Callable[[PostgreSQLPortfolioRepository], None]:
    """The unit of work of ``transfer``: both rows locked in primary-key order, then moved."""

    def body(repository: PostgreSQLPortfolioRepository) -> None:
        locked = {p.id: p for p in repository.get_portfolios_for_update([source, target])}
        locked[source].withdraw(amount)
        locked[target].deposit(amount)

    return body


def detached_snapshot(repository: PostgreSQLPortfolioRepository, portfolio_id: UUID) -> Portfolio:
    """The portfolio with all its positions, detached from the session."""
    portfolio = repository.get_snapshot(portfolio_id)
    repository.session.expunge_all()
    return portfolio


def reprice(
    portfolio_id: UUID, prices: Mapping[str, money.AmountLike]
) -> Callable[[PostgreSQLPortfolioRepository], int]:
    """The unit of work of ``update_all_prices``."""
    return lambda repository: repository.update_all_prices(portfolio_id, prices)


def batch(
    updates: Mapping[UUID, Callable[[Portfolio], T]],
) -> Callable[[PostgreSQLPortfolioRepository], dict[UUID, T]]:
    """The unit of work of ``batch_update``: every portfolio locked in key order, all or nothing."""
    return lambda repository: repository.batch_update_portfolios(updates)
