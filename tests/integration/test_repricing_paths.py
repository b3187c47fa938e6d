"""update_all_prices sends prices as two texts and reads rows back only when needed."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import pytest

from portfolio_core import Portfolio, PortfolioStore, Position, PositionRequest, UnitOfWork
from portfolio_core.async_store import AsyncPortfolioStore


class PositionOpener:
    """An operation for PortfolioStore.execute: open one position."""

    def __init__(self, request: PositionRequest) -> None:
        self.request = request

    def __call__(self, portfolio: Portfolio) -> Position:
        return portfolio.open_position(self.request)


def _portfolio_holding(store: PortfolioStore, *symbols: str) -> UUID:
    pid = store.create_portfolio("prices", Decimal("100000"))
    for symbol in symbols:
        store.execute(pid, PositionOpener(PositionRequest(symbol, 1, "10")))
    return pid


def test_symbols_that_look_like_sql_null_and_exponent_prices_are_stored_exactly(
    store: PortfolioStore,
) -> None:
    pid = _portfolio_holding(store, "NULL", "BRK.B", "X-1")
    before = store.get(pid).version

    updated = store.update_all_prices(
        pid, {"NULL": Decimal("1E+2"), "BRK.B": Decimal("0.00000001"), "X-1": "12.50", "ZZ": 5}
    )

    snapshot = store.get(pid)
    assert updated == 3
    assert snapshot.version == before + 1
    prices = {symbol: p.current_price for symbol, p in snapshot.positions.items()}
    assert prices == {"NULL": Decimal(100), "BRK.B": Decimal("0.00000001"), "X-1": Decimal("12.5")}


def test_positions_loaded_in_the_session_get_their_new_price_and_version(
    store: PortfolioStore,
) -> None:
    pid = _portfolio_holding(store, "AAPL", "MSFT")
    with UnitOfWork(store.engine) as uow:
        portfolio = uow.portfolios.get(pid)
        loaded = portfolio.positions  # loads the open positions into this session
        versions = {symbol: p.version for symbol, p in loaded.items()}
        assert uow.portfolios.update_all_prices(pid, {"AAPL": "11", "MSFT": "12"}) == 2
        assert loaded["AAPL"].current_price == Decimal(11)
        assert loaded["MSFT"].current_price == Decimal(12)
        assert {s: p.version for s, p in loaded.items()} == {s: v + 1 for s, v in versions.items()}
        uow.commit()
    assert store.get(pid).positions["MSFT"].current_price == Decimal(12)


def test_repricing_without_loaded_positions_counts_the_rows_it_changed(
    store: PortfolioStore,
) -> None:
    pid = _portfolio_holding(store, "AAPL", "MSFT")
    with UnitOfWork(store.engine) as uow:
        assert uow.portfolios.update_all_prices(pid, {"AAPL": "9", "NOPE": "1"}) == 1
        assert uow.portfolios.update_all_prices(pid, {"NOPE": "1"}) == 0
        uow.commit()
    snapshot = store.get(pid)
    assert snapshot.positions["AAPL"].current_price == Decimal(9)
    assert snapshot.positions["AAPL"].version == 2  # inserted at 1, re-priced once


class PositionCloser:
    """An operation for PortfolioStore.execute: close one position."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol

    def __call__(self, portfolio: Portfolio) -> None:
        portfolio.close_position(self.symbol, Decimal("10"))


def _recorded_prices(store: PortfolioStore, pid: UUID) -> object:
    (operation,) = store.history(pid)[-1].operations
    assert operation.kind == "update_all_prices"
    return operation.arguments["prices"]


def test_a_partial_match_records_only_the_prices_applied(store: PortfolioStore) -> None:
    pid = _portfolio_holding(store, "AAPL", "MSFT", "TSLA")
    store.execute(pid, PositionCloser("MSFT"))  # closed: not re-priced
    other = _portfolio_holding(store, "IBM")  # another portfolio's open position
    many = {f"X{n}": Decimal(n) for n in range(100)}  # also the compact event shape

    updated = store.update_all_prices(
        pid, {**many, "IBM": "7", "TSLA": "8", "MSFT": "9", "AAPL": "6", "NOPE": "1"}
    )

    assert updated == 2
    assert _recorded_prices(store, pid) == {"TSLA": Decimal(8), "AAPL": Decimal(6)}
    snapshot = store.get(pid)
    assert {s: p.current_price for s, p in snapshot.positions.items()} == {
        "AAPL": Decimal(6),
        "TSLA": Decimal(8),
    }
    assert store.get(other).positions["IBM"].current_price == Decimal(10)
    assert snapshot.cash_balance == store.replay(pid).cash_balance
    assert {s: p.current_price for s, p in store.replay(pid).positions.items()} == {
        "AAPL": Decimal(6),
        "TSLA": Decimal(8),
    }


def test_a_partial_match_with_positions_loaded_records_only_the_prices_applied(
    store: PortfolioStore,
) -> None:
    pid = _portfolio_holding(store, "AAPL", "MSFT")
    with UnitOfWork(store.engine) as uow:
        loaded = uow.portfolios.get(pid).positions  # the rows come back: no second read
        assert uow.portfolios.update_all_prices(pid, {"NOPE": "1", "MSFT": "12"}) == 1
        assert loaded["MSFT"].current_price == Decimal(12)
        uow.commit()

    assert _recorded_prices(store, pid) == {"MSFT": Decimal(12)}
    assert store.get(pid).positions["AAPL"].current_price == Decimal(10)


@pytest.mark.asyncio
async def test_the_async_store_records_only_the_prices_applied(
    async_store: AsyncPortfolioStore,
) -> None:
    pid = await async_store.create_portfolio("prices", Decimal("100000"))
    await async_store.execute(pid, PositionOpener(PositionRequest("AAPL", 1, "10")))

    assert await async_store.update_all_prices(pid, {"AAPL": "11", "NOPE": "2"}) == 1
    assert await async_store.update_all_prices(pid, {"AAPL": "12"}) == 1

    partial, full = (await async_store.history(pid))[-2:]
    assert partial.operations[0].arguments["prices"] == {"AAPL": Decimal(11)}
    assert full.operations[0].arguments["prices"] == {"AAPL": Decimal(12)}
