"""Position and PositionRequest: validation and derived figures (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portfolio_core import Portfolio, Position, PositionRequest, ValidationError


def test_position_request_keeps_exact_decimals() -> None:
    request = PositionRequest("AAPL", "10.5", Decimal("150.12345678"))

    assert request.symbol == "AAPL"
    assert request.quantity == Decimal("10.5")
    assert request.entry_price == Decimal("150.12345678")
    assert request.cost == Decimal("1576.296296190")


def test_position_request_is_immutable() -> None:
    request = PositionRequest("AAPL", 1, 1)

    with pytest.raises(AttributeError):
        request.quantity = Decimal(2)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("symbol", "quantity", "price", "field"),
    [
        ("aapl", 1, 1, "symbol"),
        ("", 1, 1, "symbol"),
        ("TOO-LONG-SYMBOL-XXXXX", 1, 1, "symbol"),
        ("AAPL", 0, 1, "quantity"),
        ("AAPL", -1, 1, "quantity"),
        ("AAPL", 1.0, 1, "quantity"),
        ("AAPL", True, 1, "quantity"),
        ("AAPL", Decimal("NaN"), 1, "quantity"),
        ("AAPL", Decimal("sNaN"), 1, "quantity"),
        ("AAPL", Decimal("Infinity"), 1, "quantity"),
        ("AAPL", "0.000000001", 1, "quantity"),
        ("AAPL", 10**16, 1, "quantity"),
        ("AAPL", "lots", 1, "quantity"),
        ("AAPL", 1, 0, "entry_price"),
        ("AAPL", 1, -5, "entry_price"),
        ("AAPL", 1, 2.5, "entry_price"),
        ("AAPL", 1, False, "entry_price"),
        ("AAPL", 1, Decimal("-Infinity"), "entry_price"),
        ("AAPL", 1, "1.123456789", "entry_price"),
        ("AAPL", 1, "1e16", "entry_price"),
    ],
)
def test_position_request_rejects_invalid_input_naming_the_field(
    symbol: str, quantity: object, price: object, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        PositionRequest(symbol, quantity, price)  # type: ignore[arg-type]

    assert caught.value.field == field


def test_request_cost_that_needs_more_than_eight_places_is_rejected() -> None:
    request = PositionRequest("DUST", "0.5", "0.00000001")

    with pytest.raises(ValidationError) as caught:
        _ = request.cost

    assert caught.value.field == "cost"


def test_request_cost_of_ten_to_the_sixteen_or_more_is_rejected() -> None:
    request = PositionRequest("BIG", 10**8, 10**8)

    with pytest.raises(ValidationError) as caught:
        _ = request.cost

    assert caught.value.field == "cost"


@pytest.mark.parametrize(
    ("quantity", "cost_basis", "price", "field"),
    [
        (0, 1, 1, "quantity"),
        (-1, 1, 1, "quantity"),
        (1, -1, 1, "cost_basis"),
        (1, Decimal("NaN"), 1, "cost_basis"),
        (1, 1, -1, "current_price"),
        (1, 1, 0.5, "current_price"),
    ],
)
def test_position_constructor_validates_amounts(
    quantity: object, cost_basis: object, price: object, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Position("AAPL", quantity, cost_basis, price)  # type: ignore[arg-type]

    assert caught.value.field == field


def test_position_derived_figures_are_exact() -> None:
    position = Position("AAPL", "3", "100.00000001", "40.5")

    assert position.is_open
    assert position.market_value == Decimal("121.5")
    assert position.unrealized_pnl == Decimal("21.49999999")
    assert position.entry_price * 3 == pytest.approx(Decimal("100.00000001"))
    assert position.realized_pnl == 0
    assert position.exit_price is None
    assert position.closed_at is None
    assert position.opened_at.tzinfo is not None


def test_position_version_is_read_only() -> None:
    position = Position("AAPL", 1, 1, 1)

    with pytest.raises(AttributeError):
        position.version = 7

    assert position.version == 1


def test_closed_position_has_no_unrealized_pnl() -> None:
    portfolio = Portfolio("p", 1000)
    position = portfolio.open_position(PositionRequest("AAPL", 2, 100))
    portfolio.update_position_price("AAPL", 150)

    portfolio.close_position("AAPL", 150)

    assert not position.is_open
    assert position.unrealized_pnl == 0
    assert position.exit_price == Decimal(150)
    assert position.realized_pnl == Decimal(100)
    assert position.closed_at is not None
