"""The audit trail knows the versions its flushes wrote, and reads the rest back."""

from __future__ import annotations

from decimal import Decimal

from portfolio_core import Portfolio, PortfolioStore, Position, PositionRequest, UnitOfWork


def _open_aapl(portfolio: Portfolio) -> Position:
    return portfolio.open_position(PositionRequest("AAPL", 10, "100"))


def test_a_bump_undone_by_a_rolled_back_savepoint_writes_no_event(store: PortfolioStore) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    with UnitOfWork(store.engine) as uow:
        portfolio = uow.portfolios.get(pid)
        savepoint = uow.session.begin_nested()
        portfolio.deposit(Decimal("1"))
        uow.session.flush()  # the bump to version 2, inside the savepoint
        savepoint.rollback()
        uow.commit()

    assert store.get(pid).version == 1
    assert [event.version for event in store.history(pid)] == [1]


def test_sql_and_orm_changes_in_one_unit_of_work_write_one_event_at_the_stored_version(
    store: PortfolioStore,
) -> None:
    pid = store.create_portfolio("alpha", Decimal("10000"))
    store.execute(pid, _open_aapl)
    with UnitOfWork(store.engine) as uow:
        assert uow.portfolios.update_all_prices(pid, {"AAPL": "101"}) == 1  # SQL bump to 3
        uow.portfolios.get(pid).deposit(Decimal("5"))  # ORM change, no second bump
        uow.commit()
    with UnitOfWork(store.engine) as uow:
        uow.portfolios.get(pid).deposit(Decimal("5"))  # ORM bump only: version known
        uow.commit()

    history = store.history(pid)
    assert store.get(pid).version == 4
    assert [event.version for event in history] == [1, 2, 3, 4]
    assert [op.kind for op in history[2].operations] == ["update_all_prices", "deposit"]
