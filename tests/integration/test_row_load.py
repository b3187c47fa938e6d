"""Loading a portfolio for a change from a Core row leaves it as the ORM's load would."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, event, inspect, select
from sqlalchemy.orm import Session

from portfolio_core import (
    Portfolio,
    PortfolioNotFoundError,
    PositionRequest,
    UnitOfWork,
)
from portfolio_core.persistence.schema import portfolios
from tests.integration.helpers import create_portfolio, reload, stored_version

LOCK_TIMEOUT = 5.0


def _orm_loaded(engine: Engine, pid: UUID) -> dict[str, Any]:
    """The instance dict a plain ORM SELECT of the portfolio leaves (its state left out)."""
    with Session(engine) as session:
        loaded = session.execute(select(Portfolio).where(portfolios.c.id == pid)).scalar_one()
        return {k: v for k, v in loaded.__dict__.items() if k != "_sa_instance_state"}


def _load(uow: UnitOfWork, pid: UUID, locked: bool) -> Portfolio:
    if locked:
        return uow.portfolios.lock_for_change(pid, LOCK_TIMEOUT)
    return uow.portfolios.get(pid)


@pytest.mark.parametrize("locked", [False, True], ids=["get", "lock_for_change"])
def test_the_loaded_portfolio_is_persistent_as_the_orm_leaves_it(
    engine: Engine, locked: bool
) -> None:
    pid = create_portfolio(engine, 1_000)
    with UnitOfWork(engine) as uow:
        uow.portfolios.get(pid).open_position(PositionRequest("AAPL", 2, 10))
        uow.commit()
    with UnitOfWork(engine) as uow:
        portfolio = _load(uow, pid, locked)
        state = inspect(portfolio)
        assert state.persistent
        assert state.session is uow.session
        assert state.key == (Portfolio, (pid,), None)
        assert not state.expired_attributes
        assert not state.modified
        assert portfolio.version == stored_version(engine, pid)
        values = {k: v for k, v in portfolio.__dict__.items() if k != "_sa_instance_state"}
        assert values == _orm_loaded(engine, pid)
        assert "_positions" not in values  # still loaded lazily, one symbol at a time
        assert portfolio.positions["AAPL"].quantity == 2


@pytest.mark.parametrize("locked", [False, True], ids=["get", "lock_for_change"])
def test_a_second_load_in_the_session_returns_the_same_object(engine: Engine, locked: bool) -> None:
    pid = create_portfolio(engine)
    with UnitOfWork(engine) as uow:
        first = _load(uow, pid, locked)
        assert uow.portfolios.get(pid) is first
        assert uow.portfolios.lock_for_change(pid, LOCK_TIMEOUT) is first


@pytest.mark.parametrize("locked", [False, True], ids=["get", "lock_for_change"])
def test_a_missing_portfolio_is_not_found(engine: Engine, locked: bool) -> None:
    create_portfolio(engine)
    missing = uuid4()
    with UnitOfWork(engine) as uow, pytest.raises(PortfolioNotFoundError):
        _load(uow, missing, locked)


def test_get_does_not_flush_what_the_unit_of_work_added(engine: Engine) -> None:
    # Units of work never autoflush: the ORM statement did not flush either.
    with UnitOfWork(engine) as uow:
        added = Portfolio("new", 100)
        uow.portfolios.add(added)
        with pytest.raises(PortfolioNotFoundError):
            uow.portfolios.get(added.id)
        assert inspect(added).pending
        uow.commit()
    assert reload(engine, added.id).cash_balance == Decimal(100)


def test_lock_for_change_finds_what_its_savepoint_flushed(engine: Engine) -> None:
    # A unit of work holding work locks in a savepoint, whose start flushes.
    with UnitOfWork(engine) as uow:
        added = Portfolio("new", 100)
        uow.portfolios.add(added)
        assert uow.portfolios.lock_for_change(added.id, LOCK_TIMEOUT) is added
        uow.commit()
    assert reload(engine, added.id).cash_balance == Decimal(100)


@pytest.mark.parametrize("locked", [False, True], ids=["get", "lock_for_change"])
def test_a_change_after_the_load_commits_one_version_and_its_event(
    engine: Engine, locked: bool
) -> None:
    pid = create_portfolio(engine, 100)
    with UnitOfWork(engine) as uow:
        _load(uow, pid, locked).deposit(5)
        uow.commit()
    assert stored_version(engine, pid) == 2
    assert reload(engine, pid).cash_balance == Decimal(105)
    with UnitOfWork(engine) as uow:
        assert [e.version for e in uow.portfolios.history(pid)] == [1, 2]


@pytest.mark.parametrize("locked", [False, True], ids=["get", "lock_for_change"])
def test_a_session_listener_of_loads_still_sees_the_load(engine: Engine, locked: bool) -> None:
    pid = create_portfolio(engine)
    seen: list[object] = []
    with UnitOfWork(engine) as uow:
        event.listen(uow.session, "loaded_as_persistent", lambda _s, obj: seen.append(obj))
        portfolio = _load(uow, pid, locked)
        assert seen == [portfolio]
        assert inspect(portfolio).persistent


@pytest.mark.parametrize("locked", [False, True], ids=["get", "lock_for_change"])
def test_a_load_attaches_nothing_an_attach_listener_would_see(engine: Engine, locked: bool) -> None:
    # The ORM's load fires no attach event: neither may the row load's attaching.
    pid = create_portfolio(engine)
    seen: list[object] = []
    with UnitOfWork(engine) as uow:
        event.listen(uow.session, "after_attach", lambda _s, obj: seen.append(obj))
        event.listen(uow.session, "detached_to_persistent", lambda _s, obj: seen.append(obj))
        assert inspect(_load(uow, pid, locked)).persistent
        assert seen == []


@pytest.mark.parametrize("locked", [False, True], ids=["get", "lock_for_change"])
def test_the_loaded_portfolio_is_in_the_identity_map_as_an_orm_loaded_one(
    engine: Engine, locked: bool
) -> None:
    # Put in the identity map as the ORM's loading does, not by Session.add:
    # nothing pending, found by key, detached again by expunge and by close.
    pid = create_portfolio(engine)
    with UnitOfWork(engine) as uow:
        portfolio = _load(uow, pid, locked)
        assert uow.session.identity_map.get((Portfolio, (pid,), None)) is portfolio
        assert portfolio in uow.session
        assert not uow.session.new
        assert not uow.session.dirty
        assert not uow.session.deleted
        uow.session.expunge(portfolio)
        assert inspect(portfolio).detached
        assert portfolio not in uow.session
        again = _load(uow, pid, locked)
        assert again is not portfolio
        assert inspect(again).persistent
    assert inspect(again).detached
