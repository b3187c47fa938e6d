"""Replay: a portfolio rebuilt from its audit events alone.

:func:`replay` calls the same domain methods on a fresh Portfolio as the
recorded operations (``portfolio_core.domain.events``) say; only generated
position ids and wall-clock timestamps differ from the stored aggregate (the
replayed ``created_at``/``last_updated`` are the events' database timestamps).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from uuid import UUID

from portfolio_core.domain import money
from portfolio_core.domain.events import PortfolioEvent, PortfolioOperation
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import PositionRequest
from portfolio_core.errors import PortfolioNotFoundError, ValidationError


def _decimal(operation: PortfolioOperation, name: str) -> Decimal:
    value = operation.arguments.get(name)
    if not isinstance(value, Decimal):
        raise ValidationError(name, value, f"missing from a {operation.kind!r} operation")
    return value


def _text(operation: PortfolioOperation, name: str) -> str:
    value = operation.arguments.get(name)
    if not isinstance(value, str):
        raise ValidationError(name, value, f"missing from a {operation.kind!r} operation")
    return value


def reapply_operation(portfolio: Portfolio, operation: PortfolioOperation) -> None:
    """Apply one recorded operation again to ``portfolio``, through the domain methods."""
    kind = operation.kind
    arguments = operation.arguments
    if kind == "deposit":
        portfolio.deposit(_decimal(operation, "amount"))
    elif kind == "withdraw":
        portfolio.withdraw(_decimal(operation, "amount"))
    elif kind == "transfer_out":
        portfolio.transfer_out(
            _decimal(operation, "amount"), UUID(_text(operation, "to_portfolio_id"))
        )
    elif kind == "transfer_in":
        portfolio.transfer_in(
            _decimal(operation, "amount"), UUID(_text(operation, "from_portfolio_id"))
        )
    elif kind == "open_position":
        portfolio.open_position(
            PositionRequest(
                _text(operation, "symbol"),
                _decimal(operation, "quantity"),
                _decimal(operation, "entry_price"),
            )
        )
    elif kind == "close_position":
        quantity = arguments.get("quantity")
        portfolio.close_position(
            _text(operation, "symbol"),
            _decimal(operation, "exit_price"),
            quantity if isinstance(quantity, Decimal) else None,
        )
    elif kind == "update_position_price":
        portfolio.update_position_price(_text(operation, "symbol"), _decimal(operation, "price"))
    elif kind == "update_all_prices":
        prices = arguments.get("prices")
        portfolio.update_all_prices(dict(prices) if isinstance(prices, Mapping) else {})
    elif kind == "set_name":
        portfolio.name = money.validate_name(_text(operation, "name"))
    elif kind == "set_cash_balance":
        target = _decimal(operation, "cash_balance")
        difference = money.sub(target, portfolio.cash_balance)
        if difference > 0:
            portfolio.deposit(difference)
        elif difference < 0:
            portfolio.withdraw(-difference)
    else:
        raise ValidationError("kind", kind, "is not a known portfolio operation")


def replay(
    portfolio_id: UUID, events: Iterable[PortfolioEvent], version: int | None = None
) -> Portfolio:
    """The portfolio as it stood at ``version`` (default: the last event), from events alone.

    ``events`` must start with the creation event (version 1) and be in
    version order. PortfolioNotFoundError if there is none.
    """
    portfolio: Portfolio | None = None
    for event in events:
        if version is not None and event.version > version:
            break
        operations = list(event.operations)
        if portfolio is None:
            if not operations or operations[0].kind != "created":
                raise ValidationError(
                    "events", event.version, "do not start with the portfolio's creation"
                )
            created = operations.pop(0)
            portfolio = Portfolio(
                _text(created, "name"), _decimal(created, "cash_balance"), id=portfolio_id
            )
            portfolio.created_at = event.occurred_at
        for operation in operations:
            reapply_operation(portfolio, operation)
        portfolio._version = event.version
        portfolio.last_updated = event.occurred_at
    if portfolio is None:
        raise PortfolioNotFoundError(portfolio_id)
    portfolio._take_pending_operations()
    return portfolio
