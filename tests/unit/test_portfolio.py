"""Portfolio commands: every rule, and no state change on any rejected command (no database)."""

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

D = Decimal


def funded(cash: object = "10000") -> Portfolio:
    """A portfolio holding 10 AAPL bought at 100 and 5 MSFT at 200, with cash left."""
    portfolio = Portfolio("test", D(str(cash)) + 2000)
    portfolio.open_position(PositionRequest("AAPL", 10, 100))
    portfolio.open_position(PositionRequest("MSFT", 5, 200))
    return portfolio


# -- construction -------------------------------------------------------------------------


def test_new_portfolio_starts_at_version_one_with_its_cash() -> None:
    portfolio = Portfolio("alpha", "1234.56")

    assert portfolio.name == "alpha"
    assert portfolio.cash_balance == D("1234.56")
    assert portfolio.initial_cash == D("1234.56")
    assert portfolio.realized_pnl == 0
    assert portfolio.version == 1
    assert portfolio.positions == {}
    assert portfolio.closed_positions == []
    assert portfolio.created_at.tzinfo is not None
    assert portfolio.money_invariant_holds()


def test_new_portfolio_cash_defaults_to_zero() -> None:
    assert Portfolio("empty").cash_balance == 0


@pytest.mark.parametrize(
    ("name", "cash", "field"),
    [
        ("", 0, "name"),
        ("  ", 0, "name"),
        ("x" * 201, 0, "name"),
        ("ok", -1, "cash_balance"),
        ("ok", 1.5, "cash_balance"),
        ("ok", True, "cash_balance"),
        ("ok", D("NaN"), "cash_balance"),
        ("ok", D("Infinity"), "cash_balance"),
        ("ok", "0.000000001", "cash_balance"),
        ("ok", 10**16, "cash_balance"),
        ("ok", "much", "cash_balance"),
    ],
)
def test_portfolio_constructor_rejects_invalid_input(name: str, cash: object, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Portfolio(name, cash)  # type: ignore[arg-type]

    assert caught.value.field == field


def test_version_cannot_be_set_from_outside() -> None:
    portfolio = Portfolio("p", 1)

    with pytest.raises(AttributeError):
        portfolio.version = 5

    assert portfolio.version == 1


# -- open_position ------------------------------------------------------------------------


def test_open_position_debits_the_exact_cost() -> None:
    portfolio = Portfolio("p", "1000")

    position = portfolio.open_position(PositionRequest("AAPL", "3", "33.33333333"))

    assert portfolio.cash_balance == D("900.00000001")
    assert position.quantity == D(3)
    assert position.cost_basis == D("99.99999999")
    assert position.current_price == D("33.33333333")
    assert position.portfolio_id == portfolio.id
    assert portfolio.positions == {"AAPL": position}
    assert portfolio.money_invariant_holds()


def test_open_position_can_spend_every_last_unit_of_cash() -> None:
    portfolio = Portfolio("p", "100")

    portfolio.open_position(PositionRequest("AAPL", 4, 25))

    assert portfolio.cash_balance == 0


def test_adding_to_an_open_symbol_uses_the_weighted_average_price() -> None:
    portfolio = Portfolio("p", 10000)
    first = portfolio.open_position(PositionRequest("AAPL", 10, 100))

    second = portfolio.open_position(PositionRequest("AAPL", 30, 120))

    assert second is first
    assert len(portfolio.positions) == 1
    assert first.quantity == D(40)
    assert first.cost_basis == D(4600)
    assert first.entry_price == D(115)
    assert first.current_price == D(120)
    assert portfolio.cash_balance == D(5400)
    assert portfolio.money_invariant_holds()


def test_insufficient_funds_carries_requested_and_available_and_changes_nothing() -> None:
    portfolio = funded()
    before = portfolio_state(portfolio)

    with pytest.raises(InsufficientFundsError) as caught:
        portfolio.open_position(PositionRequest("GOOG", 1, "10000.00000001"))

    assert caught.value.requested == D("10000.00000001")
    assert caught.value.available == D(10000)
    assert caught.value.portfolio_id == portfolio.id
    assert portfolio_state(portfolio) == before


def test_insufficient_funds_when_adding_to_an_open_symbol_changes_nothing() -> None:
    portfolio = funded()
    before = portfolio_state(portfolio)

    with pytest.raises(InsufficientFundsError):
        portfolio.open_position(PositionRequest("AAPL", 101, 100))

    assert portfolio_state(portfolio) == before


def test_open_position_whose_cost_needs_more_than_eight_places_is_rejected_not_rounded() -> None:
    portfolio = Portfolio("p", 1000)
    before = portfolio_state(portfolio)

    with pytest.raises(ValidationError) as caught:
        portfolio.open_position(PositionRequest("DUST", "0.5", "0.00000001"))

    assert caught.value.field == "cost"
    assert portfolio_state(portfolio) == before


def test_adding_beyond_the_column_limit_is_rejected_and_changes_nothing() -> None:
    portfolio = Portfolio("p", "9999999999999999")
    portfolio.open_position(PositionRequest("PENNY", "9999999999999998", "0.5"))
    before = portfolio_state(portfolio)

    with pytest.raises(ValidationError) as caught:
        portfolio.open_position(PositionRequest("PENNY", "3", "0.5"))

    assert caught.value.field == "quantity"
    assert portfolio_state(portfolio) == before


# -- close_position -----------------------------------------------------------------------


def test_closing_everything_credits_exact_proceeds_and_realizes_profit() -> None:
    portfolio = funded()

    profit = portfolio.close_position("AAPL", "110.12345678")

    assert profit == D("101.2345678")
    assert portfolio.cash_balance == D(10000) + D("1101.2345678")
    assert portfolio.realized_pnl == D("101.2345678")
    assert "AAPL" not in portfolio.positions
    [closed] = portfolio.closed_positions
    assert closed.symbol == "AAPL"
    assert closed.exit_price == D("110.12345678")
    assert closed.realized_pnl == D("101.2345678")
    assert closed.closed_at is not None
    assert portfolio.money_invariant_holds()


def test_closing_at_a_loss_makes_realized_pnl_negative() -> None:
    portfolio = funded()

    profit = portfolio.close_position("MSFT", 150)

    assert profit == D(-250)
    assert portfolio.realized_pnl == D(-250)
    assert portfolio.money_invariant_holds()


def test_closing_at_price_zero_realizes_the_whole_cost_as_loss() -> None:
    portfolio = funded()

    assert portfolio.close_position("MSFT", 0) == D(-1000)
    assert portfolio.cash_balance == D(10000)


def test_partial_close_realizes_against_the_proportional_cost_basis() -> None:
    portfolio = funded()

    profit = portfolio.close_position("AAPL", 130, quantity=4)

    position = portfolio.positions["AAPL"]
    assert profit == D(120)
    assert position.quantity == D(6)
    assert position.cost_basis == D(600)
    assert position.current_price == D(130)
    assert position.realized_pnl == D(120)
    assert portfolio.cash_balance == D(10520)
    assert portfolio.closed_positions == []
    assert portfolio.money_invariant_holds()


def test_partial_close_rounds_the_cost_share_and_leaves_the_remainder_open() -> None:
    portfolio = Portfolio("p", 1000)
    portfolio.open_position(PositionRequest("ABC", 1, 1))
    portfolio.open_position(PositionRequest("ABC", 2, 2))  # quantity 3, cost 5

    profit = portfolio.close_position("ABC", 2, quantity=1)

    position = portfolio.positions["ABC"]
    # 5 / 3 = 1.666666666... -> 1.66666667 goes with the closed unit; 3.33333333 stays.
    assert profit == D("0.33333333")
    assert position.cost_basis == D("3.33333333")
    assert position.quantity == D(2)
    assert portfolio.money_invariant_holds()


@pytest.mark.parametrize(
    ("entry_price", "closed_share", "remainder"),
    [
        # 0.2 units cost 0.00000001: half is 0.000000005, a tie, rounded to the even 0.
        ("0.00000005", D("0"), D("0.00000001")),
        # 0.2 units cost 0.00000003: half is 0.000000015, a tie, rounded to the even 2.
        ("0.00000015", D("0.00000002"), D("0.00000001")),
        # 0.2 units cost 0.00000007: half is 0.000000035 -> 4, the remainder keeps 3.
        ("0.00000035", D("0.00000004"), D("0.00000003")),
    ],
)
def test_cost_share_ties_round_half_even_and_the_remainder_stays_open(
    entry_price: str, closed_share: Decimal, remainder: Decimal
) -> None:
    portfolio = Portfolio("p", 1)
    position = portfolio.open_position(PositionRequest("TIE", "0.2", entry_price))
    cost_before = position.cost_basis

    profit = portfolio.close_position("TIE", 0, quantity="0.1")

    assert profit == -closed_share
    assert position.cost_basis == remainder
    assert position.cost_basis + closed_share == cost_before
    assert position.quantity == D("0.1")
    assert portfolio.money_invariant_holds()


def test_closing_more_than_held_is_rejected() -> None:
    portfolio = funded()
    before = portfolio_state(portfolio)

    with pytest.raises(ValidationError) as caught:
        portfolio.close_position("AAPL", 100, quantity="10.00000001")

    assert caught.value.field == "quantity"
    assert portfolio_state(portfolio) == before


def test_closing_exactly_the_held_quantity_closes_the_position() -> None:
    portfolio = funded()

    portfolio.close_position("AAPL", 100, quantity=10)

    assert "AAPL" not in portfolio.positions
    assert [p.symbol for p in portfolio.closed_positions] == ["AAPL"]


def test_closing_an_unknown_symbol_raises_position_not_found() -> None:
    portfolio = funded()

    with pytest.raises(PositionNotFoundError) as caught:
        portfolio.close_position("GOOG", 100)

    assert caught.value.symbol == "GOOG"
    assert caught.value.portfolio_id == portfolio.id


def test_a_closed_symbol_is_no_longer_found_and_can_be_reopened() -> None:
    portfolio = funded()
    portfolio.close_position("AAPL", 100)

    with pytest.raises(PositionNotFoundError):
        portfolio.close_position("AAPL", 100)
    with pytest.raises(PositionNotFoundError):
        portfolio.update_position_price("AAPL", 100)
    reopened = portfolio.open_position(PositionRequest("AAPL", 1, 90))

    assert reopened.quantity == D(1)
    assert reopened.cost_basis == D(90)
    assert len(portfolio.closed_positions) == 1
    assert portfolio.positions["AAPL"] is reopened


def test_closed_positions_are_kept_oldest_first() -> None:
    portfolio = funded()
    portfolio.close_position("MSFT", 210)
    portfolio.open_position(PositionRequest("MSFT", 1, 200))
    portfolio.close_position("AAPL", 90)
    portfolio.close_position("MSFT", 220)

    history = portfolio.closed_positions

    # Ordered by (closed_at, id), as the database returns the stored history.
    assert history == sorted(history, key=lambda p: (p.closed_at, p.id))
    assert sorted((p.symbol, p.exit_price) for p in history) == [
        ("AAPL", D(90)),
        ("MSFT", D(210)),
        ("MSFT", D(220)),
    ]
    assert portfolio.realized_pnl == D(50) - D(100) + D(20)
    assert portfolio.money_invariant_holds()


def test_close_proceeds_needing_more_than_eight_places_are_rejected_not_rounded() -> None:
    portfolio = Portfolio("p", 1000)
    portfolio.open_position(PositionRequest("DUST", "1.5", "0.00000002"))
    before = portfolio_state(portfolio)

    with pytest.raises(ValidationError) as caught:
        portfolio.close_position("DUST", "0.00000001", quantity="0.5")

    assert caught.value.field == "proceeds"
    assert portfolio_state(portfolio) == before


def test_close_proceeds_beyond_the_column_limit_are_rejected() -> None:
    portfolio = Portfolio("p", 10**8)
    portfolio.open_position(PositionRequest("BIG", 10**8, 1))
    before = portfolio_state(portfolio)

    with pytest.raises(ValidationError) as caught:
        portfolio.close_position("BIG", 10**8)

    assert caught.value.field == "proceeds"
    assert portfolio_state(portfolio) == before


def test_cash_that_would_pass_the_column_limit_on_close_is_rejected() -> None:
    portfolio = Portfolio("p", "9999999999999999")
    portfolio.open_position(PositionRequest("X", 1, 1))
    before = portfolio_state(portfolio)

    with pytest.raises(ValidationError) as caught:
        portfolio.close_position("X", 2)

    assert caught.value.field == "cash_balance"
    assert portfolio_state(portfolio) == before


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
    portfolio.cash_balance += 1

    assert not portfolio.money_invariant_holds()
