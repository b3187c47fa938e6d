"""Comparable snapshots of a Portfolio's state, shared by unit, property and integration tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from portfolio_core import Portfolio


def position_state(portfolio: Portfolio) -> dict[str, tuple[Decimal, Decimal, Decimal, Decimal]]:
    """Open positions as symbol -> (quantity, cost_basis, current_price, realized_pnl)."""
    return {
        symbol: (p.quantity, p.cost_basis, p.current_price, p.realized_pnl)
        for symbol, p in portfolio.positions.items()
    }


def portfolio_state(portfolio: Portfolio) -> dict[str, Any]:
    """Every field a command may change, ready for ``==`` (timestamps left out)."""
    return {
        "name": portfolio.name,
        "cash_balance": portfolio.cash_balance,
        "realized_pnl": portfolio.realized_pnl,
        "initial_cash": portfolio.initial_cash,
        "total_deposits": portfolio.total_deposits,
        "total_withdrawals": portfolio.total_withdrawals,
        "version": portfolio.version,
        "positions": position_state(portfolio),
        "closed": [
            (p.symbol, p.quantity, p.cost_basis, p.exit_price, p.realized_pnl)
            for p in portfolio.closed_positions
        ],
        "last_updated": portfolio.last_updated,
    }
