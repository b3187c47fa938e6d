"""The audit trail and idempotency keys: one event per version, each keyed request applied once.

Contract cases: each runs for the sync and the async flavour (the ``flavour``
fixture, tests/integration/conftest.py; API in contract_api.py).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from portfolio_core import (
    IdempotencyConflictError,
    Portfolio,
    PositionRequest,
)
from tests.integration.contract_api import Flavour

pytestmark = pytest.mark.asyncio


# -- audit trail and idempotency keys ---------------------------------------------------


async def test_history_has_one_event_per_version_and_replay_rebuilds_the_portfolio(
    flavour: Flavour,
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("1000"))
    other = await flavour.store.create_portfolio("beta", Decimal("0"))
    await flavour.store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 2, "100")))
    await flavour.store.update_all_prices(pid, {"AAPL": "120"})
    await flavour.store.transfer(pid, other, Decimal("50"))
    async with flavour.store.unit_of_work() as uow:
        (await uow.portfolios.get(pid)).deposit(Decimal("5"))
        await uow.commit()

    events = await flavour.store.history(pid)
    snapshot = await flavour.store.get(pid)
    replayed = await flavour.store.replay(pid)
    assert [event.version for event in events] == [1, 2, 3, 4, 5]
    assert len(await flavour.store.history(pid, since_version=3)) == 2
    assert (replayed.version, replayed.cash_balance) == (5, snapshot.cash_balance)
    assert replayed.positions["AAPL"].current_price == Decimal("120")
    assert (await flavour.store.replay(pid, 2)).cash_balance == Decimal("800")


async def test_idempotency_keys_apply_each_request_once(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("1000"))
    other = await flavour.store.create_portfolio("beta", Decimal("0"))
    await flavour.store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 1, "10")))

    def deposit(p: Portfolio) -> str:
        p.deposit(Decimal("7"))
        return str(p.cash_balance)

    first = await flavour.store.execute(pid, deposit, idempotency_key="dep-1")
    again = await flavour.store.execute(pid, deposit, lock="wait", idempotency_key="dep-1")
    with pytest.raises(IdempotencyConflictError):
        await flavour.store.execute(pid, lambda p: p.deposit(8), idempotency_key="dep-1")
    for _ in range(2):
        await flavour.store.transfer(pid, other, Decimal("100"), idempotency_key="tr-1")
        assert await flavour.store.update_all_prices(pid, {"AAPL": 11}, idempotency_key="px") == 1

    snapshot, target = await flavour.store.get(pid), await flavour.store.get(other)
    assert first == again == "997.00000000"
    assert (snapshot.cash_balance, target.cash_balance) == (Decimal("897"), Decimal("100"))
    assert snapshot.version == 5
    keys = [event.idempotency_key for event in await flavour.store.history(pid)]
    assert keys == [None, None, "dep-1", "tr-1", "px"]
