"""Position: a long holding of one symbol inside a portfolio."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from portfolio_core.domain import money
from portfolio_core.domain.guarded import DomainField
from portfolio_core.errors import ValidationError


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, init=False)
class PositionRequest:
    """A request to buy ``quantity`` of ``symbol`` at ``entry_price``.

    Validated on construction: the symbol's form, a positive quantity and a
    positive price, each within NUMERIC(24, 8) and never rounded.
    """

    symbol: str
    quantity: Decimal
    entry_price: Decimal

    def __init__(self, symbol: str, quantity: money.AmountLike, entry_price: money.AmountLike):
        object.__setattr__(self, "symbol", money.validate_symbol(symbol))
        object.__setattr__(self, "quantity", money.positive(quantity, "quantity"))
        object.__setattr__(self, "entry_price", money.positive(entry_price, "entry_price"))

    @property
    def cost(self) -> Decimal:
        """quantity x entry_price, exact; ValidationError if it does not fit the column."""
        return money.checked_result(money.mul(self.quantity, self.entry_price), "cost")


class Versioned:
    """A read-only ``version``: the row's optimistic-lock counter, managed by persistence.

    Portfolio and Position are versioned (``persistence.mapping``); a
    Portfolio's version counts its committed changes.
    """

    _version: int

    @property
    def version(self) -> int:
        """The row's version (read-only)."""
        return self._version

    @version.setter
    def version(self, value: Any) -> None:
        raise AttributeError("version is managed by persistence and cannot be set")


class Position(Versioned):
    """An open or closed long position.

    ``cost_basis`` is the exact total paid for the quantity still open;
    ``entry_price`` is derived from it (the weighted average of the buys).
    ``realized_pnl`` accumulates the profit of partial and full closes.
    """

    id: UUID
    portfolio_id: UUID | None
    symbol: str
    # Read-only outside the domain (see domain.guarded): Portfolio's commands change them.
    quantity = DomainField[Decimal]("The quantity still open.", amount=True)
    cost_basis = DomainField[Decimal]("The exact total paid for the open quantity.", amount=True)
    current_price = DomainField[Decimal]("The last price (entry, re-price or exit).", amount=True)
    realized_pnl = DomainField[Decimal]("Profit realized by this position's closes.", amount=True)
    exit_price = DomainField[Decimal | None](
        "The price of the final close (None while open).", amount=True
    )
    _quantity: Decimal
    _cost_basis: Decimal
    _current_price: Decimal
    _realized_pnl: Decimal
    _exit_price: Decimal | None
    opened_at: datetime
    closed_at: datetime | None
    _version: int

    def __init__(
        self,
        symbol: str,
        quantity: money.AmountLike,
        cost_basis: money.AmountLike,
        current_price: money.AmountLike,
        *,
        portfolio_id: UUID | None = None,
        id: UUID | None = None,
        opened_at: datetime | None = None,
    ) -> None:
        self.id = id or uuid4()
        self.portfolio_id = portfolio_id
        self.symbol = money.validate_symbol(symbol)
        self._quantity = money.positive(quantity, "quantity")
        self._cost_basis = money.non_negative(cost_basis, "cost_basis")
        self._current_price = money.non_negative(current_price, "current_price")
        self._realized_pnl = Decimal(0)
        self._exit_price = None
        self.opened_at = opened_at or utcnow()
        self.closed_at = None
        self._version = 1

    @property
    def is_open(self) -> bool:
        """True until the whole quantity has been closed."""
        return self.closed_at is None

    @property
    def entry_price(self) -> Decimal:
        """Weighted-average entry price: cost_basis / quantity (60 significant digits)."""
        return money.fixed(money.divide(self.cost_basis, self.quantity))

    @property
    def market_value(self) -> Decimal:
        """quantity x current_price, exact."""
        return money.fixed(money.mul(self.quantity, self.current_price))

    @property
    def unrealized_pnl(self) -> Decimal:
        """market_value - cost_basis, exact (zero once closed)."""
        if not self.is_open:
            return money.fixed(Decimal(0))
        return money.fixed(money.sub(self.market_value, self.cost_basis))

    def _reprice(self, price: Decimal) -> None:
        self._current_price = price

    def _add(self, request: PositionRequest, cost: Decimal) -> None:
        quantity = money.checked_result(money.add(self.quantity, request.quantity), "quantity")
        cost_basis = money.checked_result(money.add(self.cost_basis, cost), "cost_basis")
        self._quantity = quantity
        self._cost_basis = cost_basis
        self._current_price = request.entry_price

    def _closing_cost(self, quantity: Decimal) -> Decimal:
        """The share of cost basis that closing ``quantity`` takes away (no change yet).

        The one rounded figure in the domain, and it is an allocation: the
        remainder stays exactly with the open quantity, so no cent is lost.
        """
        if quantity > self.quantity:
            raise ValidationError(
                "quantity", quantity, f"exceeds the open quantity {self.quantity} of {self.symbol}"
            )
        if quantity == self.quantity:
            return self.cost_basis
        return money.proportional_share(self.cost_basis, quantity, self.quantity)

    def _apply_close(
        self, quantity: Decimal, exit_price: Decimal, closed_cost: Decimal, profit: Decimal
    ) -> None:
        self._realized_pnl = money.checked_result(
            money.add(self.realized_pnl, profit), "position.realized_pnl"
        )
        self._current_price = exit_price
        if quantity == self.quantity:
            self._exit_price = exit_price
            self.closed_at = utcnow()
        else:
            self._quantity = money.sub(self.quantity, quantity)
            self._cost_basis = money.sub(self.cost_basis, closed_cost)

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return (
            f"Position({self.symbol!r}, quantity={self.quantity}, cost_basis={self.cost_basis}, "
            f"current_price={self.current_price}, {state})"
        )
