"""The kit's strategies: every valid draw is accepted as is, every invalid draw is refused."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portfolio_core import Portfolio, PortfolioOperation, PositionRequest, ValidationError
from portfolio_core.domain import money
from portfolio_core.domain.replay import reapply_operation
from portfolio_core.persistence.idempotency import validate_key
from portfolio_core.testing import strategies as pcst
from portfolio_core.testing.operations import REFUSALS

EIGHT_PLACES = Decimal("1E-8")


def _fits_the_column(value: Decimal) -> bool:
    return value == value.quantize(EIGHT_PLACES) and abs(value) <= pcst.MAX_AMOUNT


@given(
    st.one_of(
        pcst.column_values(),
        pcst.amounts(),
        pcst.prices(),
        pcst.quantities(),
        pcst.prices(max_places=8),
    )
)
def test_valid_amounts_fit_the_column_and_are_accepted_unchanged(value: Decimal) -> None:
    assert type(value) is Decimal
    assert _fits_the_column(value)
    assert money.to_decimal(value, "value") == value
    assert money.to_decimal(format(value, "f"), "value") == value


@given(pcst.amounts())
def test_amounts_are_positive(value: Decimal) -> None:
    assert money.positive(value, "amount") == value


@given(pcst.decimals_at_scale("-1.5", "2.25", max_places=2))
def test_decimals_at_scale_keep_their_bounds_and_places(value: Decimal) -> None:
    assert Decimal("-1.5") <= value <= Decimal("2.25")
    assert value == value.quantize(Decimal("0.01"))


@given(pcst.symbols(), pcst.names(), pcst.idempotency_keys())
def test_symbols_names_and_keys_are_accepted(symbol: str, name: str, key: str) -> None:
    assert money.validate_symbol(symbol) == symbol
    assert money.validate_name(name) == name
    assert validate_key(key) == key


@given(pcst.position_requests())
def test_position_requests_are_valid_and_their_cost_fits(request: PositionRequest) -> None:
    assert _fits_the_column(request.cost)


@given(pcst.operation_sequences(max_size=15), pcst.amounts())
def test_operations_apply_or_are_refused_without_a_trace(
    steps: list[PortfolioOperation], cash: Decimal
) -> None:
    portfolio = Portfolio("kit", cash)
    for operation in steps:
        assert operation.kind in pcst.OPERATION_KINDS
        before = portfolio.cash_balance, dict(portfolio.positions)
        try:
            reapply_operation(portfolio, operation)
        except REFUSALS:
            assert (portfolio.cash_balance, dict(portfolio.positions)) == before
        assert portfolio.money_invariant_holds()


@given(pcst.invalid_amounts())
def test_invalid_amounts_are_refused(value: Any) -> None:
    with pytest.raises(ValidationError):
        money.to_decimal(value, "value")


@given(pcst.invalid_positive_amounts())
def test_invalid_positive_amounts_are_refused_by_a_deposit(value: Any) -> None:
    with pytest.raises(ValidationError):
        Portfolio("kit", 100).deposit(value)


@given(pcst.invalid_symbols())
def test_invalid_symbols_are_refused(value: Any) -> None:
    with pytest.raises(ValidationError):
        money.validate_symbol(value)


@given(pcst.invalid_names())
def test_invalid_names_are_refused(value: Any) -> None:
    with pytest.raises(ValidationError):
        Portfolio(value)


@given(pcst.invalid_idempotency_keys())
def test_invalid_idempotency_keys_are_refused(value: Any) -> None:
    with pytest.raises(ValidationError):
        validate_key(value)


@given(pcst.invalid_position_requests())
def test_invalid_position_requests_are_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PositionRequest(**arguments)


def test_importing_the_package_imports_neither_pytest_nor_hypothesis() -> None:
    code = (
        "import sys, portfolio_core, portfolio_core.store, portfolio_core.domain.money;"
        "print(sorted(m for m in ('pytest', 'hypothesis', 'portfolio_core.testing')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
