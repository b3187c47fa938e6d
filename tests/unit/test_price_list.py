"""validated_prices: the one-pass check accepts and refuses exactly what the per-pair checks do."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from portfolio_core.domain import money
from portfolio_core.domain.events import COMPACT_PRICES_ABOVE, PortfolioOperation
from portfolio_core.domain.price_list import ValidatedPrices, from_compact, validated_prices
from portfolio_core.errors import ValidationError

MANY = COMPACT_PRICES_ABOVE + 36  # past the compact threshold


def _per_pair(prices: dict[object, object]) -> dict[str, Decimal]:
    """What update_all_prices validated before: each pair through money's checks."""
    return {
        money.validate_symbol(symbol): money.non_negative(price, f"prices[{symbol!r}]")
        for symbol, price in prices.items()
    }


def _many(**odd: object) -> dict[object, object]:
    prices: dict[object, object] = {f"S{n:04d}": Decimal(f"{n}.25") for n in range(MANY)}
    prices.update(odd)
    return prices


@pytest.mark.parametrize(
    "price",
    [
        Decimal("12.5"),
        Decimal("0"),
        Decimal("0.00"),
        Decimal("-0"),
        Decimal("1E+2"),
        Decimal("1.000000000"),
        Decimal("0.00000001"),
        Decimal("9999999999999999.99999999"),
        money.FixedPoint("0.10000000"),
        "3.50",
        7,
    ],
)
def test_valid_prices_come_out_as_the_per_pair_checks_return_them(price: object) -> None:
    prices = _many(ODD=price)

    validated = validated_prices(prices)

    expected = _per_pair(prices)
    assert dict(validated) == expected
    assert [str(value) for value in validated.values()] == [str(v) for v in expected.values()]
    assert list(validated) == list(expected)


@pytest.mark.parametrize(
    ("symbol", "price"),
    [
        ("S0050", Decimal("NaN")),
        ("S0050", Decimal("sNaN")),
        ("S0050", Decimal("Infinity")),
        ("S0050", Decimal("-1")),
        ("S0050", Decimal("0.000000001")),
        ("S0050", Decimal("10000000000000000")),
        ("S0050", 1.5),
        ("S0050", True),
        ("S0050", "1 2"),
        ("lower", Decimal(1)),
        ("A B", Decimal(1)),
        ("", Decimal(1)),
        ("X" * 21, Decimal(1)),
        (7, Decimal(1)),
    ],
)
def test_invalid_pairs_raise_what_the_per_pair_checks_raise(symbol: object, price: object) -> None:
    prices = _many()
    prices[symbol] = price

    with pytest.raises(ValidationError) as expected:
        _per_pair(prices)
    with pytest.raises(ValidationError) as caught:
        validated_prices(prices)

    assert (caught.value.field, caught.value.reason, str(caught.value)) == (
        expected.value.field,
        expected.value.reason,
        str(expected.value),
    )


def test_validated_prices_are_read_only_validated_once_and_picklable() -> None:
    validated = validated_prices(_many())

    assert validated_prices(validated) is validated
    copied = pickle.loads(pickle.dumps(validated))
    assert (dict(copied), copied.texts()) == (dict(validated), validated.texts())
    assert isinstance(validated, ValidatedPrices)
    with pytest.raises(TypeError):
        validated["S0001"] = Decimal(1)  # type: ignore[index]


def test_a_large_repricing_is_stored_compactly_and_reads_back_exactly() -> None:
    prices = {f"S{n:04d}": Decimal(f"{n}.{n % 7}0") for n in range(MANY)}
    prices["X-1"], prices["BRK.B"] = Decimal("1E+2"), Decimal("1.50000000")
    for given in (prices, validated_prices(prices)):
        operation = PortfolioOperation("update_all_prices", {"prices": given})

        data = operation.to_json()

        assert set(data["arguments"]) == {"symbols", "prices"}
        assert data["arguments"]["symbols"] == " ".join(prices)
        assert data["arguments"]["prices"] == " ".join(format(p, "f") for p in given.values())
        read = PortfolioOperation.from_json(data)
        assert read == operation
        assert list(read.arguments["prices"]) == list(prices)  # type: ignore[arg-type]
        assert str(read.arguments["prices"]["BRK.B"]) == "1.50000000"  # type: ignore[index]


def test_the_object_shape_of_earlier_versions_still_reads() -> None:
    prices = {f"S{n:04d}": Decimal(f"{n}.5") for n in range(MANY)}
    old = {
        "kind": "update_all_prices",
        "arguments": {"prices": {symbol: str(price) for symbol, price in prices.items()}},
    }

    read = PortfolioOperation.from_json(old)

    assert read == PortfolioOperation("update_all_prices", {"prices": prices})


def test_compact_texts_of_unequal_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 symbols but 1 prices"):
        from_compact("A B", "1")


def test_operations_equal_whatever_the_order_of_their_prices_hash_alike() -> None:
    prices = {f"S{i}": Decimal(i) for i in range(COMPACT_PRICES_ABOVE + 1)}
    backwards = dict(reversed(prices.items()))
    first = PortfolioOperation("update_all_prices", {"prices": validated_prices(prices)})
    second = PortfolioOperation("update_all_prices", {"prices": validated_prices(backwards)})

    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1


def test_validated_prices_can_not_be_made_without_validation() -> None:
    with pytest.raises(TypeError, match="validated_prices"):
        ValidatedPrices({"AAPL": Decimal("-5")}, issued=object())


def test_the_compact_text_has_plain_digits_whichever_way_a_price_was_written() -> None:
    validated = validated_prices({"A": Decimal("1E-8"), "B": Decimal("1E+2"), "C": Decimal("0E-8")})

    assert validated.texts() == ("A B C", "0.00000001 100 0.00000000")
    assert from_compact(*validated.texts()) == dict(validated)
