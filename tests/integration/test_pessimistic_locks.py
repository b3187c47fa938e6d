"""Row locks: NOWAIT and SKIP LOCKED against a lock another transaction holds (sync only).

NOWAIT on a held row, lock_timeout and SKIP LOCKED over several rows are
contract cases, for both flavours, in test_contract_row_locks.py.

Each race is set up with a second connection that takes the lock first; the
code under test then meets a lock that is certainly held.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, text

from portfolio_core import (
    PessimisticLockException,
    PortfolioNotFoundError,
    PortfolioStore,
    UnitOfWork,
    ValidationError,
)
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.store import LOCK_MODES, LockMode
from tests.integration.helpers import backend_pid, row_locked, wait_until_blocked


@pytest.fixture
def pair(store: PortfolioStore) -> tuple[UUID, UUID]:
    return store.create_portfolio("p", Decimal("100")), store.create_portfolio("q", Decimal("100"))


def test_repeated_refused_locks_keep_work_already_sent_to_the_database(
    store: PortfolioStore, engine: Engine, pair: tuple[UUID, UUID]
) -> None:
    p, q = pair
    with row_locked(engine, q), UnitOfWork(engine) as uow:
        uow.portfolios.update_portfolio_atomic(p, {"name": "renamed"}, expected_version=1)
        for _ in range(3):
            with pytest.raises(PessimisticLockException):
                uow.portfolios.get_portfolio_for_update(q)
        uow.portfolios.get(p).deposit(Decimal("1"))
        uow.commit()

    after = store.get(p)
    # One bump for the whole unit of work, though savepoints came and went.
    assert (after.name, after.cash_balance, after.version) == ("renamed", Decimal("101"), 2)


def test_lock_in_a_savepoint_does_not_bump_a_portfolio_twice(
    store: PortfolioStore, engine: Engine, pair: tuple[UUID, UUID]
) -> None:
    p, q = pair
    with UnitOfWork(engine) as uow:
        uow.portfolios.update_portfolio_atomic(p, {"name": "renamed"}, expected_version=1)
        uow.portfolios.get_portfolio_for_update(q).deposit(Decimal("2"))
        uow.portfolios.get(p).deposit(Decimal("1"))
        uow.commit()

    assert store.get(p).version == 2
    assert store.get(q).version == 2


def test_refused_lock_in_a_fresh_unit_of_work_leaves_it_usable(
    store: PortfolioStore, engine: Engine, pair: tuple[UUID, UUID]
) -> None:
    p, q = pair
    with row_locked(engine, q), UnitOfWork(engine) as uow:
        with pytest.raises(PessimisticLockException):
            uow.portfolios.get_portfolio_for_update(q)
        uow.portfolios.get_portfolio_for_update(p).withdraw(Decimal("30"))
        uow.commit()

    assert store.get(p).cash_balance == Decimal("70")


def test_skip_locked_on_one_held_portfolio_raises(store: PortfolioStore, engine: Engine) -> None:
    held = store.create_portfolio("held", Decimal("1"))
    free = store.create_portfolio("free", Decimal("1"))

    with row_locked(engine, held), UnitOfWork(engine) as uow:
        with pytest.raises(PessimisticLockException) as caught:
            uow.portfolios.get_portfolio_for_update(held, skip_locked=True)
        assert caught.value.entity_id == held
        assert uow.portfolios.get_portfolio_for_update(free, skip_locked=True).id == free


def test_nowait_and_skip_locked_together_are_rejected(
    engine: Engine, pair: tuple[UUID, UUID]
) -> None:
    with UnitOfWork(engine) as uow, pytest.raises(ValidationError):
        uow.portfolios.get_portfolios_for_update(pair, nowait=True, skip_locked=True)


def test_waiting_for_a_lock_returns_the_data_committed_meanwhile(
    store: PortfolioStore, engine: Engine, pair: tuple[UUID, UUID]
) -> None:
    p, _ = pair
    holder = engine.connect()
    holder.begin()
    holder.execute(
        text(
            "UPDATE portfolios SET cash_balance = cash_balance + 5, "
            "total_deposits = total_deposits + 5, version = version + 1 WHERE id = :pid"
        ),
        {"pid": p},
    )
    with UnitOfWork(engine) as uow:
        loaded_before = uow.portfolios.get(p)
        assert loaded_before.cash_balance == Decimal("100")
        waiter = backend_pid(uow.session)

        def release_once_waited_for() -> None:
            wait_until_blocked(engine, waiter)
            holder.commit()
            holder.close()

        releaser = threading.Thread(target=release_once_waited_for)
        releaser.start()
        locked = uow.portfolios.get_portfolio_for_update(p, nowait=False)
        releaser.join()

        assert locked is loaded_before
        assert (locked.cash_balance, locked.version) == (Decimal("105"), 2)
        locked.deposit(Decimal("1"))
        uow.commit()

    after = store.get(p)
    assert (after.cash_balance, after.version) == (Decimal("106"), 3)
    assert after.money_invariant_holds()


@pytest.mark.parametrize("lock", LOCK_MODES)
def test_missing_portfolio_is_not_found_in_every_lock_mode_and_not_retried(
    store: PortfolioStore, service: ConcurrencyService, lock: LockMode
) -> None:
    with pytest.raises(PortfolioNotFoundError):
        store.execute(uuid4(), lambda p: p.deposit(Decimal("1")), lock=lock)

    assert service.get_metrics() == dict.fromkeys(service.get_metrics(), 0)


def test_skip_locked_on_a_missing_portfolio_is_not_found(engine: Engine) -> None:
    with UnitOfWork(engine) as uow, pytest.raises(PortfolioNotFoundError):
        uow.portfolios.get_portfolio_for_update(uuid4(), skip_locked=True)
