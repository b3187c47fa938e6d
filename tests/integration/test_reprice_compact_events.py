"""Bulk re-pricing: its compact event replays to the stored state; the older shape still does."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine, text

from portfolio_core import Portfolio, PortfolioStore, PositionRequest, UnitOfWork, ValidationError
from portfolio_core.async_store import AsyncPortfolioStore
from portfolio_core.domain import events
from portfolio_core.domain.events import COMPACT_PRICES_ABOVE

HELD = COMPACT_PRICES_ABOVE * 3  # positions held: half of them still make a compact event


def _symbol(n: int) -> str:
    return f"S{n:04d}"


def _open_all(portfolio: Portfolio) -> None:
    for n in range(HELD):
        portfolio.open_position(PositionRequest(_symbol(n), 1, "10"))


def _prices(round_number: int, count: int = HELD) -> dict[str, Decimal]:
    return {_symbol(n): Decimal(f"{10 + round_number}.{n % 100:02d}") for n in range(count)}


def _stored_operations(engine: Engine, pid: UUID) -> list[list[dict[str, Any]]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT operations::text FROM portfolio_events WHERE portfolio_id = :pid "
                "ORDER BY version"
            ),
            {"pid": pid},
        ).scalars()
        return [json.loads(row) for row in rows]


def _state(portfolio: Any) -> tuple[Decimal, dict[str, tuple[Decimal, Decimal]]]:
    """Cash and each open position's price and quantity (values: the column has 8 places)."""
    positions = portfolio.positions
    return portfolio.cash_balance, {
        symbol: (position.current_price, position.quantity)
        for symbol, position in positions.items()
    }


def test_a_bulk_repricing_writes_a_compact_event_that_replays_to_the_stored_state(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("bulk", Decimal("100000"))
    store.execute(pid, _open_all)
    # Every held symbol, plus a price for one the portfolio does not hold.
    assert store.update_all_prices(pid, {**_prices(1), "NOPE": Decimal(1)}) == HELD
    # Half of them, and exponent/trailing-zero prices that must stay exact.
    partial = {**_prices(2, HELD // 2), "S0000": Decimal("1E+2"), "S0001": Decimal("0.10000000")}
    partial.update({f"X{n}": Decimal(n) for n in range(COMPACT_PRICES_ABOVE)})
    assert store.update_all_prices(pid, partial) == HELD // 2

    stored = _stored_operations(engine, pid)
    full, half = stored[-2][0], stored[-1][0]
    assert full["kind"] == half["kind"] == "update_all_prices"
    assert full["arguments"]["symbols"].split(" ") == [_symbol(n) for n in range(HELD)]
    assert full["arguments"]["prices"].split(" ") == [str(p) for p in _prices(1).values()]
    # Only the prices applied are recorded, in the order they were given.
    assert half["arguments"]["symbols"].split(" ") == [_symbol(n) for n in range(HELD // 2)]
    assert half["arguments"]["prices"].split(" ")[:2] == ["100", "0.10000000"]
    history = store.history(pid)
    assert history[-1].operations[0].arguments["prices"] == {
        symbol: price for symbol, price in partial.items() if symbol.startswith("S")
    }
    assert _state(store.replay(pid)) == _state(store.get(pid))
    assert _state(store.replay(pid, history[-2].version)) != _state(store.get(pid))


def test_events_in_the_object_shape_of_earlier_versions_still_replay(
    store: PortfolioStore, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = store.create_portfolio("old", Decimal("100000"))
    store.execute(pid, _open_all)
    with monkeypatch.context() as patched:
        # As written before the compact shape existed: one JSON object of prices.
        patched.setattr(events, "COMPACT_PRICES_ABOVE", 10**9)
        store.update_all_prices(pid, _prices(1))
    store.update_all_prices(pid, _prices(2, HELD // 2))

    old, new = (operations[0]["arguments"] for operations in _stored_operations(engine, pid)[-2:])
    assert isinstance(old["prices"], dict)
    assert len(old["prices"]) == HELD
    assert isinstance(new["prices"], str)
    assert _state(store.replay(pid)) == _state(store.get(pid))
    at_old = store.replay(pid, store.get(pid).version - 1)
    assert {s: p.current_price for s, p in at_old.positions.items()} == _prices(1)


def test_a_bad_price_among_many_is_refused_before_any_sql(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("bad", Decimal("100000"))
    store.execute(pid, _open_all)
    version = store.get(pid).version
    for bad in (Decimal("NaN"), Decimal("-1"), Decimal("0.000000001"), "Infinity"):
        prices: dict[str, object] = dict(_prices(1))
        prices[_symbol(HELD // 2)] = bad
        with pytest.raises(ValidationError) as caught:
            store.update_all_prices(pid, prices, idempotency_key="k")  # type: ignore[arg-type]
        assert caught.value.field == f"prices['{_symbol(HELD // 2)}']"
    assert store.get(pid).version == version


def test_a_keyed_bulk_repricing_applies_once(store: PortfolioStore) -> None:
    pid = store.create_portfolio("keyed", Decimal("100000"))
    store.execute(pid, _open_all)
    version = store.get(pid).version

    results = [store.update_all_prices(pid, _prices(1), idempotency_key="once") for _ in range(2)]

    assert results == [HELD, HELD]
    assert store.get(pid).version == version + 1
    assert len(store.history(pid)) == version + 1


@pytest.mark.asyncio
async def test_the_async_store_writes_the_same_compact_event(
    async_store: AsyncPortfolioStore,
) -> None:
    pid = await async_store.create_portfolio("async", Decimal("100000"))
    await async_store.execute(pid, _open_all)

    assert await async_store.update_all_prices(pid, _prices(3)) == HELD

    (operation,) = (await async_store.history(pid))[-1].operations
    assert operation.arguments["prices"] == _prices(3)
    assert _state(await async_store.replay(pid)) == _state(await async_store.get(pid))


def test_repricing_then_a_domain_change_in_one_unit_of_work_write_one_event(
    store: PortfolioStore,
) -> None:
    pid = store.create_portfolio("mixed", Decimal("100000"))
    store.execute(pid, _open_all)
    version = store.get(pid).version
    with UnitOfWork(store.engine) as uow:
        # The SQL path bumps the version; the flush after it must not bump again.
        assert uow.portfolios.update_all_prices(pid, _prices(4)) == HELD
        uow.portfolios.get(pid).deposit(Decimal("5"))
        uow.commit()

    history = store.history(pid)
    assert store.get(pid).version == version + 1 == history[-1].version == len(history)
    assert [op.kind for op in history[-1].operations] == ["update_all_prices", "deposit"]
    assert _state(store.replay(pid)) == _state(store.get(pid))
