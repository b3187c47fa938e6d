"""Decimal validation and exact arithmetic for money, prices and quantities.

Every amount in portfolio_core is a :class:`decimal.Decimal` that fits the
database column ``NUMERIC(24, 8)``: at most 16 digits before the point and 8
after it.  Values are validated *before* any SQL runs and are never rounded
silently: a value with more decimal places than the column keeps is rejected,
not rounded.

Arithmetic on validated values goes through :data:`EXACT`, a decimal context
wide enough (100 significant digits) that sums and products of column values
are always exact; the default context (28 digits) would round a product of
two 24-digit numbers without a word.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal
from typing import Final

from portfolio_core.errors import ValidationError

PRECISION: Final = 24
"""Total significant digits of a money, price or quantity column."""
SCALE: Final = 8
"""Decimal places kept by a money, price or quantity column."""

_QUANTUM: Final = Decimal(1).scaleb(-SCALE)
_LIMIT: Final = Decimal(10) ** (PRECISION - SCALE)

EXACT: Final = decimal.Context(
    prec=100,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, decimal.Inexact],
)
"""Context for arithmetic that must be exact: it raises instead of rounding."""

_LENIENT: Final = decimal.Context(prec=PRECISION + 2, rounding=decimal.ROUND_HALF_EVEN, traps=[])

_DIVISION: Final = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)

_SYMBOL_RE: Final = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,19}")
SYMBOL_MAX_LENGTH: Final = 20
NAME_MAX_LENGTH: Final = 200

AmountLike = Decimal | int | str
"""What the public API accepts as an amount: never a float or a bool."""


def to_decimal(value: object, field: str) -> Decimal:
    """Convert ``value`` to a finite Decimal that fits NUMERIC(24, 8), or raise.

    Accepts Decimal, int and str (when it parses to a finite decimal). Rejects
    float and bool (a float has already lost the exact value), NaN, sNaN,
    +-Infinity, values with more than 8 decimal places and values of 10**16
    or more in magnitude, each with :class:`ValidationError`.
    """
    if (
        type(value) is Decimal
        and value.is_finite()
        and -_LIMIT < value < _LIMIT
        and _LENIENT.quantize(value, _QUANTUM) == value
    ):
        # Fast path for the common case (a finite Decimal in range, e.g. each of
        # 10,000 prices): it fits the scale iff quantizing changes nothing. The
        # lenient context never traps: anything else takes the checks below.
        return value
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise ValidationError(
            field, value, f"must be a Decimal, int or str, not {type(value).__name__}"
        )
    if isinstance(value, str):
        if not value.isascii():
            # Decimal() reads any Unicode digit ('١٢٣' is 123): only ASCII is a number here.
            raise ValidationError(field, value, "is not a decimal number")
        try:
            number = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValidationError(field, value, "is not a decimal number") from None
    else:
        number = Decimal(value)
    if not number.is_finite():
        raise ValidationError(field, value, "must be finite (no NaN or Infinity)")
    if abs(number) >= _LIMIT:
        raise ValidationError(
            field, value, f"must be less than 10**{PRECISION - SCALE} in magnitude"
        )
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -SCALE:
        try:
            # Trailing zeros beyond the scale are fine; any other digit is not.
            number.quantize(_QUANTUM, context=EXACT)
        except decimal.Inexact:
            raise ValidationError(field, value, f"has more than {SCALE} decimal places") from None
    return number


def positive(value: object, field: str) -> Decimal:
    """A valid amount that is strictly greater than zero."""
    number = to_decimal(value, field)
    if number <= 0:
        raise ValidationError(field, value, "must be greater than zero")
    return number


def non_negative(value: object, field: str) -> Decimal:
    """A valid amount that is zero or more."""
    number = to_decimal(value, field)
    if number < 0:
        raise ValidationError(field, value, "must not be negative")
    return number


def checked_result(value: Decimal, field: str) -> Decimal:
    """Check that a computed amount (a product, a sum) still fits the column.

    Used on results such as ``quantity * price``: the inputs were valid, but
    their product may have 16 decimal places or overflow 16 integer digits.
    """
    return to_decimal(value, field)


def mul(left: Decimal, right: Decimal) -> Decimal:
    """Exact product."""
    return EXACT.multiply(left, right)


def add(left: Decimal, right: Decimal) -> Decimal:
    """Exact sum."""
    return EXACT.add(left, right)


def sub(left: Decimal, right: Decimal) -> Decimal:
    """Exact difference."""
    return EXACT.subtract(left, right)


def divide(left: Decimal, right: Decimal) -> Decimal:
    """A quotient to 60 significant digits (for derived figures only)."""
    return _DIVISION.divide(left, right)


def proportional_share(total: Decimal, part: Decimal, whole: Decimal) -> Decimal:
    """``total * part / whole`` rounded half-even to the column's 8 places.

    This is the one place a value is rounded, and it is an allocation, not a
    loss: the caller keeps ``total - share`` exactly, so the two halves always
    add up to ``total``.
    """
    return _DIVISION.divide(EXACT.multiply(total, part), whole).quantize(
        _QUANTUM, rounding=decimal.ROUND_HALF_EVEN
    )


def validate_symbol(value: object) -> str:
    """An upper-case ticker of letters, digits, '.' and '-', 1 to 20 characters."""
    if not isinstance(value, str) or not _SYMBOL_RE.fullmatch(value):
        raise ValidationError(
            "symbol",
            value,
            f"must be 1-{SYMBOL_MAX_LENGTH} upper-case letters, digits, '.' or '-'",
        )
    return value


def validate_name(value: object) -> str:
    """A non-blank portfolio name of at most 200 characters, storable as PostgreSQL text."""
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX_LENGTH:
        raise ValidationError("name", value, f"must be 1-{NAME_MAX_LENGTH} characters, not blank")
    if "\x00" in value or (not value.isprintable() and _unencodable(value)):
        # PostgreSQL text holds neither NUL nor a lone surrogate (not UTF-8).
        raise ValidationError("name", value, "must not contain NUL or lone surrogates")
    return value


def _unencodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
