"""The database's own copy of the rules: rows written with raw SQL, bypassing Python.

Whatever client writes, PostgreSQL refuses NaN, negative cash, a zero quantity,
a malformed symbol, and a second OPEN position of one symbol in a portfolio.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError, IntegrityError

from portfolio_core import PositionRequest, UnitOfWork
from tests.integration.helpers import create_portfolio

CHECK_VIOLATION = "23514"
UNIQUE_VIOLATION = "23505"
NUMERIC_OUT_OF_RANGE = "22003"

INSERT_PORTFOLIO = text(
    "INSERT INTO portfolios (id, name, cash_balance, realized_pnl, initial_cash, "
    "total_deposits, total_withdrawals, version) "
    "VALUES (:id, :name, :cash_balance, :realized_pnl, :initial_cash, "
    ":total_deposits, :total_withdrawals, :version)"
)
INSERT_POSITION = text(
    "INSERT INTO positions (portfolio_id, id, symbol, quantity, cost_basis, current_price, "
    "realized_pnl, exit_price, closed_at, version) "
    "VALUES (:portfolio_id, :id, :symbol, :quantity, :cost_basis, :current_price, "
    ":realized_pnl, :exit_price, :closed_at, :version)"
)


def _portfolio_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid4(),
        "name": "raw",
        "cash_balance": "100",
        "realized_pnl": "0",
        "initial_cash": "100",
        "total_deposits": "0",
        "total_withdrawals": "0",
        "version": 1,
    }
    return row | overrides


def _position_row(portfolio_id: UUID, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "portfolio_id": portfolio_id,
        "id": uuid4(),
        "symbol": "AAPL",
        "quantity": "1",
        "cost_basis": "10",
        "current_price": "10",
        "realized_pnl": "0",
        "exit_price": None,
        "closed_at": None,
        "version": 1,
    }
    return row | overrides


def _sqlstate(error: BaseException) -> str | None:
    code = getattr(getattr(error, "orig", None), "pgcode", None)
    return code if isinstance(code, str) else None


PORTFOLIO_VIOLATIONS = [
    pytest.param({"cash_balance": "NaN"}, id="cash NaN"),
    pytest.param({"realized_pnl": "NaN"}, id="realized NaN"),
    pytest.param({"initial_cash": "NaN"}, id="initial NaN"),
    pytest.param({"total_deposits": "NaN"}, id="deposits NaN"),
    pytest.param({"total_withdrawals": "NaN"}, id="withdrawals NaN"),
    pytest.param({"cash_balance": "-0.00000001"}, id="cash negative"),
    pytest.param({"total_withdrawals": "-1"}, id="withdrawals negative"),
    pytest.param({"name": "   "}, id="blank name"),
    pytest.param({"version": 0}, id="version zero"),
]


@pytest.mark.parametrize("overrides", PORTFOLIO_VIOLATIONS)
def test_database_refuses_an_invalid_portfolio_row(
    engine: Engine, overrides: dict[str, Any]
) -> None:
    with engine.connect() as connection, pytest.raises(IntegrityError) as caught:
        connection.execute(INSERT_PORTFOLIO, _portfolio_row(**overrides))

    assert _sqlstate(caught.value) == CHECK_VIOLATION


POSITION_VIOLATIONS = [
    pytest.param({"quantity": "NaN"}, id="quantity NaN"),
    pytest.param({"cost_basis": "NaN"}, id="cost NaN"),
    pytest.param({"current_price": "NaN"}, id="price NaN"),
    pytest.param({"realized_pnl": "NaN"}, id="realized NaN"),
    pytest.param({"exit_price": "NaN", "closed_at": "2026-01-01T00:00:00Z"}, id="exit NaN"),
    pytest.param({"quantity": "0"}, id="quantity zero"),
    pytest.param({"current_price": "-1"}, id="price negative"),
    pytest.param({"symbol": "aapl"}, id="lower-case symbol"),
    pytest.param({"closed_at": "2026-01-01T00:00:00Z"}, id="closed without exit price"),
    pytest.param({"exit_price": "10"}, id="exit price while open"),
]


@pytest.mark.parametrize("overrides", POSITION_VIOLATIONS)
def test_database_refuses_an_invalid_position_row(
    engine: Engine, overrides: dict[str, Any]
) -> None:
    pid = create_portfolio(engine)

    with engine.connect() as connection, pytest.raises(IntegrityError) as caught:
        connection.execute(INSERT_POSITION, _position_row(pid, **overrides))

    assert _sqlstate(caught.value) == CHECK_VIOLATION


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("portfolios", "cash_balance"),
        ("portfolios", "realized_pnl"),
        ("positions", "current_price"),
        ("positions", "cost_basis"),
        ("positions", "quantity"),
    ],
)
def test_database_refuses_nan_written_by_update(engine: Engine, table: str, column: str) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as uow:
        uow.portfolios.get(pid).open_position(PositionRequest("AAPL", 1, 10))
        uow.commit()
    key = "id" if table == "portfolios" else "portfolio_id"

    with engine.connect() as connection, pytest.raises(IntegrityError) as caught:
        connection.execute(
            text(f"UPDATE {table} SET {column} = 'NaN' WHERE {key} = :pid"), {"pid": pid}
        )

    assert _sqlstate(caught.value) == CHECK_VIOLATION


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "1e16", "-10000000000000000"])
def test_database_refuses_infinity_and_values_beyond_the_column(engine: Engine, value: str) -> None:
    with engine.connect() as connection, pytest.raises(DataError) as caught:
        connection.execute(INSERT_PORTFOLIO, _portfolio_row(realized_pnl=value))

    assert _sqlstate(caught.value) == NUMERIC_OUT_OF_RANGE


def test_database_rounds_extra_places_which_is_why_python_refuses_them_first(
    engine: Engine,
) -> None:
    row = _portfolio_row(realized_pnl="0.000000005")

    with engine.connect() as connection:
        connection.execute(INSERT_PORTFOLIO, row)
        stored = connection.execute(
            text("SELECT realized_pnl FROM portfolios WHERE id = :id"), {"id": row["id"]}
        ).scalar_one()

    # The column silently rounds; portfolio_core.domain.money refuses such a
    # value before any SQL (tests/unit/test_money.py), so this never happens.
    assert stored == Decimal("0.00000001")


def test_partial_unique_index_refuses_two_open_positions_of_one_symbol(engine: Engine) -> None:
    pid = create_portfolio(engine)

    with engine.connect() as connection:
        connection.execute(INSERT_POSITION, _position_row(pid))
        with pytest.raises(IntegrityError) as caught:
            connection.execute(INSERT_POSITION, _position_row(pid))

    assert _sqlstate(caught.value) == UNIQUE_VIOLATION
    assert "uq_positions_open_symbol" in str(caught.value)


def test_partial_unique_index_allows_closed_positions_of_the_same_symbol(engine: Engine) -> None:
    pid = create_portfolio(engine)
    closed = {"exit_price": "11", "closed_at": "2026-01-01T00:00:00Z"}

    with engine.begin() as connection:
        connection.execute(INSERT_POSITION, _position_row(pid, **closed))
        connection.execute(INSERT_POSITION, _position_row(pid, **closed))
        connection.execute(INSERT_POSITION, _position_row(pid))
        connection.execute(INSERT_POSITION, _position_row(create_portfolio(engine)))
        count = connection.execute(text("SELECT count(*) FROM positions")).scalar_one()

    assert count == 4
