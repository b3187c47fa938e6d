"""Property: no sequence of operations creates or loses a single unit of money.

cash + sum(open cost_basis) - realized_pnl == initial + deposits - withdrawals, exactly,
after every operation, accepted or refused; cash never goes negative; a refused
operation changes nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from portfolio_core import (
    InsufficientFundsError,
    Portfolio,
    PositionNotFoundError,
    PositionRequest,
    ValidationError,
)
from tests.property.strategies import cash_amounts, prices, quantities, scaled, symbols
from tests.snapshots import portfolio_state

Operation = tuple[str, Callable[[Portfolio], object], Decimal, Decimal]
"""(description, command, deposit made if accepted, withdrawal made if accepted)."""

ZERO = Decimal(0)
EIGHT_PLACES = Decimal("1E-8")


def _open(symbol: str, quantity: Decimal, price: Decimal) -> Operation:
    return (
        f"open {quantity} {symbol} @ {price}",
        lambda p: p.open_position(PositionRequest(symbol, quantity, price)),
        ZERO,
        ZERO,
    )


def _close_part(symbol: str, fraction: Decimal, price: Decimal) -> Operation:
    def command(portfolio: Portfolio) -> object:
        held = portfolio.positions.get(symbol)
        # Half, a third... of what is held, cut to 4 places: a partial close that
        # exercises the rounded cost share (or the whole, when it rounds up to it).
        quantity = (held.quantity * fraction).quantize(Decimal("0.0001")) if held else fraction
        return portfolio.close_position(symbol, price, quantity=max(quantity, Decimal("0.0001")))

    return (f"close {fraction} of {symbol} @ {price}", command, ZERO, ZERO)


def _close_all(symbol: str, price: Decimal) -> Operation:
    return (f"close {symbol} @ {price}", lambda p: p.close_position(symbol, price), ZERO, ZERO)


def _reprice(symbol: str, price: Decimal) -> Operation:
    return (
        f"price {symbol} {price}",
        lambda p: p.update_all_prices({symbol: price, "ZZZ": price}),
        ZERO,
        ZERO,
    )


def _deposit(amount: Decimal) -> Operation:
    return (f"deposit {amount}", lambda p: p.deposit(amount), amount, ZERO)


def _withdraw(amount: Decimal) -> Operation:
    return (f"withdraw {amount}", lambda p: p.withdraw(amount), ZERO, amount)


fractions = st.sampled_from([Decimal("0.5"), Decimal("0.3333"), Decimal("0.9999"), Decimal(1)])

operations = st.one_of(
    # Opening is listed twice so that closes and re-pricing find positions to act on.
    st.builds(_open, symbols, quantities, prices),
    st.builds(_open, symbols, quantities, prices),
    st.builds(_close_part, symbols, fractions, prices),
    st.builds(_close_all, symbols, prices),
    st.builds(_reprice, symbols, prices),
    st.builds(_deposit, cash_amounts),
    st.builds(_withdraw, cash_amounts),
)


@settings(max_examples=300, deadline=None)
@given(
    initial=st.one_of(st.just(ZERO), scaled(10**14, 8), scaled(10**12, 0)),
    steps=st.lists(operations, max_size=40),
)
def test_money_is_conserved_exactly_by_any_operation_sequence(
    initial: Decimal, steps: list[Operation]
) -> None:
    portfolio = Portfolio("property", initial)
    deposits = withdrawals = ZERO

    for _description, command, deposit, withdrawal in steps:
        before = portfolio_state(portfolio)
        try:
            command(portfolio)
        except (ValidationError, InsufficientFundsError, PositionNotFoundError) as refused:
            event(f"refused: {type(refused).__name__}")
            assert portfolio_state(portfolio) == before
        else:
            event(f"accepted: {_description.split()[0]}")
            deposits += deposit
            withdrawals += withdrawal

        assert portfolio.cash_balance >= 0
        open_cost = sum((p.cost_basis for p in portfolio.positions.values()), ZERO)
        left = portfolio.cash_balance + open_cost - portfolio.realized_pnl
        assert left == initial + deposits - withdrawals
        assert portfolio.money_invariant_holds()
        assert portfolio.total_deposits == deposits
        assert portfolio.total_withdrawals == withdrawals
        for position in portfolio.positions.values():
            assert position.quantity > 0
            assert position.cost_basis >= 0
            # Trailing zeros aside, every stored figure fits the column's 8 places.
            assert position.cost_basis == position.cost_basis.quantize(EIGHT_PLACES)
            assert position.quantity == position.quantity.quantize(EIGHT_PLACES)
