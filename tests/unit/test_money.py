"""Money rules: what an amount may be, and the exact arithmetic on it (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portfolio_core import ValidationError
from portfolio_core.domain import money


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (Decimal("12.34567890"), Decimal("12.3456789")),
        (Decimal("-5"), Decimal("-5")),
        (0, Decimal(0)),
        (10**16 - 1, Decimal(10**16 - 1)),
        ("0.00000001", Decimal("0.00000001")),
        ("42.5", Decimal("42.5")),
        ("1e3", Decimal(1000)),
        (Decimal("9999999999999999.99999999"), Decimal("9999999999999999.99999999")),
        (Decimal("-9999999999999999.99999999"), Decimal("-9999999999999999.99999999")),
    ],
)
def test_to_decimal_accepts_decimal_int_and_numeric_str(given: object, expected: Decimal) -> None:
    result = money.to_decimal(given, "amount")

    assert isinstance(result, Decimal)
    assert result == expected


@pytest.mark.parametrize(
    "given",
    ["1.000000000", "1.10000000000000", Decimal("0E-20"), Decimal("5.1230000000000000000")],
)
def test_trailing_zeros_beyond_eight_places_are_accepted_unchanged_in_value(given: object) -> None:
    assert money.to_decimal(given, "amount") == Decimal(str(given))


@pytest.mark.parametrize(
    "given",
    [
        1.5,
        0.1,
        float("nan"),
        float("inf"),
        True,
        False,
        None,
        [1],
        b"1",
        complex(1, 0),
    ],
)
def test_to_decimal_rejects_floats_bools_and_other_types(given: object) -> None:
    with pytest.raises(ValidationError) as caught:
        money.to_decimal(given, "price")

    assert caught.value.field == "price"
    assert caught.value.value is given


@pytest.mark.parametrize(
    "given",
    [
        Decimal("NaN"),
        Decimal("-NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        "NaN",
        "sNaN",
        "Infinity",
        "-inf",
    ],
)
def test_to_decimal_rejects_nan_snan_and_infinities(given: object) -> None:
    with pytest.raises(ValidationError) as caught:
        money.to_decimal(given, "quantity")

    assert caught.value.field == "quantity"
    assert "finite" in caught.value.reason


@pytest.mark.parametrize("given", ["", "   ", "abc", "1,5", "1.2.3", "$5", "0x10", "1 2"])
def test_to_decimal_rejects_strings_that_are_not_numbers(given: str) -> None:
    with pytest.raises(ValidationError) as caught:
        money.to_decimal(given, "amount")

    assert caught.value.field == "amount"
    assert caught.value.value == given


@pytest.mark.parametrize(
    "given",
    [
        Decimal("0.000000001"),
        Decimal("1.123456789"),
        "0.000000015",
        Decimal("1E-9"),
        Decimal("-2.000000001"),
        Decimal("1.0000000010"),
    ],
)
def test_more_than_eight_decimal_places_is_rejected_never_rounded(given: object) -> None:
    with pytest.raises(ValidationError) as caught:
        money.to_decimal(given, "entry_price")

    assert caught.value.field == "entry_price"
    assert "decimal places" in caught.value.reason


@pytest.mark.parametrize(
    "given",
    [10**16, -(10**16), Decimal("1E16"), "10000000000000000.0", Decimal("1E+30"), 10**100],
)
def test_magnitude_of_ten_to_the_sixteen_or_more_is_rejected(given: object) -> None:
    with pytest.raises(ValidationError) as caught:
        money.to_decimal(given, "cash_balance")

    assert caught.value.field == "cash_balance"
    assert "10**16" in caught.value.reason


@pytest.mark.parametrize("given", [0, Decimal("0.00"), -1, Decimal("-0.00000001")])
def test_positive_rejects_zero_and_negatives(given: object) -> None:
    with pytest.raises(ValidationError) as caught:
        money.positive(given, "amount")

    assert caught.value.field == "amount"


def test_positive_accepts_the_smallest_unit() -> None:
    assert money.positive("0.00000001", "amount") == Decimal("0.00000001")


@pytest.mark.parametrize("given", [-1, Decimal("-0.00000001"), "-3"])
def test_non_negative_rejects_negatives(given: object) -> None:
    with pytest.raises(ValidationError) as caught:
        money.non_negative(given, "price")

    assert caught.value.field == "price"


@pytest.mark.parametrize("given", [0, Decimal("0"), Decimal("-0"), "0.00000000", 7])
def test_non_negative_accepts_zero_and_positives(given: object) -> None:
    assert money.non_negative(given, "price") >= 0


def test_exact_arithmetic_does_not_round_products_of_full_width_values() -> None:
    left = Decimal("9999999999999999.99999999")
    right = Decimal("9999999999999999.99999999")

    product = money.mul(left, right)

    # (10**16 - 10**-8)**2 has 48 digits: the default 28-digit context would round it.
    assert product == Decimal("99999999999999999999999800000000.0000000000000001")
    assert money.add(left, Decimal("0.00000001")) == Decimal(10**16)
    assert money.sub(Decimal("0.1"), Decimal("0.3")) == Decimal("-0.2")


def test_checked_result_rejects_a_product_needing_more_than_eight_places() -> None:
    product = money.mul(Decimal("0.5"), Decimal("0.00000001"))

    with pytest.raises(ValidationError) as caught:
        money.checked_result(product, "cost")

    assert caught.value.field == "cost"


@pytest.mark.parametrize(
    ("total", "part", "whole", "share"),
    [
        (Decimal("5"), Decimal("1"), Decimal("3"), Decimal("1.66666667")),
        (Decimal("0.00000001"), Decimal("1"), Decimal("2"), Decimal("0")),  # tie -> even 0
        (Decimal("0.00000003"), Decimal("1"), Decimal("2"), Decimal("0.00000002")),  # tie -> even
        (Decimal("10"), Decimal("1"), Decimal("4"), Decimal("2.5")),
    ],
)
def test_proportional_share_rounds_half_even_to_eight_places(
    total: Decimal, part: Decimal, whole: Decimal, share: Decimal
) -> None:
    assert money.proportional_share(total, part, whole) == share


@pytest.mark.parametrize("symbol", ["A", "AAPL", "BRK.B", "BF-B", "7203", "X" * 20])
def test_valid_symbols_are_accepted(symbol: str) -> None:
    assert money.validate_symbol(symbol) == symbol


@pytest.mark.parametrize(
    "symbol", ["", "aapl", "AAPL ", " AAPL", ".A", "-A", "X" * 21, "A B", "A$", "ÄPL", None, 5]
)
def test_invalid_symbols_are_rejected(symbol: object) -> None:
    with pytest.raises(ValidationError) as caught:
        money.validate_symbol(symbol)

    assert caught.value.field == "symbol"


@pytest.mark.parametrize("name", ["a", "My portfolio", "x" * 200, " padded "])
def test_valid_names_are_accepted(name: str) -> None:
    assert money.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "   ", "\t\n", "x" * 201, None, 3])
def test_blank_long_or_non_string_names_are_rejected(name: object) -> None:
    with pytest.raises(ValidationError) as caught:
        money.validate_name(name)

    assert caught.value.field == "name"
