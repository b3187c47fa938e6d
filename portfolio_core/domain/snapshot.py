"""A portfolio's state as plain JSON, and back: what a repeated idempotent ``execute`` needs.

:func:`capture` is taken just before a keyed ``execute`` runs its callable
and stored with the key; a repeat of the key :func:`restore` s it and runs
the callable again on it, at a cost that depends on the open positions only,
not on the length of the history (replaying it was the other way). Closed
positions are not kept: a callable that reads ``closed_positions`` sees none
on a repeat.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position

_PORTFOLIO_MONEY = ("realized_pnl", "initial_cash", "total_deposits", "total_withdrawals")
_POSITION_MONEY = ("quantity", "cost_basis", "current_price", "realized_pnl")


def capture(portfolio: Portfolio) -> dict[str, Any]:
    """The portfolio and its open positions as JSON-able values (Decimals as exact text)."""
    return {
        "id": str(portfolio.id),
        "name": portfolio.name,
        "cash_balance": str(portfolio.cash_balance),
        **{name: str(getattr(portfolio, name)) for name in _PORTFOLIO_MONEY},
        "version": portfolio.version,
        "created_at": portfolio.created_at.isoformat(),
        "last_updated": portfolio.last_updated.isoformat(),
        "positions": [
            {
                "id": str(position.id),
                "symbol": position.symbol,
                "opened_at": position.opened_at.isoformat(),
                "version": position.version,
                **{name: str(getattr(position, name)) for name in _POSITION_MONEY},
            }
            for position in portfolio.positions.values()
        ],
    }


def restore(state: dict[str, Any]) -> Portfolio:
    """A new, unattached Portfolio in the captured state, with no pending operations."""
    pid = UUID(state["id"])
    portfolio = Portfolio(state["name"], Decimal(state["cash_balance"]), id=pid)
    for name in _PORTFOLIO_MONEY:
        setattr(portfolio, f"_{name}", Decimal(state[name]))
    portfolio._version = int(state["version"])
    portfolio.created_at = datetime.fromisoformat(state["created_at"])
    portfolio.last_updated = datetime.fromisoformat(state["last_updated"])
    for item in state["positions"]:
        position = Position(
            item["symbol"],
            Decimal(item["quantity"]),
            Decimal(item["cost_basis"]),
            Decimal(item["current_price"]),
            portfolio_id=pid,
            id=UUID(item["id"]),
            opened_at=datetime.fromisoformat(item["opened_at"]),
        )
        position._realized_pnl = Decimal(item["realized_pnl"])
        position._version = int(item["version"])
        portfolio._positions.append(position)
    portfolio._take_pending_operations()
    return portfolio
