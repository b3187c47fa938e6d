"""Hypothesis strategies for the inputs portfolio_core must refuse with ValidationError.

Each strategy draws only values the library refuses before any SQL runs:
floats (even 1.5: a float has already lost the exact value), bools, NaN,
sNaN and Infinity (as Decimals and as strings), more than 8 decimal places,
magnitudes of 10**16 or more, digits other than ASCII 0-9, NUL characters,
text that is not a number and objects of the wrong type. A service can check
that its own entry points pass such input on to the library, or refuse it
first, and never store it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from hypothesis import strategies as st

from portfolio_core.domain import money
from portfolio_core.persistence.schema import IDEMPOTENCY_KEY_MAX_LENGTH

__all__ = [
    "invalid_amounts",
    "invalid_idempotency_keys",
    "invalid_names",
    "invalid_position_requests",
    "invalid_positive_amounts",
    "invalid_symbols",
]

_LIMIT: Final = Decimal(10) ** (money.PRECISION - money.SCALE)
_NON_FINITE: Final = ("NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "-inf")
# Unicode decimal digits other than ASCII that Python's Decimal() would read.
_FOREIGN_ZEROS: Final = (0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0xFF10, 0x1D7CE)
_NOT_IN_A_SYMBOL: Final = (" ", "\x00", "Ä", "Ａ", "_", "$", "\n")
_WRONG_TYPES: Final = st.one_of(
    st.none(), st.binary(max_size=4), st.lists(st.integers(), max_size=2), st.just(object())
)


def _plain(value: Decimal) -> str:
    return format(value, "f")


def _in_range() -> st.SearchStrategy[Decimal]:
    from portfolio_core.testing.strategies import column_values

    return column_values()


def _too_many_places() -> st.SearchStrategy[Decimal]:
    # A valid value (below 10**15, so the sum stays in range) plus a non-zero
    # digit somewhere past the 8th place.
    return st.builds(
        lambda base, digit, place: money.add(base, Decimal(digit).scaleb(-place)),
        st.integers(-(10**15), 10**15).map(Decimal),
        st.integers(1, 9),
        st.integers(money.SCALE + 1, 40),
    )


def _out_of_range() -> st.SearchStrategy[Decimal]:
    magnitude = st.integers(int(_LIMIT), 10**40).map(Decimal)
    return st.builds(lambda m, negative: -m if negative else m, magnitude, st.booleans())


def _foreign_digits(number: str, zero: int) -> str:
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in number)


def _with_nul(text: str, where: int) -> str:
    cut = where % (len(text) + 1)
    return text[:cut] + "\x00" + text[cut:]


def invalid_amounts() -> st.SearchStrategy[Any]:
    """Anything no amount, price or quantity argument accepts."""
    valid_text = _in_range().map(_plain)
    return st.one_of(
        st.floats(),
        st.booleans(),
        st.sampled_from(_NON_FINITE).flatmap(lambda t: st.sampled_from([t, Decimal(t)])),
        _too_many_places(),
        _too_many_places().map(_plain),
        _out_of_range(),
        _out_of_range().map(int),
        _out_of_range().map(_plain),
        st.builds(_foreign_digits, valid_text, st.sampled_from(_FOREIGN_ZEROS)),
        st.builds(_with_nul, valid_text, st.integers(min_value=0)),
        st.sampled_from(["", " ", "abc", "1,5", "1.2.3", "0x10", "--1", "1e", "€5"]),
        _WRONG_TYPES,
    )


def invalid_positive_amounts() -> st.SearchStrategy[Any]:
    """:func:`invalid_amounts`, plus zero and negative values (deposits, prices, quantities)."""
    non_positive = _in_range().map(lambda value: -abs(value))
    return st.one_of(invalid_amounts(), non_positive, non_positive.map(_plain), st.just(0))


def invalid_symbols() -> st.SearchStrategy[Any]:
    """Not a ticker: lower case, blank, too long, odd or non-ASCII characters, NUL, not a str."""
    ticker = st.from_regex(r"[A-Z0-9][A-Z0-9.\-]{0,18}", fullmatch=True)
    return st.one_of(
        st.just(""),
        ticker.map(lambda t: t.lower() + "a"),
        st.from_regex(r"[A-Z0-9.\-]{21,30}", fullmatch=True),
        ticker.map(lambda t: "." + t),
        st.builds(
            lambda t, odd: t + odd,
            ticker,
            st.sampled_from([" ", "\x00", "Ä", "Ａ", "_", "$", "\n"]),
        ),
        st.builds(_foreign_digits, st.just("7"), st.sampled_from(_FOREIGN_ZEROS)),
        st.integers(),
        _WRONG_TYPES,
    )


def invalid_names() -> st.SearchStrategy[Any]:
    """Not a portfolio name: blank, over 200 characters, NUL, a lone surrogate, not a str."""
    return st.one_of(
        st.text(st.sampled_from(" \t\n\r\x0b\x0c\u3000"), max_size=5),
        st.text(min_size=money.NAME_MAX_LENGTH + 1, max_size=money.NAME_MAX_LENGTH + 20),
        st.builds(_with_nul, st.text(max_size=10), st.integers(min_value=0)),
        st.builds(lambda t: t + "\ud800", st.text(max_size=10)),
        st.integers(),
        _WRONG_TYPES,
    )


def invalid_idempotency_keys() -> st.SearchStrategy[Any]:
    """Not an idempotency key: empty, over 200 characters, not a str."""
    too_long = st.text(
        min_size=IDEMPOTENCY_KEY_MAX_LENGTH + 1, max_size=IDEMPOTENCY_KEY_MAX_LENGTH + 20
    )
    return st.one_of(st.just(""), too_long, st.integers(), _WRONG_TYPES)


def invalid_position_requests() -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments of PositionRequest with one of them invalid (``PositionRequest(**kw)``)."""
    from portfolio_core.testing.strategies import DEFAULT_SYMBOLS, prices, quantities

    symbol = st.sampled_from(DEFAULT_SYMBOLS)
    return st.one_of(
        st.fixed_dictionaries(
            {"symbol": invalid_symbols(), "quantity": quantities(), "entry_price": prices()}
        ),
        st.fixed_dictionaries(
            {"symbol": symbol, "quantity": invalid_positive_amounts(), "entry_price": prices()}
        ),
        st.fixed_dictionaries(
            {"symbol": symbol, "quantity": quantities(), "entry_price": invalid_positive_amounts()}
        ),
    )
