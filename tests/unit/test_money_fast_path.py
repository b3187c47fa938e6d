"""to_decimal's Decimal fast path accepts and rejects exactly what the full checks do."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portfolio_core.domain import money
from portfolio_core.errors import ValidationError


class _DecimalSubclass(Decimal):
    pass


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0",
        "12.5",
        "0.00000001",
        "-0.00000001",
        "1.00000000000",
        "1E+2",
        "9999999999999999.99999999",
        "-9999999999999999.99999999",
    ],
)
def test_decimals_that_fit_numeric_24_8_come_back_unchanged(text: str) -> None:
    value = Decimal(text)
    result = money.to_decimal(value, "x")
    assert result == value
    assert money.to_decimal(_DecimalSubclass(text), "x") == value


@pytest.mark.parametrize(
    "text",
    [
        "0.000000001",
        "1.123456789",
        "1E-9",
        "1E+16",
        "-1E+16",
        "10000000000000000",
        "NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        "9999999999999999.999999999",
    ],
)
def test_decimals_that_do_not_fit_are_rejected(text: str) -> None:
    with pytest.raises(ValidationError):
        money.to_decimal(Decimal(text), "x")
