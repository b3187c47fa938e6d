"""A portfolio as the service's JSON: money as exact decimal strings, never floats.

The dicts built here are also what the library stores as an idempotency
key's result, so they hold only JSON-able values (str, int, lists, dicts).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fastapi.responses import JSONResponse

from portfolio_core import Portfolio, Position

JSONObject = dict[str, Any]
"""A JSON object as the service sends it (and the library stores it under a key)."""


class CanonicalJSONResponse(JSONResponse):
    """JSON with sorted keys: a repeated request answers the very same bytes.

    The library stores a keyed result in a JSONB column, which keeps its own
    key order; sorting on the way out makes the first answer and a repeat's
    (the stored result) identical byte for byte, not only equal as JSON.
    """

    def render(self, content: Any) -> bytes:
        """``content`` as compact UTF-8 JSON, keys sorted."""
        return json.dumps(
            content, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")


def money_text(value: Decimal) -> str:
    """``value`` as a plain decimal string, exact: ``Decimal("1E+2")`` is ``"100"``.

    Trailing zeros dropped, so a figure reads the same whether it comes from
    the database (8 places) or from memory: ``"1010.5"``, ``"0"``. Done on
    the text: ``Decimal.normalize`` would round to the context's 28 digits.
    """
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def position_body(position: Position) -> JSONObject:
    """An open position: quantity, cost basis, last price, market value."""
    return {
        "symbol": position.symbol,
        "quantity": money_text(position.quantity),
        "cost_basis": money_text(position.cost_basis),
        "current_price": money_text(position.current_price),
        "market_value": money_text(position.market_value),
    }


def portfolio_body(portfolio: Portfolio, version: int) -> JSONObject:
    """The portfolio's JSON representation at ``version`` (its ETag)."""
    return {
        "id": str(portfolio.id),
        "name": portfolio.name,
        "version": version,
        "cash_balance": money_text(portfolio.cash_balance),
        "realized_pnl": money_text(portfolio.realized_pnl),
        "positions": [
            position_body(position) for _, position in sorted(portfolio.positions.items())
        ],
    }


def committed_body(portfolio: Portfolio) -> JSONObject:
    """The representation a unit of work changing ``portfolio`` will commit.

    Called inside the operation, before COMMIT: a committed unit of work
    bumps the portfolio's version exactly once (aggregate-root versioning),
    so the version it commits is the loaded one plus one. Built there, the
    body is stored with the idempotency key and a repeat answers it as is.
    """
    return portfolio_body(portfolio, portfolio.version + 1)
