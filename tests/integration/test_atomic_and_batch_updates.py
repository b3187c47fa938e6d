"""Single-statement and batch updates: versions, money invariant, identity map, statement counts."""

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
    StaleDataException,
    UnitOfWork,
    ValidationError,
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


# -- update_portfolio_atomic -------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [{"version": 9}, {"realized_pnl": Decimal("1")}, {"name": "x", "initial_cash": 5}, {}],
    ids=["version", "realized_pnl", "initial_cash", "nothing"],
)
def test_atomic_update_accepts_only_allow_listed_fields(
    store: PortfolioStore, engine: Engine, fields: dict[str, Any]
) -> None:
    pid = store.create_portfolio("atomic", Decimal("100"))

    with UnitOfWork(engine) as uow, pytest.raises(ValidationError):
        uow.portfolios.update_portfolio_atomic(pid, fields, expected_version=1)

    assert store.get(pid).version == 1


def test_atomic_update_returns_the_new_version(store: PortfolioStore, engine: Engine) -> None:
    pid = store.create_portfolio("atomic", Decimal("100"))

    with UnitOfWork(engine) as uow:
        version = uow.portfolios.update_portfolio_atomic(pid, {"name": "renamed"}, 1)
        uow.commit()

    assert version == 2
    assert (store.get(pid).name, store.get(pid).version) == ("renamed", 2)


def test_atomic_update_on_a_moved_version_raises_stale_with_the_actual_version(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("atomic", Decimal("100"))
    store.execute(pid, lambda p: p.deposit(Decimal("1")))
    store.execute(pid, lambda p: p.deposit(Decimal("1")))

    with UnitOfWork(engine) as uow, pytest.raises(StaleDataException) as caught:
        uow.portfolios.update_portfolio_atomic(pid, {"name": "late"}, expected_version=1)

    assert (caught.value.expected_version, caught.value.actual_version) == (1, 3)
    assert store.get(pid).name == "atomic"


def test_atomic_cash_change_is_booked_so_the_money_invariant_holds(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("atomic", Decimal("100"))

    with UnitOfWork(engine) as uow:
        uow.portfolios.update_portfolio_atomic(pid, {"cash_balance": Decimal("150.5")}, 1)
        uow.commit()
    with UnitOfWork(engine) as uow:
        uow.portfolios.update_portfolio_atomic(pid, {"cash_balance": "120"}, 2)
        uow.commit()

    after = store.get(pid)
    assert (after.cash_balance, after.total_deposits, after.total_withdrawals) == (
        Decimal("120"),
        Decimal("50.5"),
        Decimal("30.5"),
    )
    assert after.money_invariant_holds()
    assert after.version == 3


def test_atomic_update_keeps_the_identity_map_consistent_and_bumps_once(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("atomic", Decimal("100"))

    with UnitOfWork(engine) as uow:
        loaded = uow.portfolios.get(pid)
        assert uow.portfolios.update_portfolio_atomic(pid, {"cash_balance": "90"}, 1) == 2
        assert (loaded.cash_balance, loaded.total_withdrawals, loaded.version) == (
            Decimal("90"),
            Decimal("10"),
            2,
        )
        # A second change in the same unit of work: still one bump in all.
        assert uow.portfolios.update_portfolio_atomic(pid, {"name": "again"}, 2) == 2
        loaded.deposit(Decimal("5"))
        uow.commit()

    after = store.get(pid)
    assert (after.name, after.cash_balance, after.version) == ("again", Decimal("95"), 2)
    assert after.money_invariant_holds()


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


def test_atomic_update_keeps_pending_changes_to_other_fields(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("atomic", Decimal("100"))

    with UnitOfWork(engine) as uow:
        loaded = uow.portfolios.get(pid)
        loaded.deposit(Decimal("7"))
        uow.portfolios.update_portfolio_atomic(pid, {"name": "renamed"}, 1)
        assert (loaded.name, loaded.cash_balance) == ("renamed", Decimal("107"))
        uow.commit()

    after = store.get(pid)
    assert (after.name, after.cash_balance, after.version) == ("renamed", Decimal("107"), 2)
    assert after.money_invariant_holds()


def test_atomic_cash_update_over_a_pending_cash_change_is_refused(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("atomic", Decimal("100"))

    with UnitOfWork(engine) as uow:
        uow.portfolios.get(pid).deposit(Decimal("7"))
        with pytest.raises(ValidationError):
            uow.portfolios.update_portfolio_atomic(pid, {"cash_balance": "50"}, 1)

    assert store.get(pid).cash_balance == Decimal("100")
