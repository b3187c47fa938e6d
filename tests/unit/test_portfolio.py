"""Portfolio commands: every rule, and no state change on any rejected command (no database)."""

from __future__ import annotations

from decimal import Decimal

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
