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

from portfolio_core.domain.arguments import clean_text
from portfolio_core.errors import ValidationError

PRECISION: Final = 24
"""Total significant digits of a money, price or quantity column."""
SCALE: Final = 8
"""Decimal places kept by a money, price or quantity column."""

_QUANTUM: Final = Decimal(1).scaleb(-SCALE)
_LIMIT: Final = Decimal(10) ** (PRECISION - SCALE)
_ONE: Final = Decimal(1)
_NON_FINITE_WORDS: Final = frozenset({"nan", "snan", "inf", "infinity"})

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


_LITERAL_RE: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
LITERAL_MAX_LENGTH: Final = 64
"""The longest amount string accepted (a NUMERIC(24, 8) value needs at most 26 characters)."""


def to_decimal(value: object, field: str) -> Decimal:
    """Convert ``value`` to a finite Decimal that fits NUMERIC(24, 8), or raise.

    Accepts Decimal, int and str (a plain ASCII decimal literal such as
    ``"-12.50"`` or ``"1E+2"``: no spaces, underscores or non-ASCII digits, at
    most LITERAL_MAX_LENGTH characters). Rejects float and bool (a float has
    already lost the exact value), NaN, sNaN, +-Infinity, values with more than
    8 significant decimal places and values of 10**16 or more in magnitude,
    each with :class:`ValidationError`. The value returned has the same
    value and at most 8 places and no exponent (``1E+2`` becomes ``100``,
    ``1.000000000`` becomes ``1.00000000``), and a zero is never negative, so
    what is stored (in the column and in the audit trail) is bounded and exact.
    """
    if (
        type(value) is Decimal
        and value.is_finite()
        and -_LIMIT < value < _LIMIT
        and _LENIENT.quantize(value, _QUANTUM) == value
        and value
    ):
        # Fast path for the common case (a finite non-zero Decimal in range,
        # e.g. each of 10,000 prices): it fits the scale iff quantizing changes
        # nothing. The lenient context never traps: anything else takes the
        # checks below.
        return _normalised(value)
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise ValidationError(
            field, value, f"must be a Decimal, int or str, not {type(value).__name__}"
        )
    if isinstance(value, str):
        if len(value) > LITERAL_MAX_LENGTH or not _LITERAL_RE.fullmatch(value):
            if value.lower().lstrip("+-") in _NON_FINITE_WORDS:
                raise ValidationError(field, value, "must be finite (no NaN or Infinity)")
            raise ValidationError(field, value, "is not a plain decimal number")
        number = Decimal(value)
    elif isinstance(value, int):
        # Compare before converting: Decimal(10**5000) is fine but slow to print.
        if -(10 ** (PRECISION - SCALE)) < value < 10 ** (PRECISION - SCALE):
            return Decimal(value)
        number = Decimal(1 if value > 0 else -1).scaleb(PRECISION - SCALE)
    else:
        number = Decimal(value)  # a subclass becomes a plain Decimal
    if not number.is_finite():
        raise ValidationError(field, value, "must be finite (no NaN or Infinity)")
    if number.is_zero():
        return _normalised(number)
    # adjusted() is the exponent of the leading digit: no arithmetic, so no
    # decimal.Overflow for 1E+999999999999999999.
    if number.adjusted() >= PRECISION - SCALE:
        raise ValidationError(
            field, value, f"must be less than 10**{PRECISION - SCALE} in magnitude"
        )
    if number.adjusted() < -SCALE:
        raise ValidationError(field, value, f"has more than {SCALE} decimal places")
    try:
        # Trailing zeros beyond the scale are fine; any other digit is not.
        EXACT.quantize(number, _QUANTUM)
    except decimal.Inexact:
        raise ValidationError(field, value, f"has more than {SCALE} decimal places") from None
    return _normalised(number)


class FixedPoint(Decimal):
    """A Decimal that prints in fixed-point notation: ``0.00000000``, never ``0E-8``.

    Money, prices and quantities come back from the library as FixedPoint
    (snapshot fields, derived figures, results, audit event arguments): the
    same value and the same digits as the Decimal it was made from, so it
    compares, hashes and round-trips exactly like it; only ``str()`` (hence
    JSON written with ``default=str``, f-strings, logs) differs. Plain
    ``Decimal.__str__`` switches to exponent notation below 10**-6, which a
    NUMERIC(24, 8) zero or cent fraction hits. Arithmetic on FixedPoint
    values gives plain Decimals.
    """

    __slots__ = ()

    def __str__(self) -> str:
        return Decimal.__format__(self, "f")

    def __format__(self, spec: str, context: decimal.Context | None = None, /) -> str:
        # f"{amount}" is format(amount, ""), which Decimal renders like str().
        if context is None:  # the C implementation refuses an explicit None
            return Decimal.__format__(self, spec or "f")
        return Decimal.__format__(self, spec or "f", context)

    def __repr__(self) -> str:
        return f"FixedPoint('{self}')"


def fixed(value: Decimal) -> FixedPoint:
    """``value`` as a :class:`FixedPoint` (same value and digits)."""
    return value if type(value) is FixedPoint else FixedPoint(value)


def _normalised(number: Decimal) -> Decimal:
    """``number`` (finite, in range) with its exponent brought into [-SCALE, 0], zero unsigned."""
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -SCALE <= exponent <= 0:
        return number.copy_abs() if number.is_zero() else number
    # Exact: the range and scale checks passed, so only zeros are added or removed.
    bounded = _LENIENT.quantize(number, _QUANTUM if exponent < 0 else _ONE)  # type: ignore[operator]
    return bounded.copy_abs() if bounded.is_zero() else bounded


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
    """A non-blank portfolio name of at most 200 characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX_LENGTH:
        raise ValidationError("name", value, f"must be 1-{NAME_MAX_LENGTH} characters, not blank")
    return clean_text(value, "name")
