"""The repository and the unit of work on a real PostgreSQL: reads, snapshots, rollback."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import Engine

from portfolio_core import (
    Portfolio,
    PortfolioNotFoundError,
    PositionRequest,
    UnitOfWork,
    ValidationError,
)
from tests.integration.helpers import create_portfolio, reload, stored_version

D = Decimal


# -- detached snapshots -------------------------------------------------------------------


def test_a_snapshot_changed_offline_is_persisted_with_one_bump(engine: Engine) -> None:
    pid = create_portfolio(engine, 10_000)
    with UnitOfWork(engine) as setup:
        portfolio = setup.portfolios.get(pid)
        portfolio.open_position(PositionRequest("AAPL", 10, 100))
        portfolio.open_position(PositionRequest("MSFT", 4, 50))
        setup.commit()
    snapshot = reload(engine, pid)
    snapshot.deposit("0.00000001")
    snapshot.close_position("MSFT", 60)
    snapshot.close_position("AAPL", 90, quantity=3)
    snapshot.open_position(PositionRequest("GOOG", "0.5", "10.5"))
    snapshot.update_position_price("AAPL", 95)

    with UnitOfWork(engine) as uow:
        uow.portfolios.update_portfolio(snapshot)
        uow.commit()

    stored = reload(engine, pid)
    assert stored.version == 3
    assert stored.cash_balance == snapshot.cash_balance
    assert stored.realized_pnl == snapshot.realized_pnl == D(40) - D(30)
    assert stored.total_deposits == D("0.00000001")
    assert {
        s: (p.quantity, p.cost_basis, p.current_price) for s, p in stored.positions.items()
    } == {
        "AAPL": (D(7), D(700), D(95)),
        "GOOG": (D("0.5"), D("5.25"), D("10.5")),
    }
    assert [p.symbol for p in stored.closed_positions] == ["MSFT"]
    assert stored.money_invariant_holds()


# -- repository and unit of work basics ---------------------------------------------------


def test_get_unknown_portfolio_raises_not_found(engine: Engine) -> None:
    create_portfolio(engine)
    missing = UUID(int=12345)

    with UnitOfWork(engine) as uow, pytest.raises(PortfolioNotFoundError) as caught:
        uow.portfolios.get(missing)

    assert caught.value.portfolio_id == missing


def test_get_accepts_the_string_form_of_an_id_and_refuses_garbage(engine: Engine) -> None:
    pid = create_portfolio(engine, 5)

    with UnitOfWork(engine) as uow:
        assert uow.portfolios.get(str(pid)).id == pid  # type: ignore[arg-type]
        with pytest.raises(ValidationError) as caught:
            uow.portfolios.get("not-a-uuid")  # type: ignore[arg-type]

    assert caught.value.field == "portfolio_id"


def test_list_returns_every_portfolio_oldest_first(engine: Engine) -> None:
    ids = [create_portfolio(engine, i, name=f"p{i}") for i in range(3)]

    with UnitOfWork(engine) as uow:
        listed = [(p.id, p.name, p.cash_balance) for p in uow.portfolios.list()]

    assert listed == [(ids[i], f"p{i}", D(i)) for i in range(3)]


def test_unit_of_work_rolls_back_without_commit(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    unsaved = Portfolio("never", 1)

    with UnitOfWork(engine) as uow:
        uow.portfolios.get(pid).deposit(500)
        uow.portfolios.add(unsaved)
        uow.session.flush()

    with UnitOfWork(engine) as uow:
        assert uow.portfolios.get(pid).cash_balance == D(1000)
        with pytest.raises(PortfolioNotFoundError):
            uow.portfolios.get(unsaved.id)
    assert stored_version(engine, pid) == 1


def test_unit_of_work_rolls_back_when_the_block_raises(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)

    def fail_half_way() -> None:
        with UnitOfWork(engine) as uow:
            uow.portfolios.get(pid).deposit(500)
            uow.session.flush()
            raise RuntimeError("business rule failed half way")

    with pytest.raises(RuntimeError):
        fail_half_way()

    assert reload(engine, pid).cash_balance == D(1000)
    assert stored_version(engine, pid) == 1


def test_close_and_reopen_a_symbol_in_one_unit_of_work(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as setup:
        setup.portfolios.get(pid).open_position(PositionRequest("AAPL", 2, 100))
        setup.commit()

    with UnitOfWork(engine) as uow:
        portfolio = uow.portfolios.get(pid)
        portfolio.close_position("AAPL", 110)
        portfolio.open_position(PositionRequest("AAPL", 1, 105))
        uow.session.flush()
        assert [p.symbol for p in portfolio.closed_positions] == ["AAPL"]
        uow.commit()

    stored = reload(engine, pid)
    assert stored.version == 3
    assert stored.positions["AAPL"].quantity == D(1)
    assert [(p.symbol, p.exit_price) for p in stored.closed_positions] == [("AAPL", D(110))]
    assert stored.money_invariant_holds()


def test_a_snapshot_that_closed_and_reopened_a_symbol_is_persisted(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as setup:
        setup.portfolios.get(pid).open_position(PositionRequest("AAPL", 2, 100))
        setup.commit()
    snapshot = reload(engine, pid)
    snapshot.close_position("AAPL", 90)
    snapshot.open_position(PositionRequest("AAPL", 3, 95))

    with UnitOfWork(engine) as uow:
        uow.portfolios.update_portfolio(snapshot)
        uow.commit()

    stored = reload(engine, pid)
    assert stored.version == 3
    assert stored.positions["AAPL"].cost_basis == D(285)
    assert len(stored.closed_positions) == 1
    assert stored.cash_balance == D(1000) - D(200) + D(180) - D(285)
