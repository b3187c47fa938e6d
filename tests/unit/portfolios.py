"""Portfolios in a known state for the unit tests."""

from __future__ import annotations

from decimal import Decimal

from portfolio_core import Portfolio, PositionRequest


def funded(cash: object = "10000") -> Portfolio:
    """A portfolio holding 10 AAPL bought at 100 and 5 MSFT at 200, with cash left."""
    portfolio = Portfolio("test", Decimal(str(cash)) + 2000)
    portfolio.open_position(PositionRequest("AAPL", 10, 100))
    portfolio.open_position(PositionRequest("MSFT", 5, 200))
    return portfolio
