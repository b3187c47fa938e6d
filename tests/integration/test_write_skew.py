"""Write skew: two portfolios whose combined cash must stay >= a floor.

Each withdrawal reads the other portfolio to check the floor, then changes
only its own. The optimistic version check guards the row it writes, not the
one it read, so at READ COMMITTED two such withdrawals can both commit and
break the floor (documented below, not prevented). SERIALIZABLE prevents it
(one of them fails with 40001 and its retry sees the other), and so does
locking both rows, as batch_update and transfer do, at the default level.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import Engine

from portfolio_core import (
    ConcurrencyService,
    Portfolio,
    PortfolioStore,
    SerializationFailureException,
    UnitOfWork,
)
from portfolio_core.persistence.isolation import IsolationLevel
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository
from tests.integration.helpers import create_portfolio, wait_until_blocked

FLOOR = Decimal("100")
AMOUNT = Decimal("30")


def allowed(take_from: Portfolio, other: Portfolio) -> bool:
    """The business rule: withdraw only if the combined cash stays at or above FLOOR."""
    return take_from.cash_balance + other.cash_balance - AMOUNT >= FLOOR


def guarded_withdrawal(
    repository: PostgreSQLPortfolioRepository, take_from: UUID, other: UUID
) -> bool:
    """Read both portfolios (plain reads), withdraw from ``take_from`` if the rule allows."""
    source, counterpart = repository.get(take_from), repository.get(other)
    if not allowed(source, counterpart):
        return False
    source.withdraw(AMOUNT)
    return True


def combined(store: PortfolioStore, a: UUID, b: UUID) -> Decimal:
    return store.get(a).cash_balance + store.get(b).cash_balance


@pytest.fixture
def pair(engine: Engine) -> tuple[UUID, UUID]:
    """Two portfolios of 70 each: 140 combined, room for one withdrawal of 30, not two."""
    return create_portfolio(engine, Decimal("70"), "a"), create_portfolio(
        engine, Decimal("70"), "b"
    )


def interleaved(
    engine: Engine, a: UUID, b: UUID, isolation: IsolationLevel | None, *, first: Callable[[], None]
) -> bool:
    """Withdraw from ``b`` after reading both, with ``first`` committing in between."""
    with UnitOfWork(engine, isolation=isolation) as uow:
        source, counterpart = uow.portfolios.get(b), uow.portfolios.get(a)
        first()
        if not allowed(source, counterpart):
            return False
        source.withdraw(AMOUNT)
        uow.commit()
        return True


def test_optimistic_single_portfolio_updates_do_not_prevent_write_skew(
    engine: Engine, store: PortfolioStore, pair: tuple[UUID, UUID]
) -> None:
    """Documented limitation: at READ COMMITTED both withdrawals commit."""
    a, b = pair

    def other_withdrawal() -> None:
        with UnitOfWork(engine) as uow:
            assert guarded_withdrawal(uow.portfolios, a, b)
            uow.commit()

    assert interleaved(engine, a, b, None, first=other_withdrawal)
    assert combined(store, a, b) == Decimal("80")  # below FLOOR: the anomaly


def test_serializable_refuses_the_second_withdrawal_and_its_retry_sees_the_first(
    engine: Engine, service: ConcurrencyService, pair: tuple[UUID, UUID]
) -> None:
    a, b = pair
    attempts: list[bool] = []

    def other_withdrawal() -> None:
        with UnitOfWork(engine, isolation="serializable") as uow:
            assert guarded_withdrawal(uow.portfolios, a, b)
            uow.commit()

    def attempt() -> bool:
        attempts.append(True)
        if len(attempts) == 1:
            return interleaved(engine, a, b, "serializable", first=other_withdrawal)
        with UnitOfWork(engine, isolation="serializable") as uow:
            done = guarded_withdrawal(uow.portfolios, b, a)
            uow.commit()
            return done

    assert service.run(attempt, entity_id=b) is False
    assert len(attempts) == 2
    assert service.get_metrics()["serialization_failures"] == 1
    assert service.get_metrics()["version_conflicts"] == 0
    store = PortfolioStore(engine, service, isolation="serializable")
    assert combined(store, a, b) == Decimal("110")


def test_serializable_unit_of_work_raises_serialization_failure_without_retry(
    engine: Engine, store: PortfolioStore, pair: tuple[UUID, UUID]
) -> None:
    a, b = pair

    def other_withdrawal() -> None:
        with UnitOfWork(engine, isolation="serializable") as uow:
            assert guarded_withdrawal(uow.portfolios, a, b)
            uow.commit()

    with pytest.raises(SerializationFailureException):
        interleaved(engine, a, b, "serializable", first=other_withdrawal)
    assert combined(store, a, b) == Decimal("110")


def test_batch_update_locking_prevents_write_skew_at_read_committed(
    engine: Engine, store: PortfolioStore, pair: tuple[UUID, UUID]
) -> None:
    """Both rows locked (batch_update): the second withdrawal waits, then sees the first."""
    a, b = pair
    later = max(a, b)  # batch_update applies its ops in id order: the last sees both
    outcome: list[object] = []

    def withdraw_from_b() -> None:
        seen: dict[UUID, Portfolio] = {}

        def op(portfolio: Portfolio) -> bool:
            seen[portfolio.id] = portfolio
            if portfolio.id != later:
                return False
            if not allowed(seen[b], seen[a]):
                return False
            seen[b].withdraw(AMOUNT)
            return True

        try:
            outcome.append(store.batch_update({a: op, b: op})[later])
        except BaseException as error:  # reported to the main thread
            outcome.append(error)

    with UnitOfWork(engine) as holder:
        locked = {p.id: p for p in holder.portfolios.get_portfolios_for_update([a, b])}
        assert allowed(locked[a], locked[b])
        locked[a].withdraw(AMOUNT)
        waiter = threading.Thread(target=withdraw_from_b)
        waiter.start()
        wait_until_blocked(engine)
        holder.commit()
    waiter.join()

    assert outcome == [False]
    assert combined(store, a, b) == Decimal("110")
