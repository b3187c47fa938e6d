"""Money fields are read-only outside the domain: only its commands change (and record) them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portfolio_core import Portfolio, PositionRequest

PORTFOLIO_FIELDS = (
    "cash_balance",
    "realized_pnl",
    "initial_cash",
    "total_deposits",
    "total_withdrawals",
)
POSITION_FIELDS = ("quantity", "cost_basis", "current_price", "realized_pnl", "exit_price")


@pytest.mark.parametrize("name", PORTFOLIO_FIELDS)
def test_portfolio_money_fields_refuse_assignment(name: str) -> None:
    portfolio = Portfolio("alpha", 100)
    before = getattr(portfolio, name)

    with pytest.raises(AttributeError, match="read-only"):
        setattr(portfolio, name, Decimal("1.123456789"))

    assert getattr(portfolio, name) == before
    assert portfolio.money_invariant_holds()


@pytest.mark.parametrize("name", POSITION_FIELDS)
def test_position_money_fields_refuse_assignment(name: str) -> None:
    portfolio = Portfolio("alpha", 100)
    position = portfolio.open_position(PositionRequest("AAPL", 2, 10))

    with pytest.raises(AttributeError, match="read-only"):
        setattr(position, name, 1.1)

    assert (position.quantity, position.cost_basis) == (Decimal(2), Decimal(20))


def test_the_domain_still_changes_them_and_records_each_change() -> None:
    portfolio = Portfolio("alpha", 100)
    portfolio.deposit("5.5")
    position = portfolio.open_position(PositionRequest("AAPL", 2, 10))
    portfolio.update_position_price("AAPL", 12)
    portfolio.close_position("AAPL", 12, 1)

    assert portfolio.cash_balance == Decimal("97.5")
    assert position.current_price == Decimal(12)
    assert position.quantity == Decimal(1)
    assert portfolio.realized_pnl == Decimal(2)
    assert [op.kind for op in portfolio.pending_operations()] == [
        "created",
        "deposit",
        "open_position",
        "update_position_price",
        "close_position",
    ]
