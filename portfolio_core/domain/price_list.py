"""A bulk price list (symbol -> price) validated in one pass, and its compact text form.

``update_all_prices`` takes thousands of prices per call. Checking each
symbol and price through ``money.validate_symbol``/``money.non_negative``
costs about 2 µs a pair; :func:`validated_prices` instead checks the common
case (str symbols, plain Decimal prices already in canonical form) with one
regular expression over all symbols and one over all prices, each joined by
spaces, and keeps those two texts: they are the SQL statement's parameters
(split into arrays by the server) and the audit event's compact form.
Anything the fast check does not accept takes the per-pair checks, which
raise the same ValidationError (same field, same first offending pair).
"""

from __future__ import annotations

import re
from collections.abc import Container, ItemsView, Iterator, KeysView, Mapping, ValuesView
from decimal import Decimal
from typing import Any, Final, cast

from portfolio_core.domain import money

_SYMBOL: Final = r"[A-Z0-9][A-Z0-9.\-]{0,19}"  # money._SYMBOL_RE, without the anchors
# A non-negative Decimal whose str() is plain, with at most 16 integer and 8
# fraction digits: exactly the values money.to_decimal returns unchanged.
_PRICE: Final = r"[0-9]{1,16}(?:\.[0-9]{1,8})?"
_SYMBOLS_RE: Final = re.compile(f"{_SYMBOL}(?: {_SYMBOL})*")
_PRICES_RE: Final = re.compile(f"{_PRICE}(?: {_PRICE})*")
_ISSUED: Final = object()


class ValidatedPrices(Mapping[str, Decimal]):
    """Prices that passed validation: valid symbols, finite non-negative NUMERIC(24, 8) Decimals.

    Made by :func:`validated_prices` only. Read-only; keeps the caller's
    order. :meth:`texts` gives the symbols and the ``str()`` of the prices,
    each joined by single spaces (neither a valid symbol nor a price's
    ``str()`` contains a space).
    """

    __slots__ = ("_prices", "_texts")

    def __init__(
        self, prices: dict[str, Decimal], texts: tuple[str, str] | None = None, *, issued: object
    ) -> None:
        if issued is not _ISSUED:  # trusted as checked: nobody else may make one
            raise TypeError("ValidatedPrices are made by validated_prices() only")
        self._prices = prices
        self._texts = texts

    def __getitem__(self, symbol: str) -> Decimal:
        return self._prices[symbol]

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    # The dict's own views: Mapping's would call __getitem__ once per symbol.
    def keys(self) -> KeysView[str]:
        return self._prices.keys()

    def values(self) -> ValuesView[Decimal]:
        return self._prices.values()

    def items(self) -> ItemsView[str, Decimal]:
        return self._prices.items()

    def __repr__(self) -> str:
        return f"ValidatedPrices({self._prices!r})"

    def only(self, kept: Container[str]) -> ValidatedPrices:
        """The prices of the symbols in ``kept``, in the same order (still validated)."""
        return ValidatedPrices(
            {symbol: price for symbol, price in self._prices.items() if symbol in kept},
            issued=_ISSUED,
        )

    def texts(self) -> tuple[str, str]:
        """(symbols_text, prices_text), built once."""
        if self._texts is None:
            self._texts = compact(self._prices)
        return self._texts


def validated_prices(prices: Mapping[Any, object]) -> ValidatedPrices:
    """``prices`` checked: symbols as ``money.validate_symbol``, prices as ``money.non_negative``.

    Raises ValidationError for the first invalid pair, in the mapping's order
    (field ``symbol`` or ``prices['SYM']``).
    """
    if isinstance(prices, ValidatedPrices):
        return prices
    symbols, values = list(prices), list(prices.values())
    if symbols and set(map(type, symbols)) == {str} and set(map(type, values)) == {Decimal}:
        names, amounts = cast(list[str], symbols), cast(list[Decimal], values)
        symbols_text, prices_text = " ".join(names), " ".join(map(str, amounts))
        if (
            _SYMBOLS_RE.fullmatch(symbols_text)
            # One space per gap: no symbol hides a space (a price's str() has none).
            and symbols_text.count(" ") == len(names) - 1
            and _PRICES_RE.fullmatch(prices_text)
        ):
            # Every price is already what money.non_negative would return.
            copied = (
                dict(prices) if type(prices) is dict else dict(zip(names, amounts, strict=True))
            )
            return ValidatedPrices(copied, (symbols_text, prices_text), issued=_ISSUED)
    checked = {
        money.validate_symbol(symbol): money.non_negative(price, f"prices[{symbol!r}]")
        for symbol, price in prices.items()
    }
    return ValidatedPrices(checked, issued=_ISSUED)


def compact(prices: Mapping[str, Decimal]) -> tuple[str, str]:
    """(symbols, prices) of validated ``prices`` as two space-joined texts, in order."""
    # format "f": plain digits, never an exponent, whichever path validated them.
    return " ".join(prices), " ".join(format(price, "f") for price in prices.values())


def from_compact(symbols: str, prices: str) -> dict[str, Decimal]:
    """The inverse of :func:`compact` (prices as exact Decimals, in fixed-point form)."""
    names, values = symbols.split(" "), prices.split(" ")
    if len(names) != len(values):
        raise ValueError(f"{len(names)} symbols but {len(values)} prices")
    return {name: money.fixed(Decimal(value)) for name, value in zip(names, values, strict=True)}
