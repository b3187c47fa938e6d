"""entity_lock / async_entity_lock: advisory locks that exclude other connections.

Contract cases: each runs for the sync and the async flavour (the ``flavour``
fixture, tests/integration/conftest.py; API in contract_api.py). Whether the
lock is held is probed from another connection (helpers.held_elsewhere).
Sync-only cases (another OS process, a plain Session, inside ``run``) are in
test_entity_lock.py.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine

from portfolio_core import ConcurrencyService, PessimisticLockException
from tests.integration.contract_api import Flavour
from tests.integration.helpers import held_elsewhere

pytestmark = pytest.mark.asyncio


async def test_entity_lock_times_out_cleanly_and_is_free_after_the_block(
    flavour: Flavour, engine: Engine
) -> None:
    async with flavour.entity_lock("Portfolio", "p-1", timeout=0.05):
        assert held_elsewhere(engine, "p-1")
        for timeout in (0, 0.05):
            with pytest.raises(PessimisticLockException) as raised:
                async with flavour.entity_lock("Portfolio", "p-1", timeout=timeout):
                    pytest.fail("the lock is held by the outer block")
            assert (raised.value.entity_type, raised.value.entity_id) == ("Portfolio", "p-1")
            assert raised.value.timeout == timeout
        # Other entities are not affected.
        async with flavour.entity_lock("Portfolio", "p-2", timeout=0):
            pass

    assert not held_elsewhere(engine, "p-1")
    # The outer lock, obtained within its timeout, counts nothing.
    assert flavour.store.metrics()["lock_timeouts"] == 2


async def test_entity_lock_joins_the_unit_of_work_transaction(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("joined", Decimal("1"))

    async with flavour.store.unit_of_work() as uow:
        async with flavour.entity_lock("Portfolio", pid, uow=uow):
            assert held_elsewhere(engine, pid)
        # A transaction-level lock: held until the unit of work's transaction ends.
        assert held_elsewhere(engine, pid)
        (await uow.portfolios.get(pid)).deposit(Decimal("1"))
        await uow.commit()
        assert not held_elsewhere(engine, pid)

    assert (await flavour.store.get(pid)).cash_balance == Decimal("2")


async def test_refused_entity_lock_leaves_the_unit_of_work_usable(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("usable", Decimal("100"))
    other = await flavour.store.create_portfolio("other", Decimal("100"))

    with ConcurrencyService(engine).entity_lock("Portfolio", pid):
        async with flavour.store.unit_of_work() as uow:
            await uow.portfolios.update_portfolio_atomic(other, {"name": "renamed"}, 1)
            (await uow.portfolios.get(other)).deposit(Decimal("5"))
            (await uow.portfolios.get(pid)).deposit(Decimal("1"))
            for timeout in (0, 0.05):
                with pytest.raises(PessimisticLockException) as raised:
                    async with flavour.entity_lock("Portfolio", pid, timeout=timeout, uow=uow):
                        pytest.fail("the lock is held elsewhere")
                assert raised.value.timeout == timeout
            assert str(await flavour.scalar(uow, "SHOW lock_timeout")) == "0"
            await uow.commit()

    after = await flavour.store.get(other)
    assert (after.name, after.cash_balance, after.version) == ("renamed", Decimal("105"), 2)
    assert (await flavour.store.get(pid)).cash_balance == Decimal("101")
    assert flavour.store.metrics()["lock_timeouts"] == 2
