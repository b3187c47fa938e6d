"""Portfolio: the aggregate root that owns cash, realized P&L and positions.

Rules kept here, in plain Python, before anything reaches the database:

* amounts are Decimals that fit NUMERIC(24, 8) and are never rounded silently;
* cash never goes negative (InsufficientFundsError);
* positions are long only; one open position per symbol, bought again at the
  weighted-average price;
* ``cash_balance + sum(open cost_basis) - realized_pnl`` always equals
  ``initial_cash + total_deposits - total_withdrawals``, exactly.

``version`` belongs to persistence: it is read-only here and is bumped once per
committed unit of work by the mapper (see ``portfolio_core.persistence``).

Each command, once it has succeeded, appends a ``PortfolioOperation`` to a
pending list that is not mapped to any column (see
``portfolio_core.domain.events``); persistence writes the list to the audit
trail when the unit of work commits and empties it afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import ClassVar
from uuid import UUID, uuid4

from portfolio_core.domain import money
from portfolio_core.domain.events import Argument, PortfolioOperation
from portfolio_core.domain.guarded import DomainField
from portfolio_core.domain.position import Position, PositionRequest, Versioned, utcnow
from portfolio_core.domain.position_book import PositionBook, PositionSource
from portfolio_core.domain.price_list import validated_prices
from portfolio_core.errors import (
    InsufficientFundsError,
    PositionNotFoundError,
)


class Portfolio(Versioned):
    """A trading portfolio: cash, realized P&L, open positions and their history."""

    id: UUID
    name: str
    # Money fields are read-only outside the domain (see domain.guarded): only
    # the commands below change them, and each records its operation.
    cash_balance = DomainField[Decimal]("Cash available (exact).", amount=True)
    realized_pnl = DomainField[Decimal]("Profit realized by closes (exact).", amount=True)
    initial_cash = DomainField[Decimal]("The opening cash balance.", amount=True)
    total_deposits = DomainField[Decimal]("Cash deposited since creation.", amount=True)
    total_withdrawals = DomainField[Decimal]("Cash withdrawn since creation.", amount=True)
    _cash_balance: Decimal
    _realized_pnl: Decimal
    _initial_cash: Decimal
    _total_deposits: Decimal
    _total_withdrawals: Decimal
    created_at: datetime
    last_updated: datetime
    _version: int
    _positions: list[Position]
    _closed: list[Position]
    # Not mapped; created lazily because instances loaded by the ORM skip __init__.
    _pending_operations: list[PortfolioOperation]
    _position_book: PositionBook
    _source: ClassVar[PositionSource | None] = None
    """Set by persistence: fetches one position by symbol (see domain.position_book)."""

    def __init__(
        self,
        name: str,
        cash_balance: money.AmountLike = 0,
        *,
        id: UUID | None = None,
    ) -> None:
        self.id = id or uuid4()
        self.name = money.validate_name(name)
        self._cash_balance = money.non_negative(cash_balance, "cash_balance")
        self._initial_cash = self.cash_balance
        self._realized_pnl = Decimal(0)
        self._total_deposits = Decimal(0)
        self._total_withdrawals = Decimal(0)
        self.created_at = self.last_updated = utcnow()
        self._version = 1
        self._positions = []
        self._closed = []
        self._pending_operations = []
        self._record("created", name=self.name, cash_balance=self.cash_balance)

    # -- read side -----------------------------------------------------------

    @property
    def positions(self) -> dict[str, Position]:
        """Open positions keyed by symbol (a new dict: reads every position)."""
        return {p.symbol: p for p in self._all_positions() if p.is_open}

    @property
    def closed_positions(self) -> list[Position]:
        """Closed positions, oldest first: the stored history plus those closed now."""
        history = list(self._closed)
        seen = {p.id for p in history}
        # Ordered as the database orders the stored history (closed_at, id), so a
        # portfolio reads the same before and after it is reloaded.
        closed_now = [p for p in self._all_positions() if not p.is_open and p.id not in seen]
        history.extend(sorted(closed_now, key=lambda p: (p.closed_at, p.id)))
        return history

    @property
    def total_cost_basis(self) -> Decimal:
        """Exact sum of the open positions' cost basis."""
        total = Decimal(0)
        for position in self._all_positions():
            if position.is_open:
                total = money.add(total, position.cost_basis)
        return money.fixed(total)

    @property
    def market_value(self) -> Decimal:
        """Exact sum of the open positions' market value."""
        total = Decimal(0)
        for position in self.positions.values():
            total = money.add(total, position.market_value)
        return money.fixed(total)

    @property
    def total_value(self) -> Decimal:
        """Cash plus the market value of open positions."""
        return money.fixed(money.add(self.cash_balance, self.market_value))

    @property
    def net_contributions(self) -> Decimal:
        """initial_cash + total_deposits - total_withdrawals."""
        contributed = money.add(self.initial_cash, self.total_deposits)
        return money.fixed(money.sub(contributed, self.total_withdrawals))

    def money_invariant_holds(self) -> bool:
        """cash + open cost basis - realized P&L == net contributions, exactly."""
        left = money.sub(money.add(self.cash_balance, self.total_cost_basis), self.realized_pnl)
        return left == self.net_contributions

    # -- commands ------------------------------------------------------------

    def open_position(self, request: PositionRequest) -> Position:
        """Buy: debit quantity x entry_price; add to an open symbol at the weighted average."""
        cost = request.cost
        if cost > self.cash_balance:
            raise InsufficientFundsError(self.id, cost, self.cash_balance)
        existing = self._find_open(request.symbol)
        if existing is not None:
            existing._add(request, cost)
            position = existing
        else:
            position = Position(
                request.symbol,
                request.quantity,
                cost,
                request.entry_price,
                portfolio_id=self.id,
            )
            self._attach(position)
        self._debit(cost)
        self._touch()
        self._record(
            "open_position",
            symbol=request.symbol,
            quantity=request.quantity,
            entry_price=request.entry_price,
        )
        return position

    def close_position(
        self,
        symbol: str,
        exit_price: money.AmountLike,
        quantity: money.AmountLike | None = None,
    ) -> Decimal:
        """Sell all (or ``quantity``) of ``symbol`` at ``exit_price``; return the realized profit.

        Cash is credited with the exact proceeds; realized P&L is measured
        against the exact share of cost basis being closed.
        """
        position = self._open_position(symbol)
        price = money.non_negative(exit_price, "exit_price")
        amount = position.quantity if quantity is None else money.positive(quantity, "quantity")
        # Every figure is computed and checked before anything changes.
        closed_cost = position._closing_cost(amount)
        proceeds = money.checked_result(money.mul(amount, price), "proceeds")
        profit = money.sub(proceeds, closed_cost)
        cash = money.checked_result(money.add(self.cash_balance, proceeds), "cash_balance")
        realized = money.checked_result(money.add(self.realized_pnl, profit), "realized_pnl")
        position._apply_close(amount, price, closed_cost, profit)
        self._cash_balance = cash
        self._realized_pnl = realized
        self._touch()
        self._record(
            "close_position",
            symbol=symbol,
            exit_price=price,
            quantity=None if quantity is None else amount,
        )
        return money.fixed(profit)

    def update_position_price(self, symbol: str, price: money.AmountLike) -> None:
        """Re-price one open position."""
        position = self._open_position(symbol)
        position._reprice(money.non_negative(price, "price"))
        self._touch()
        self._record("update_position_price", symbol=symbol, price=position.current_price)

    def update_all_prices(self, prices: Mapping[str, money.AmountLike]) -> int:
        """Re-price every open position found in ``prices``; return how many changed.

        All prices are validated before any is applied. Symbols the portfolio
        does not hold are ignored (a price feed usually covers more).
        """
        validated = validated_prices(prices)
        applied: dict[str, Decimal] = {}
        for position in self._all_positions():
            if position.is_open and position.symbol in validated:
                position._reprice(validated[position.symbol])
                applied[position.symbol] = position.current_price
        if applied:
            self._touch()
            self._record("update_all_prices", prices=applied)
        return len(applied)

    def deposit(self, amount: money.AmountLike) -> None:
        """Add cash."""
        self._record("deposit", amount=self._credit_cash(amount))

    def withdraw(self, amount: money.AmountLike) -> None:
        """Take cash out; InsufficientFundsError if there is not enough."""
        self._record("withdraw", amount=self._debit_cash(amount))

    def transfer_out(self, amount: money.AmountLike, to_portfolio_id: UUID) -> None:
        """The paying leg of a transfer: a withdrawal recorded with its counterparty."""
        self._record(
            "transfer_out", amount=self._debit_cash(amount), to_portfolio_id=str(to_portfolio_id)
        )

    def transfer_in(self, amount: money.AmountLike, from_portfolio_id: UUID) -> None:
        """The receiving leg of a transfer: a deposit recorded with its counterparty."""
        self._record(
            "transfer_in",
            amount=self._credit_cash(amount),
            from_portfolio_id=str(from_portfolio_id),
        )

    # -- audit trail -----------------------------------------------------------

    def pending_operations(self) -> tuple[PortfolioOperation, ...]:
        """The commands applied since the last commit (or creation), oldest first."""
        return tuple(self._operations())

    # Persistence hooks, private to the package: a public way to add or drop
    # a pending operation would let a caller forge or erase the audit trail.

    def _record_external_operation(self, operation: PortfolioOperation) -> None:
        """Append an operation persistence applied in SQL, so the audit keeps its order."""
        self._operations().append(operation)

    def _take_pending_operations(self) -> tuple[PortfolioOperation, ...]:
        """Return the pending operations and forget them."""
        operations = self.pending_operations()
        self._operations().clear()
        return operations

    # -- internals -----------------------------------------------------------

    def _operations(self) -> list[PortfolioOperation]:
        try:
            return self._pending_operations
        except AttributeError:  # loaded from the database: __init__ did not run
            self._pending_operations = []
            return self._pending_operations

    def _record(self, kind: str, **arguments: Argument) -> None:
        self._operations().append(PortfolioOperation(kind, arguments))

    def _credit_cash(self, amount: money.AmountLike) -> Decimal:
        value = money.positive(amount, "amount")
        cash = money.checked_result(money.add(self.cash_balance, value), "cash_balance")
        deposits = money.checked_result(money.add(self.total_deposits, value), "total_deposits")
        self._cash_balance = cash
        self._total_deposits = deposits
        self._touch()
        return value

    def _debit_cash(self, amount: money.AmountLike) -> Decimal:
        value = money.positive(amount, "amount")
        withdrawals = money.checked_result(
            money.add(self.total_withdrawals, value), "total_withdrawals"
        )
        self._debit(value)
        self._total_withdrawals = withdrawals
        self._touch()
        return value

    def _debit(self, amount: Decimal) -> None:
        if amount > self.cash_balance:
            raise InsufficientFundsError(self.id, amount, self.cash_balance)
        self._cash_balance = money.sub(self.cash_balance, amount)

    def _open_position(self, symbol: str) -> Position:
        money.validate_symbol(symbol)
        position = self._find_open(symbol)
        if position is None:
            raise PositionNotFoundError(self.id, symbol)
        return position

    # Positions: one symbol at a time through the book (O(1), no full load),
    # all of them through the list (see domain.position_book).

    def _book(self) -> PositionBook:
        try:
            return self._position_book
        except AttributeError:  # loaded from the database, or reset by persistence
            self._position_book = PositionBook()
            return self._position_book

    def _all_positions(self) -> list[Position]:
        """Every position held: the list (loaded if need be) and those fetched singly."""
        return self._book().merged(self._positions)

    def _find_open(self, symbol: str) -> Position | None:
        return self._book().find_open(self, self._source, symbol)

    def _attach(self, position: Position) -> None:
        self._book().attach(self, self._source, position)

    def _touch(self) -> None:
        self.last_updated = utcnow()

    def __repr__(self) -> str:
        return (
            f"Portfolio(id={self.id}, name={self.name!r}, cash_balance={self.cash_balance}, "
            f"realized_pnl={self.realized_pnl}, version={self._version}, "
            f"positions={sorted(self.positions)})"
        )
