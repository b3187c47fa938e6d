"""Portfolio re-pricing, deposits and withdrawals, and rejected commands (no database)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from portfolio_core import (
    InsufficientFundsError,
    Portfolio,
    PositionNotFoundError,
    PositionRequest,
    ValidationError,
)
from tests.snapshots import portfolio_state
from tests.unit.portfolios import funded

D = Decimal


# -- prices -------------------------------------------------------------------------------


def test_update_position_price_sets_the_current_price_only() -> None:
    portfolio = funded()

    portfolio.update_position_price("AAPL", "101.5")

    position = portfolio.positions["AAPL"]
    assert position.current_price == D("101.5")
    assert position.cost_basis == D(1000)
    assert position.market_value == D(1015)
    assert position.unrealized_pnl == D(15)
    assert portfolio.market_value == D(1015) + D(1000)
    assert portfolio.total_value == D(10000) + D(2015)


def test_update_position_price_to_zero_is_allowed() -> None:
    portfolio = funded()

    portfolio.update_position_price("AAPL", 0)

    assert portfolio.positions["AAPL"].market_value == 0


def test_update_position_price_of_an_unknown_symbol_raises() -> None:
    with pytest.raises(PositionNotFoundError):
        funded().update_position_price("GOOG", 1)


def test_update_all_prices_ignores_unknown_symbols_and_returns_the_count() -> None:
    portfolio = funded()

    count = portfolio.update_all_prices({"AAPL": "111", "GOOG": 5, "MSFT": D("199.99999999")})

    assert count == 2
    assert portfolio.positions["AAPL"].current_price == D(111)
    assert portfolio.positions["MSFT"].current_price == D("199.99999999")


def test_update_all_prices_with_nothing_held_changes_nothing() -> None:
    portfolio = funded()
    before = portfolio_state(portfolio)

    assert portfolio.update_all_prices({"GOOG": 5}) == 0
    assert portfolio.update_all_prices({}) == 0
    assert portfolio_state(portfolio) == before


@pytest.mark.parametrize(
    ("prices", "field"),
    [
        ({"AAPL": 1, "MSFT": -1}, "prices['MSFT']"),
        ({"AAPL": 1, "MSFT": D("NaN")}, "prices['MSFT']"),
        ({"AAPL": 1, "MSFT": 2.5}, "prices['MSFT']"),
        ({"AAPL": 1, "GOOG": "x"}, "prices['GOOG']"),
        ({"AAPL": 1, "bad": 1}, "symbol"),
    ],
)
def test_update_all_prices_validates_every_price_before_applying_any(
    prices: dict[str, Any], field: str
) -> None:
    portfolio = funded()
    before = portfolio_state(portfolio)

    with pytest.raises(ValidationError) as caught:
        portfolio.update_all_prices(prices)

    assert caught.value.field == field
    assert portfolio_state(portfolio) == before


# -- deposit and withdraw -----------------------------------------------------------------


def test_deposit_and_withdraw_move_cash_and_their_totals() -> None:
    portfolio = Portfolio("p", 100)

    portfolio.deposit("0.00000001")
    portfolio.deposit(50)
    portfolio.withdraw("25.5")

    assert portfolio.cash_balance == D("124.50000001")
    assert portfolio.total_deposits == D("50.00000001")
    assert portfolio.total_withdrawals == D("25.5")
    assert portfolio.net_contributions == D("124.50000001")
    assert portfolio.money_invariant_holds()


def test_withdrawing_everything_leaves_zero() -> None:
    portfolio = Portfolio("p", 100)

    portfolio.withdraw(100)

    assert portfolio.cash_balance == 0


def test_withdrawing_more_than_the_cash_raises_insufficient_funds() -> None:
    portfolio = funded()
    before = portfolio_state(portfolio)

    with pytest.raises(InsufficientFundsError) as caught:
        portfolio.withdraw("10000.00000001")

    assert caught.value.requested == D("10000.00000001")
    assert caught.value.available == D(10000)
    assert portfolio_state(portfolio) == before


def test_deposit_that_would_pass_the_column_limit_changes_nothing() -> None:
    portfolio = Portfolio("p", "9999999999999999")
    before = portfolio_state(portfolio)

    with pytest.raises(ValidationError) as caught:
        portfolio.deposit(1)

    assert caught.value.field == "cash_balance"
    assert portfolio_state(portfolio) == before


def test_deposit_whose_running_total_would_overflow_changes_nothing() -> None:
    portfolio = Portfolio("p", 0)
    portfolio.deposit("9999999999999999")
    portfolio.withdraw("9999999999999999")
    before = portfolio_state(portfolio)

    with pytest.raises(ValidationError) as caught:
        portfolio.deposit(1)

    assert caught.value.field == "total_deposits"
    assert portfolio_state(portfolio) == before


def test_withdrawal_whose_running_total_would_overflow_changes_nothing() -> None:
    portfolio = Portfolio("p", "9000000000000000")
    portfolio.withdraw("9000000000000000")
    portfolio.deposit("1000000000000000")
    before = portfolio_state(portfolio)

    with pytest.raises(ValidationError) as caught:
        portfolio.withdraw("1000000000000000")

    assert caught.value.field == "total_withdrawals"
    assert portfolio_state(portfolio) == before


# -- every rejected command leaves every field unchanged ----------------------------------

Command = Callable[[Portfolio], object]

# Inputs the type checker would refuse, passed anyway as a caller without mypy would.
FLOAT: Any = 1.5
BOOL: Any = True

REJECTED: list[tuple[str, Command, type[Exception], str | None]] = [
    ("open float qty", lambda p: p.open_position(PositionRequest("X", FLOAT, 1)),
     ValidationError, "quantity"),
    ("open too dear", lambda p: p.open_position(PositionRequest("X", 1, 10**9)),
     InsufficientFundsError, None),
    ("close unknown", lambda p: p.close_position("ZZZ", 1), PositionNotFoundError, None),
    ("close bad symbol", lambda p: p.close_position("aapl", 1), ValidationError, "symbol"),
    ("close NaN price", lambda p: p.close_position("AAPL", D("NaN")),
     ValidationError, "exit_price"),
    ("close negative price", lambda p: p.close_position("AAPL", -1),
     ValidationError, "exit_price"),
    ("close float price", lambda p: p.close_position("AAPL", FLOAT),
     ValidationError, "exit_price"),
    ("close zero qty", lambda p: p.close_position("AAPL", 1, 0), ValidationError, "quantity"),
    ("close negative qty", lambda p: p.close_position("AAPL", 1, -1),
     ValidationError, "quantity"),
    ("close sNaN qty", lambda p: p.close_position("AAPL", 1, D("sNaN")),
     ValidationError, "quantity"),
    ("close 9 places", lambda p: p.close_position("AAPL", 1, "0.000000001"),
     ValidationError, "quantity"),
    ("close too many", lambda p: p.close_position("AAPL", 1, 11), ValidationError, "quantity"),
    ("price negative", lambda p: p.update_position_price("AAPL", -1), ValidationError, "price"),
    ("price inf", lambda p: p.update_position_price("AAPL", D("Infinity")),
     ValidationError, "price"),
    ("price bool", lambda p: p.update_position_price("AAPL", BOOL), ValidationError, "price"),
    ("price unknown", lambda p: p.update_position_price("ZZZ", 1), PositionNotFoundError, None),
    ("deposit zero", lambda p: p.deposit(0), ValidationError, "amount"),
    ("deposit negative", lambda p: p.deposit(-5), ValidationError, "amount"),
    ("deposit float", lambda p: p.deposit(FLOAT), ValidationError, "amount"),
    ("deposit garbage", lambda p: p.deposit("five"), ValidationError, "amount"),
    ("deposit huge", lambda p: p.deposit(10**16), ValidationError, "amount"),
    ("withdraw zero", lambda p: p.withdraw(0), ValidationError, "amount"),
    ("withdraw NaN", lambda p: p.withdraw("NaN"), ValidationError, "amount"),
    ("withdraw too much", lambda p: p.withdraw(10**6), InsufficientFundsError, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "error", "field"),
    [pytest.param(c, e, f, id=name) for name, c, e, f in REJECTED],
)
def test_a_rejected_command_changes_no_field(
    command: Command, error: type[Exception], field: str | None
) -> None:
    portfolio = funded()
    portfolio.close_position("MSFT", 210, quantity=2)
    before = portfolio_state(portfolio)

    with pytest.raises(error) as caught:
        command(portfolio)

    if field is not None:
        assert isinstance(caught.value, ValidationError)
        assert caught.value.field == field
    assert portfolio_state(portfolio) == before
    assert portfolio.money_invariant_holds()


def test_money_invariant_holds_through_a_mixed_history() -> None:
    portfolio = Portfolio("p", "1000.12345678")
    portfolio.open_position(PositionRequest("A", "3", "33.33333333"))
    portfolio.deposit("0.00000001")
    portfolio.open_position(PositionRequest("A", "7", "12.5"))
    portfolio.close_position("A", "40", quantity="1")
    portfolio.open_position(PositionRequest("B", "0.1", "0.00000010"))
    portfolio.close_position("A", "1", quantity="2.5")
    portfolio.withdraw("3")
    portfolio.close_position("B", "0.1")
    portfolio.close_position("A", "17")

    assert portfolio.positions == {}
    assert portfolio.money_invariant_holds()
    assert portfolio.cash_balance - portfolio.realized_pnl == portfolio.net_contributions


def test_money_invariant_detects_a_broken_ledger() -> None:
    portfolio = funded()
    portfolio._cash_balance += 1  # behind the domain's back (only the domain can)

    assert not portfolio.money_invariant_holds()
