"""Row locks and deadlocks: NOWAIT, lock_timeout, SKIP LOCKED, deadlock victims retried.

Contract cases: each runs for the sync and the async flavour (the ``flavour``
fixture, tests/integration/conftest.py; API in contract_api.py). A second
party, when a race is the point, is a plain psycopg2 connection driven from a
thread, ordered by threading.Event and by waiting until PostgreSQL shows the
lock wait (helpers.wait_until_blocked), never by sleeps.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from portfolio_core import (
    DeadlockException,
    PessimisticLockException,
)
from tests.integration.contract_api import Flavour
from tests.integration.helpers import (
    backend_pid,
    row_locked,
    wait_until_blocked,
)

pytestmark = pytest.mark.asyncio


# -- pessimistic locks -------------------------------------------------------------------


async def test_nowait_on_a_held_row_fails_and_leaves_the_unit_of_work_usable(
    flavour: Flavour, engine: Engine
) -> None:
    busy = await flavour.store.create_portfolio("busy", Decimal("100"))
    free = await flavour.store.create_portfolio("free", Decimal("100"))

    with row_locked(engine, busy):
        async with flavour.store.unit_of_work() as uow:
            (await uow.portfolios.get(free)).deposit(Decimal("7"))
            with pytest.raises(PessimisticLockException) as raised:
                await uow.portfolios.get_portfolio_for_update(busy, nowait=True)
            await uow.commit()

    assert raised.value.sqlstate == "55P03"
    assert (raised.value.entity_type, raised.value.entity_id) == ("Portfolio", busy)
    after = await flavour.store.get(free)
    assert (after.cash_balance, after.version) == (Decimal("107"), 2)
    assert (await flavour.store.get(busy)).version == 1


async def test_lock_timeout_is_honoured_and_reported(flavour: Flavour, engine: Engine) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    with row_locked(engine, pid):
        async with flavour.store.unit_of_work() as uow:
            with pytest.raises(PessimisticLockException) as raised:
                await uow.portfolios.get_portfolio_for_update(pid, nowait=False, lock_timeout=0.05)
            # The session's own setting (none) is back once the lock was refused.
            assert str(await flavour.scalar(uow, "SHOW lock_timeout")) == "0"

    assert raised.value.timeout == 0.05
    assert raised.value.sqlstate == "55P03"


async def test_lock_timeout_is_restored_after_a_refused_and_a_granted_lock(
    flavour: Flavour, engine: Engine
) -> None:
    free = await flavour.store.create_portfolio("free", Decimal("100"))
    busy = await flavour.store.create_portfolio("busy", Decimal("100"))

    with row_locked(engine, busy):
        async with flavour.store.unit_of_work() as uow:
            await flavour.scalar(uow, "SELECT set_config('lock_timeout', '7s', true)")

            with pytest.raises(PessimisticLockException):
                await uow.portfolios.get_portfolio_for_update(busy, nowait=False, lock_timeout=0.05)
            assert str(await flavour.scalar(uow, "SHOW lock_timeout")) == "7s"

            await uow.portfolios.get_portfolio_for_update(free, nowait=False, lock_timeout=2.5)
            assert str(await flavour.scalar(uow, "SHOW lock_timeout")) == "7s"


async def test_skip_locked_returns_only_the_rows_nobody_holds(
    flavour: Flavour, engine: Engine
) -> None:
    ids = sorted([await flavour.store.create_portfolio(f"p{i}", Decimal("1")) for i in range(4)])

    with row_locked(engine, ids[0], ids[2]):
        async with flavour.store.unit_of_work() as uow:
            locked = await uow.portfolios.get_portfolios_for_update(ids, skip_locked=True)
            locked_ids = [p.id for p in locked]

    assert locked_ids == [ids[1], ids[3]]


async def test_execute_nowait_exhaustion_counts_lock_timeouts(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    with row_locked(engine, pid), pytest.raises(PessimisticLockException) as raised:
        await flavour.store.execute(pid, lambda p: p.deposit(Decimal("1")), lock="nowait")

    assert raised.value.retries == 5
    assert flavour.store.metrics()["lock_timeouts"] == 6
    assert flavour.store.metrics()["failed_retries"] == 1


async def test_deadlock_is_classified_counted_and_retried(flavour: Flavour, engine: Engine) -> None:
    first = await flavour.store.create_portfolio("first", Decimal("100"))
    second = await flavour.store.create_portfolio("second", Decimal("100"))
    holder_has_first = threading.Event()
    holder_may_continue = threading.Event()
    holder_committed = threading.Event()
    holder_pid: list[int] = []

    def holder() -> None:
        # Locks first then second. Its deadlock_timeout is long, so the
        # library's transaction, whose check fires first, is the victim.
        with engine.connect() as connection, connection.begin():
            connection.execute(text("SET LOCAL deadlock_timeout = '60s'"))
            holder_pid.append(backend_pid(connection))
            connection.execute(
                text("SELECT 1 FROM portfolios WHERE id = :id FOR UPDATE"), {"id": first}
            )
            holder_has_first.set()
            holder_may_continue.wait(30)
            connection.execute(
                text("SELECT 1 FROM portfolios WHERE id = :id FOR UPDATE"), {"id": second}
            )
        holder_committed.set()

    thread = threading.Thread(target=holder)
    thread.start()
    holder_has_first.wait(30)
    attempts = 0

    async def lock_second_then_first() -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            # Else the retry may take the row back before the woken holder re-checks
            # it, and deadlock again: that race is PostgreSQL's, not under test.
            holder_committed.wait(30)
        async with flavour.store.unit_of_work() as uow:
            (await uow.portfolios.get_portfolio_for_update(second, nowait=False)).deposit(1)
            if attempts == 1:
                holder_may_continue.set()
                wait_until_blocked(engine, holder_pid[0])
            (await uow.portfolios.get_portfolio_for_update(first, nowait=False)).deposit(1)
            await uow.commit()

    try:
        await flavour.retried(lock_second_then_first, (first, second))
    finally:
        holder_may_continue.set()
        thread.join(30)

    assert attempts == 2
    assert flavour.store.metrics()["deadlocks_detected"] == 1
    assert flavour.store.metrics()["successful_retries"] == 1
    assert (await flavour.store.get(first)).cash_balance == Decimal("101")


async def test_deadlock_exhaustion_raises_deadlock_exception_chained(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("1"))

    async def raise_deadlock() -> None:
        async with flavour.store.unit_of_work() as uow:
            await uow.portfolios.get(pid)
            raise DeadlockException("forced", entities=[("Portfolio", pid)])

    with pytest.raises(DeadlockException) as raised:
        await flavour.retried(raise_deadlock, pid)

    assert raised.value.retries == 5
    assert isinstance(raised.value.__cause__, DeadlockException)
    assert flavour.store.metrics()["deadlocks_detected"] == 6
    assert flavour.store.metrics()["failed_retries"] == 1
