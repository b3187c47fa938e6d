"""Batch updates and repricing: versions, money invariant, identity map, statement counts.

update_portfolio_atomic is tested once, for both flavours, in test_contract_atomic_update.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Connection, Engine, event, func, select

from portfolio_core import (
    InsufficientFundsError,
    Portfolio,
    PortfolioStore,
    PositionRequest,
    UnitOfWork,
)
from portfolio_core.persistence.schema import positions


@contextmanager
def counted_statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent through ``engine`` during the block."""
    statements: list[str] = []

    def record(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


# -- batch_update_portfolios -------------------------------------------------------


def test_batch_update_is_all_or_nothing(store: PortfolioStore) -> None:
    ids = [store.create_portfolio(f"b{i}", Decimal("100")) for i in range(3)]
    updates: dict[UUID, Callable[[Portfolio], object]] = {
        ids[0]: lambda p: p.deposit(Decimal("10")),
        ids[1]: lambda p: p.withdraw(Decimal("1000")),
        ids[2]: lambda p: p.deposit(Decimal("10")),
    }

    with pytest.raises(InsufficientFundsError):
        store.batch_update(updates)

    for pid in ids:
        after = store.get(pid)
        assert (after.cash_balance, after.version) == (Decimal("100"), 1)


def test_batch_update_bumps_each_touched_portfolio_exactly_once(
    store: PortfolioStore, engine: Engine
) -> None:
    ids = [store.create_portfolio(f"b{i}", Decimal("100")) for i in range(3)]

    def several_changes(portfolio: Portfolio) -> Decimal:
        portfolio.deposit(Decimal("5"))
        portfolio.open_position(PositionRequest("MSFT", 1, "20"))
        portfolio.update_position_price("MSFT", "21")
        return portfolio.cash_balance

    with UnitOfWork(engine) as uow:
        results = uow.portfolios.batch_update_portfolios(
            {ids[0]: several_changes, ids[1]: several_changes, ids[2]: lambda p: None}
        )
        uow.commit()

    assert results == {ids[0]: Decimal("85"), ids[1]: Decimal("85"), ids[2]: None}
    for pid in ids[:2]:
        after = store.get(pid)
        assert (after.cash_balance, after.version) == (Decimal("85"), 2)
        assert after.money_invariant_holds()
    assert store.get(ids[2]).version == 1


# -- update_all_prices -------------------------------------------------------------


def portfolio_with_positions(engine: Engine, count: int) -> UUID:
    portfolio = Portfolio(f"n{count}", Decimal("1000000"))
    for i in range(count):
        portfolio.open_position(PositionRequest(f"S{i}", 1, "10"))
    with UnitOfWork(engine) as uow:
        uow.portfolios.add(portfolio)
        uow.commit()
    return portfolio.id


def reprice_counting_statements(engine: Engine, count: int) -> int:
    pid = portfolio_with_positions(engine, count)
    prices = {f"S{i}": Decimal("12.5") for i in range(count)}
    with UnitOfWork(engine) as uow:
        loaded = uow.portfolios.get(pid)
        watched = loaded.positions["S0"]
        assert watched.version == 1
        with counted_statements(engine) as statements:
            assert uow.portfolios.update_all_prices(pid, prices) == count
        # The objects already in the session show the database's new state.
        assert (watched.current_price, watched.version) == (Decimal("12.5"), 2)
        assert loaded.version == 2
        uow.commit()
    with UnitOfWork(engine) as uow:
        after = uow.portfolios.get_snapshot(pid)
        assert after.version == 2
        assert {p.current_price for p in after.positions.values()} == {Decimal("12.5")}
        assert after.money_invariant_holds()
        repriced = uow.session.scalar(
            select(func.count()).where(positions.c.portfolio_id == pid, positions.c.version == 2)
        )
        assert repriced == count
    return len(statements)


def test_update_all_prices_issues_the_same_statements_for_10_and_500_positions(
    engine: Engine,
) -> None:
    small = reprice_counting_statements(engine, 10)
    large = reprice_counting_statements(engine, 500)

    assert small == large
    assert small <= 3


def test_update_all_prices_then_more_changes_still_bumps_once(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = portfolio_with_positions(engine, 3)

    with UnitOfWork(engine) as uow:
        loaded = uow.portfolios.get(pid)
        uow.portfolios.update_all_prices(pid, {"S1": "11", "UNHELD": "3"})
        loaded.deposit(Decimal("1"))
        loaded.update_position_price("S2", "9")
        uow.commit()

    after = store.get(pid)
    assert after.version == 2
    assert (after.positions["S1"].current_price, after.positions["S2"].current_price) == (
        Decimal("11"),
        Decimal("9"),
    )


def test_store_update_all_prices_ignores_unheld_symbols_and_skips_bump_when_nothing_matched(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = portfolio_with_positions(engine, 2)

    assert store.update_all_prices(pid, {"S0": "11", "ZZZ": "1"}) == 1
    assert store.update_all_prices(pid, {"ZZZ": "1"}) == 0

    after = store.get(pid)
    assert after.version == 2
    assert after.positions["S0"].current_price == Decimal("11")
