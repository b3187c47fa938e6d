"""Hypothesis strategies for portfolio_core: valid inputs, domain operations as data.

Every value drawn here is one the library accepts: amounts fit the columns'
``NUMERIC(24, 8)`` (at most 16 digits before the point, 8 after) and are
Decimals, never floats; symbols, names and idempotency keys pass their checks.
The ``invalid_*`` strategies (:mod:`portfolio_core.testing.invalid`, exported
here too) draw exactly the inputs the library must refuse.

:func:`operations` draws :class:`~portfolio_core.PortfolioOperation` records
(the library's own form of a domain command, as the audit trail keeps it);
apply one with :func:`portfolio_core.domain.replay.reapply_operation`, or
through a store with :func:`portfolio_core.testing.operations.execute_operation`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from portfolio_core.domain import money
from portfolio_core.domain.events import PortfolioOperation
from portfolio_core.domain.position import PositionRequest
from portfolio_core.persistence.schema import IDEMPOTENCY_KEY_MAX_LENGTH
from portfolio_core.testing.invalid import (
    invalid_amounts,
    invalid_idempotency_keys,
    invalid_names,
    invalid_position_requests,
    invalid_positive_amounts,
    invalid_symbols,
)

__all__ = [
    "DEFAULT_SYMBOLS",
    "MAX_AMOUNT",
    "OPERATION_KINDS",
    "SMALLEST_AMOUNT",
    "amounts",
    "column_values",
    "decimals_at_scale",
    "idempotency_keys",
    "invalid_amounts",
    "invalid_idempotency_keys",
    "invalid_names",
    "invalid_position_requests",
    "invalid_positive_amounts",
    "invalid_symbols",
    "names",
    "operation_sequences",
    "operations",
    "position_requests",
    "prices",
    "quantities",
    "symbols",
]

SMALLEST_AMOUNT: Final = Decimal(1).scaleb(-money.SCALE)
"""0.00000001, the smallest positive value a column holds."""
MAX_AMOUNT: Final = Decimal(10) ** (money.PRECISION - money.SCALE) - SMALLEST_AMOUNT
"""9999999999999999.99999999, the largest value a column holds."""
DEFAULT_SYMBOLS: Final = ("AAA", "BBB", "CCC")
"""The symbols operations use by default: few, so closes and re-pricing meet open positions."""
OPERATION_KINDS: Final = (
    "deposit",
    "withdraw",
    "open_position",
    "close_position",
    "update_position_price",
    "update_all_prices",
)
"""The single-portfolio operation kinds :func:`operations` draws (transfers need two)."""

# Printable text PostgreSQL can store: no NUL, no lone surrogates (not UTF-8).
_STORABLE_CHARACTERS: Final = st.characters(codec="utf-8", exclude_characters="\x00")


def decimals_at_scale(
    min_value: Decimal | int | str, max_value: Decimal | int | str, *, max_places: int = money.SCALE
) -> st.SearchStrategy[Decimal]:
    """Decimals in ``[min_value, max_value]`` with 0 to ``max_places`` decimal places.

    The number of places is drawn first, then the digits, so short and long
    fractions both appear (``st.decimals(places=8)`` always writes 8 places).
    Both bounds must fit NUMERIC(24, 8) and ``max_places`` be at most 8.
    """
    low, high = Decimal(min_value), Decimal(max_value)
    if not 0 <= max_places <= money.SCALE:
        raise InvalidArgument(f"max_places={max_places} is not between 0 and {money.SCALE}")
    if not -MAX_AMOUNT <= low <= high <= MAX_AMOUNT:
        raise InvalidArgument(f"need -MAX_AMOUNT <= min_value={low} <= max_value={high} <= MAX")

    def units(places: int) -> tuple[int, int]:
        scale = Decimal(10) ** places
        return math.ceil(low * scale), math.floor(high * scale)

    usable = [p for p in range(max_places + 1) if units(p)[0] <= units(p)[1]]
    if not usable:
        raise InvalidArgument(f"no value in [{low}, {high}] has at most {max_places} places")
    finest = units(max_places)

    def cut(places: int, count: int) -> Decimal:
        # Digits drawn at the finest scale, cut to ``places``: no flatmap, so
        # both the places and the digits shrink towards simple values.
        value = Decimal(count).scaleb(-max_places).quantize(Decimal(1).scaleb(-places), ROUND_DOWN)
        lowest, highest = (Decimal(u).scaleb(-places) for u in units(places))
        return max(lowest, min(highest, value))

    # tuples().map() rather than builds(): failing examples then print the Decimal itself.
    return st.tuples(st.sampled_from(usable), st.integers(*finest)).map(lambda t: cut(*t))


def column_values() -> st.SearchStrategy[Decimal]:
    """Any value a money, price or quantity column holds, negative, zero or positive."""
    return decimals_at_scale(-MAX_AMOUNT, MAX_AMOUNT)


def amounts(
    *,
    min_value: Decimal | int | str = SMALLEST_AMOUNT,
    max_value: Decimal | int | str = 10**12,
    max_places: int = money.SCALE,
) -> st.SearchStrategy[Decimal]:
    """Positive cash amounts (deposits, withdrawals, transfers, opening balances)."""
    return decimals_at_scale(min_value, max_value, max_places=max_places)


def prices(
    *,
    min_value: Decimal | int | str = Decimal("0.0001"),
    max_value: Decimal | int | str = 10**6,
    max_places: int = 4,
) -> st.SearchStrategy[Decimal]:
    """Positive prices; 4 places by default so that quantity x price fits 8 places.

    Pass ``max_places=8`` to also draw products the library refuses (too many places).
    """
    return decimals_at_scale(min_value, max_value, max_places=max_places)


def quantities(
    *,
    min_value: Decimal | int | str = Decimal("0.0001"),
    max_value: Decimal | int | str = 10**5,
    max_places: int = 4,
) -> st.SearchStrategy[Decimal]:
    """Positive quantities; 4 places by default (see :func:`prices`)."""
    return decimals_at_scale(min_value, max_value, max_places=max_places)


def symbols(pool: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """Valid tickers: one of ``pool`` if given, else any 1-20 of A-Z, 0-9, '.', '-'."""
    if pool is not None:
        return st.sampled_from([money.validate_symbol(symbol) for symbol in pool])
    return st.from_regex(r"[A-Z0-9][A-Z0-9.\-]{0,19}", fullmatch=True)


def names() -> st.SearchStrategy[str]:
    """Valid portfolio names: 1-200 storable characters, not blank."""
    return st.text(_STORABLE_CHARACTERS, min_size=1, max_size=money.NAME_MAX_LENGTH).filter(
        str.strip
    )


def idempotency_keys() -> st.SearchStrategy[str]:
    """Valid idempotency keys: 1-200 storable characters."""
    return st.text(_STORABLE_CHARACTERS, min_size=1, max_size=IDEMPOTENCY_KEY_MAX_LENGTH)


def position_requests(
    symbols: st.SearchStrategy[str] | None = None,
    quantities: st.SearchStrategy[Decimal] | None = None,
    prices: st.SearchStrategy[Decimal] | None = None,
) -> st.SearchStrategy[PositionRequest]:
    """Valid PositionRequests (the cost may still exceed a portfolio's cash)."""
    return st.builds(
        PositionRequest,
        symbols or _default_symbols(),
        quantities or _quantities(),
        prices or _prices(),
    )


def operations(
    *,
    symbols: st.SearchStrategy[str] | None = None,
    amounts: st.SearchStrategy[Decimal] | None = None,
    quantities: st.SearchStrategy[Decimal] | None = None,
    prices: st.SearchStrategy[Decimal] | None = None,
    kinds: Sequence[str] = OPERATION_KINDS,
) -> st.SearchStrategy[PortfolioOperation]:
    """Domain commands on one portfolio, as data: deposit, withdraw, open, close, re-price.

    Each is valid on its own; applied to a portfolio it may still be refused
    (not enough cash, no such position, a cost beyond 8 places), which is
    part of what a sequence should exercise. ``close_position`` closes the
    whole position (quantity None) or a drawn quantity.
    """
    symbol = symbols or _default_symbols()
    amount = amounts or _amounts()
    quantity = quantities or _quantities()
    price = prices or _prices()
    unknown = set(kinds) - set(OPERATION_KINDS)
    if unknown or not kinds:
        raise InvalidArgument(f"kinds must be a non-empty subset of {OPERATION_KINDS}")

    def op(kind: str, **arguments: st.SearchStrategy[Any]) -> st.SearchStrategy[PortfolioOperation]:
        return st.fixed_dictionaries(arguments).map(lambda drawn: PortfolioOperation(kind, drawn))

    by_kind = {
        "deposit": op("deposit", amount=amount),
        "withdraw": op("withdraw", amount=amount),
        "open_position": op("open_position", symbol=symbol, quantity=quantity, entry_price=price),
        "close_position": op(
            "close_position", symbol=symbol, exit_price=price, quantity=st.none() | quantity
        ),
        "update_position_price": op("update_position_price", symbol=symbol, price=price),
        "update_all_prices": op(
            "update_all_prices", prices=st.dictionaries(symbol, price, min_size=1, max_size=4)
        ),
    }
    return st.one_of([by_kind[kind] for kind in kinds])


def operation_sequences(
    steps: st.SearchStrategy[PortfolioOperation] | None = None,
    *,
    min_size: int = 0,
    max_size: int = 20,
) -> st.SearchStrategy[list[PortfolioOperation]]:
    """Lists of operations: ``steps`` (default: :func:`operations` with its defaults)."""
    return st.lists(steps or operations(), min_size=min_size, max_size=max_size)


def _default_symbols() -> st.SearchStrategy[str]:
    return symbols(DEFAULT_SYMBOLS)


_amounts, _prices, _quantities = amounts, prices, quantities
"""The module-level strategies under names the keyword arguments above do not shadow."""
