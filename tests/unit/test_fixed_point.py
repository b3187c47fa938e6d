"""Amounts read from the library print in fixed-point notation, with value and digits kept."""

from __future__ import annotations

import json
import pickle
from decimal import Decimal

import pytest

import portfolio_core
from portfolio_core import Portfolio, PositionRequest
from portfolio_core.domain.events import PortfolioOperation
from portfolio_core.domain.money import FixedPoint, fixed, to_decimal
from portfolio_core.persistence.idempotency import decode_result, encode_result


@pytest.mark.parametrize(
    ("stored", "printed"),
    [("0E-8", "0.00000000"), ("1E-8", "0.00000001"), ("12.50", "12.50"), ("-3E-7", "-0.0000003")],
)
def test_a_fixed_point_prints_without_exponent_and_keeps_value_and_digits(
    stored: str, printed: str
) -> None:
    value = fixed(Decimal(stored))

    assert str(value) == f"{value}" == printed
    assert repr(value) == f"FixedPoint('{printed}')"
    assert value == Decimal(stored)
    assert hash(value) == hash(Decimal(stored))
    assert value.as_tuple() == Decimal(stored).as_tuple()  # same digits, same exponent
    assert json.dumps({"v": value}, default=str) == f'{{"v": "{printed}"}}'
    assert pickle.loads(pickle.dumps(value)) == value
    assert type(pickle.loads(pickle.dumps(value))) is FixedPoint


def test_arithmetic_gives_plain_decimals_and_validation_accepts_fixed_points() -> None:
    value = fixed(Decimal("0E-8"))

    assert type(value + 1) is Decimal
    assert type(to_decimal(value, "amount")) is Decimal
    assert to_decimal(value, "amount") == 0


def test_a_portfolio_s_amounts_read_as_fixed_points() -> None:
    portfolio = Portfolio("alpha", Decimal("0.00000001"))
    portfolio.deposit(Decimal("10"))
    portfolio.open_position(PositionRequest("AAPL", "1", "10"))
    profit = portfolio.close_position("AAPL", "10")
    [closed] = portfolio.closed_positions

    readings = [
        portfolio.cash_balance,
        portfolio.realized_pnl,
        portfolio.initial_cash,
        portfolio.total_deposits,
        portfolio.total_withdrawals,
        portfolio.total_cost_basis,
        portfolio.market_value,
        portfolio.total_value,
        portfolio.net_contributions,
        profit,
        closed.quantity,
        closed.cost_basis,
        closed.realized_pnl,
        closed.exit_price,
        closed.unrealized_pnl,
    ]
    assert all(type(value) is FixedPoint for value in readings), readings
    assert str(portfolio.initial_cash) == "0.00000001"


def test_event_arguments_and_keyed_results_decode_as_fixed_points() -> None:
    operation = PortfolioOperation.from_json({"kind": "deposit", "arguments": {"amount": "1E-8"}})
    [amount] = operation.arguments.values()

    assert type(amount) is FixedPoint
    assert str(amount) == "0.00000001"
    result = decode_result(encode_result([Decimal("0E-8")]))
    assert [str(item) for item in result] == ["0.00000000"]


def test_fixed_point_and_portfolio_id_are_public() -> None:
    assert portfolio_core.FixedPoint is FixedPoint
    assert {"FixedPoint", "PortfolioId"} <= set(portfolio_core.__all__)
