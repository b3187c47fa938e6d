"""Aggregate versioning on a real PostgreSQL, with two units of work open at once.

Every race here is ordered by hand (load in both, commit one, then the other),
so each test is deterministic: no threads, no sleeps.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm.exc import StaleDataError

from portfolio_core import (
    Portfolio,
    PositionRequest,
    StaleDataException,
    UnitOfWork,
)
from tests.integration.helpers import create_portfolio, reload, stored_version

D = Decimal


def _assert_translated(error: StaleDataException) -> None:
    # The caller sees our exception, never SQLAlchemy's (which may be its cause).
    assert type(error) is StaleDataException
    assert not isinstance(error, StaleDataError)


def test_lost_update_is_detected_with_the_versions_read_back(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as first, UnitOfWork(engine) as second:
        mine = first.portfolios.get(pid)
        theirs = second.portfolios.get(pid)
        # Two other writers commit in between: the database is two versions ahead.
        for amount in (10, 20):
            with UnitOfWork(engine) as other:
                other.portfolios.get(pid).deposit(amount)
                other.commit()
        mine.withdraw(100)
        theirs.deposit(5)

        with pytest.raises(StaleDataException) as caught:
            first.commit()
        with pytest.raises(StaleDataException) as caught_again:
            second.commit()

    for error in (caught.value, caught_again.value):
        _assert_translated(error)
        assert error.entity_type == "Portfolio"
        assert error.entity_id == pid
        assert error.expected_version == 1
        assert error.actual_version == 3
    stored = reload(engine, pid)
    assert stored.cash_balance == D(1030)
    assert stored.version == 3


def test_second_writer_of_the_same_version_loses_and_first_wins(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as first, UnitOfWork(engine) as second:
        first.portfolios.get(pid).withdraw(600)
        second.portfolios.get(pid).withdraw(700)
        first.commit()

        with pytest.raises(StaleDataException) as caught:
            second.commit()

    _assert_translated(caught.value)
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    stored = reload(engine, pid)
    assert stored.cash_balance == D(400)
    assert stored.total_withdrawals == D(600)


def test_a_conflict_found_by_an_explicit_flush_is_translated_too(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as first, UnitOfWork(engine) as second:
        first.portfolios.get(pid).deposit(1)
        second.portfolios.get(pid).deposit(2)
        first.commit()

        with pytest.raises(StaleDataException) as caught:
            second.session.flush()
        # The failed transaction was rolled back: the unit of work can start over.
        assert second.portfolios.get(pid).cash_balance == D(1001)

    _assert_translated(caught.value)
    assert (caught.value.entity_id, caught.value.expected_version) == (pid, 1)
    assert caught.value.actual_version == 2


@pytest.mark.parametrize("price_change_commits_first", [True, False])
def test_a_position_only_change_conflicts_with_a_concurrent_cash_change(
    engine: Engine, price_change_commits_first: bool
) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as setup:
        setup.portfolios.get(pid).open_position(PositionRequest("AAPL", 2, 100))
        setup.commit()
    with UnitOfWork(engine) as pricing, UnitOfWork(engine) as cash:
        # Only the positions row changes here; the portfolio row is untouched by the domain.
        pricing.portfolios.get(pid).update_position_price("AAPL", 150)
        cash.portfolios.get(pid).deposit(50)
        winner, loser = (pricing, cash) if price_change_commits_first else (cash, pricing)
        winner.commit()

        with pytest.raises(StaleDataException) as caught:
            loser.commit()

    _assert_translated(caught.value)
    assert caught.value.entity_type == "Portfolio"
    assert caught.value.entity_id == pid
    assert (caught.value.expected_version, caught.value.actual_version) == (2, 3)
    stored = reload(engine, pid)
    assert stored.version == 3
    if price_change_commits_first:
        assert stored.positions["AAPL"].current_price == D(150)
        assert stored.cash_balance == D(800)
    else:
        assert stored.positions["AAPL"].current_price == D(100)
        assert stored.cash_balance == D(850)


def test_two_position_only_changes_conflict_through_the_portfolio_version(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as setup:
        portfolio = setup.portfolios.get(pid)
        portfolio.open_position(PositionRequest("AAPL", 1, 100))
        portfolio.open_position(PositionRequest("MSFT", 1, 100))
        setup.commit()
    with UnitOfWork(engine) as first, UnitOfWork(engine) as second:
        # Different rows: only the aggregate root's version ties the two together.
        first.portfolios.get(pid).update_position_price("AAPL", 1)
        second.portfolios.get(pid).update_position_price("MSFT", 2)
        first.commit()

        with pytest.raises(StaleDataException) as caught:
            second.commit()

    assert caught.value.entity_type == "Portfolio"
    assert (caught.value.expected_version, caught.value.actual_version) == (2, 3)


def test_a_stale_position_row_is_named_with_its_own_versions(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as setup:
        position = setup.portfolios.get(pid).open_position(PositionRequest("AAPL", 1, 100))
        setup.commit()

    with UnitOfWork(engine) as uow:
        uow.portfolios.get(pid).update_position_price("AAPL", 101)
        # A writer that bypassed the aggregate moved only the position row.
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE positions SET version = version + 1 WHERE id = :id"),
                {"id": position.id},
            )

        with pytest.raises(StaleDataException) as caught:
            uow.commit()

    _assert_translated(caught.value)
    assert caught.value.entity_type == "Position"
    assert caught.value.entity_id == position.id
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    assert stored_version(engine, pid) == 2


def test_one_version_bump_per_unit_of_work_however_many_operations_and_flushes(
    engine: Engine,
) -> None:
    pid = create_portfolio(engine, 10_000)
    other = create_portfolio(engine, 500)

    with UnitOfWork(engine) as uow:
        portfolio = uow.portfolios.get(pid)
        portfolio.deposit(100)
        portfolio.open_position(PositionRequest("AAPL", 10, 100))
        uow.session.flush()
        portfolio.open_position(PositionRequest("MSFT", 5, 200))
        uow.session.flush()
        portfolio.update_position_price("AAPL", 110)
        uow.session.flush()
        uow.session.flush()
        portfolio.close_position("AAPL", 120, quantity=3)
        portfolio.update_all_prices({"MSFT": 190, "AAPL": 111})
        uow.session.flush()
        portfolio.withdraw(1)
        uow.portfolios.get(other).deposit(1)
        uow.session.flush()
        uow.commit()

    assert stored_version(engine, pid) == 2
    assert stored_version(engine, other) == 2
    stored = reload(engine, pid)
    assert stored.version == 2
    assert stored.positions["AAPL"].quantity == D(7)
    assert stored.positions["MSFT"].current_price == D(190)
    assert stored.money_invariant_holds()


def test_a_portfolio_created_and_changed_after_a_flush_in_one_unit_of_work_stays_at_one(
    engine: Engine,
) -> None:
    portfolio = Portfolio("fresh", 100)
    with UnitOfWork(engine) as uow:
        uow.portfolios.add(portfolio)
        uow.session.flush()
        portfolio.deposit(5)
        uow.session.flush()
        portfolio.open_position(PositionRequest("AAPL", 1, 10))
        uow.commit()

    assert stored_version(engine, portfolio.id) == 1
    with UnitOfWork(engine) as uow:
        history = uow.portfolios.history(portfolio.id)
    assert [event.version for event in history] == [1]
    assert [op.kind for op in history[0].operations] == ["created", "deposit", "open_position"]
    assert reload(engine, portfolio.id).cash_balance == D(95)


def test_one_bump_for_a_position_only_change_flushed_several_times(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as setup:
        setup.portfolios.get(pid).open_position(PositionRequest("AAPL", 1, 100))
        setup.commit()

    with UnitOfWork(engine) as uow:
        portfolio = uow.portfolios.get(pid)
        for price in (101, 102, 103):
            portfolio.update_position_price("AAPL", price)
            uow.session.flush()
        uow.commit()

    assert stored_version(engine, pid) == 3
    assert reload(engine, pid).positions["AAPL"].current_price == D(103)


@pytest.mark.parametrize("sql_first", [True, False])
def test_sql_repricing_and_orm_changes_in_one_unit_of_work_bump_once(
    engine: Engine, sql_first: bool
) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as setup:
        setup.portfolios.get(pid).open_position(PositionRequest("AAPL", 2, 100))
        setup.commit()

    with UnitOfWork(engine) as uow:
        portfolio = uow.portfolios.get(pid)
        if sql_first:
            assert uow.portfolios.update_all_prices(pid, {"AAPL": 120}) == 1
            portfolio.deposit(5)
        else:
            portfolio.deposit(5)
            uow.session.flush()
            assert uow.portfolios.update_all_prices(pid, {"AAPL": 120}) == 1
        uow.commit()

    stored = reload(engine, pid)
    assert stored.version == 3
    assert stored.cash_balance == D(805)
    assert stored.positions["AAPL"].current_price == D(120)


def test_sql_repricing_conflicts_with_a_concurrent_orm_change(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    with UnitOfWork(engine) as setup:
        setup.portfolios.get(pid).open_position(PositionRequest("AAPL", 2, 100))
        setup.commit()

    with UnitOfWork(engine) as cash, UnitOfWork(engine) as pricing:
        cash.portfolios.get(pid).deposit(5)
        assert pricing.portfolios.update_all_prices(pid, {"AAPL": 120, "MSFT": 1}) == 1
        pricing.commit()

        with pytest.raises(StaleDataException) as caught:
            cash.commit()

    _assert_translated(caught.value)
    assert (caught.value.expected_version, caught.value.actual_version) == (2, 3)
    assert reload(engine, pid).cash_balance == D(800)


def test_each_committed_unit_of_work_bumps_once(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)

    for amount in range(1, 6):
        with UnitOfWork(engine) as uow:
            uow.portfolios.get(pid).deposit(amount)
            uow.portfolios.get(pid).deposit(amount)
            uow.commit()

    assert stored_version(engine, pid) == 6
    assert reload(engine, pid).cash_balance == D(1030)


def test_a_unit_of_work_that_changes_nothing_does_not_bump(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)

    with UnitOfWork(engine) as uow:
        uow.portfolios.get(pid)
        uow.session.flush()
        uow.commit()

    assert stored_version(engine, pid) == 1


def test_in_memory_version_follows_the_commit(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)

    with UnitOfWork(engine) as uow:
        portfolio = uow.portfolios.get(pid)
        portfolio.deposit(1)
        uow.commit()

    assert portfolio.version == 2


# -- version tampering --------------------------------------------------------------------


def test_setting_version_on_a_loaded_portfolio_raises(engine: Engine) -> None:
    pid = create_portfolio(engine)

    with UnitOfWork(engine) as uow:
        portfolio = uow.portfolios.get(pid)
        with pytest.raises(AttributeError):
            portfolio.version = 99
        uow.commit()

    assert stored_version(engine, pid) == 1


def test_update_portfolio_with_a_stale_detached_snapshot_raises(engine: Engine) -> None:
    pid = create_portfolio(engine, 1000)
    snapshot = reload(engine, pid)
    with UnitOfWork(engine) as other:
        other.portfolios.get(pid).deposit(1)
        other.commit()
    snapshot.withdraw(1000)

    with UnitOfWork(engine) as uow, pytest.raises(StaleDataException) as caught:
        uow.portfolios.update_portfolio(snapshot)

    _assert_translated(caught.value)
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    assert reload(engine, pid).cash_balance == D(1001)
