"""The store's everyday work: create, execute, units of work, several rows at once.

Contract cases: each runs for the sync and the async flavour (the ``flavour``
fixture, tests/integration/conftest.py; API in contract_api.py).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from portfolio_core import (
    InsufficientFundsError,
    Portfolio,
    PositionRequest,
)
from portfolio_core.store_call import LOCK_MODES, LockMode
from tests.integration.contract_api import Flavour

pytestmark = pytest.mark.asyncio


# -- create / get / execute ------------------------------------------------------------


@pytest.mark.parametrize("lock", LOCK_MODES)
async def test_execute_commits_each_change_with_one_version_bump(
    flavour: Flavour, lock: LockMode
) -> None:
    store = flavour.store
    pid = await store.create_portfolio("alpha", Decimal("10000"))

    await store.execute(pid, lambda p: p.deposit(Decimal("250")), lock=lock)
    await store.execute(
        pid, lambda p: p.open_position(PositionRequest("AAPL", 10, "150")), lock=lock
    )
    pnl = await store.execute(pid, lambda p: p.close_position("AAPL", "160", 4), lock=lock)

    snapshot = await store.get(pid)
    assert pnl == Decimal("40")
    assert snapshot.version == 4
    assert snapshot.cash_balance == Decimal("9390")
    assert snapshot.positions["AAPL"].quantity == Decimal("6")
    assert [p.symbol for p in snapshot.closed_positions] == []
    assert snapshot.money_invariant_holds()


async def test_unit_of_work_reads_back_what_another_one_committed(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    async with flavour.store.unit_of_work() as uow:
        portfolio = await uow.portfolios.get(pid)
        portfolio.open_position(PositionRequest("MSFT", 1, "10"))
        await uow.commit()

    async with flavour.store.unit_of_work() as uow:
        # Read inside the block: leaving it rolls back, which expires what was loaded.
        listed = [p.id for p in await uow.portfolios.list()]
        loaded = await uow.portfolios.get(pid)
        quantity, version = loaded.positions["MSFT"].quantity, loaded.version

    assert listed == [pid]
    assert (quantity, version) == (Decimal("1"), 2)


# -- several rows at once ------------------------------------------------------------------


async def test_update_all_prices_bumps_the_version_once(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100000"))

    def open_three(p: Portfolio) -> None:
        for symbol in ("AAPL", "MSFT", "NVDA"):
            p.open_position(PositionRequest(symbol, 10, "100"))

    await flavour.store.execute(pid, open_three)
    updated = await flavour.store.update_all_prices(
        pid, {"AAPL": "110", "MSFT": "90.5", "NVDA": "100.00000001", "TSLA": "1"}
    )

    snapshot = await flavour.store.get(pid)
    assert updated == 3
    assert snapshot.version == 3
    assert snapshot.positions["MSFT"].current_price == Decimal("90.5")
    assert snapshot.positions["NVDA"].current_price == Decimal("100.00000001")
    assert snapshot.market_value == Decimal("3005.0000001")


async def test_transfer_moves_cash_atomically_and_refuses_overdrafts(flavour: Flavour) -> None:
    a = await flavour.store.create_portfolio("a", Decimal("100"))
    b = await flavour.store.create_portfolio("b", Decimal("100"))

    await flavour.store.transfer(a, b, Decimal("30.5"))
    await flavour.store.transfer(b, a, "0.5")
    with pytest.raises(InsufficientFundsError):
        await flavour.store.transfer(a, b, Decimal("1000"))

    first, second = await flavour.store.get(a), await flavour.store.get(b)
    assert (first.cash_balance, second.cash_balance) == (Decimal("70"), Decimal("130"))
    assert (first.version, second.version) == (3, 3)


async def test_batch_update_is_all_or_nothing_with_one_bump_each(flavour: Flavour) -> None:
    ids = [await flavour.store.create_portfolio(f"p{i}", Decimal("100")) for i in range(3)]

    def twice(p: Portfolio) -> Decimal:
        p.deposit(Decimal("1"))
        p.deposit(Decimal("2"))
        return p.cash_balance

    results = await flavour.store.batch_update(dict.fromkeys(ids, twice))
    failing = {ids[0]: twice, ids[1]: twice, ids[2]: lambda p: p.withdraw(Decimal("1000"))}
    with pytest.raises(InsufficientFundsError):
        await flavour.store.batch_update(failing)

    snapshots = [await flavour.store.get(pid) for pid in ids]
    assert results == dict.fromkeys(ids, Decimal("103"))
    assert [s.cash_balance for s in snapshots] == [Decimal("103")] * 3
    assert [s.version for s in snapshots] == [2, 2, 2]


async def test_open_position_transactional_commits_on_its_own(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("1000"))

    async with flavour.store.unit_of_work() as uow:
        position = await uow.portfolios.open_position_transactional(
            pid, PositionRequest("AAPL", 2, "100")
        )
        # The enclosing unit of work is never committed: the position still is.

    snapshot = await flavour.store.get(pid)
    assert position.quantity == Decimal("2")
    assert snapshot.positions["AAPL"].id == position.id
    assert snapshot.cash_balance == Decimal("800")
