"""A UnitOfWork on the caller's Connection runs in a savepoint of the caller's transaction.

The app's own row and the portfolio change (its version bump, its events)
commit together when the caller's block commits, and roll back together
when it raises; ``uow.commit()`` commits nothing by itself, and a unit of
work left without it undoes only its own changes.
"""

from __future__ import annotations

from contextlib import nullcontext
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import AsyncUnitOfWork, PortfolioStore, UnitOfWork


class Boom(Exception):
    """The app fails after the portfolio change, inside its transaction."""


def app_rows(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT note FROM app_orders")).scalars())


@pytest.fixture
def pid(engine: Engine, store: PortfolioStore) -> UUID:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE app_orders (note text PRIMARY KEY)"))
    return store.create_portfolio("alpha", Decimal("100"))


def deposit_with_app_row(connection: Connection, pid: UUID, note: str) -> None:
    connection.execute(text("INSERT INTO app_orders VALUES (:note)"), {"note": note})
    with UnitOfWork(connection) as uow:
        uow.portfolios.get(pid).deposit(Decimal("5"))
        uow.commit()
    # Still the caller's transaction: nothing is visible elsewhere yet.
    assert connection.in_transaction()


def test_the_callers_commit_commits_both(engine: Engine, store: PortfolioStore, pid: UUID) -> None:
    with engine.begin() as connection:
        deposit_with_app_row(connection, pid, "order-1")
        assert app_rows(engine) == []
        assert store.get(pid).version == 1

    snapshot = store.get(pid)
    assert app_rows(engine) == ["order-1"]
    assert (snapshot.version, snapshot.cash_balance) == (2, Decimal("105"))
    assert [e.version for e in store.history(pid)] == [1, 2]


def test_the_callers_rollback_rolls_back_both(
    engine: Engine, store: PortfolioStore, pid: UUID
) -> None:
    def fail_after_the_deposit() -> None:
        with engine.begin() as connection:
            deposit_with_app_row(connection, pid, "order-1")
            raise Boom

    with pytest.raises(Boom):
        fail_after_the_deposit()

    snapshot = store.get(pid)
    assert app_rows(engine) == []
    assert (snapshot.version, snapshot.cash_balance) == (1, Decimal("100"))
    assert [e.version for e in store.history(pid)] == [1]


@pytest.mark.asyncio
@pytest.mark.parametrize("fail", [False, True])
async def test_async_the_callers_transaction_decides_for_both(
    async_engine: AsyncEngine, engine: Engine, store: PortfolioStore, pid: UUID, fail: bool
) -> None:
    with pytest.raises(Boom) if fail else nullcontext():
        async with async_engine.begin() as connection:
            await connection.execute(text("INSERT INTO app_orders VALUES ('order-1')"))
            async with AsyncUnitOfWork(connection) as uow:
                (await uow.portfolios.get(pid)).deposit(Decimal("5"))
                await uow.commit()
            assert connection.in_transaction()
            assert app_rows(engine) == []
            if fail:
                raise Boom

    snapshot = store.get(pid)
    assert app_rows(engine) == ([] if fail else ["order-1"])
    assert snapshot.version == (1 if fail else 2)
    assert len(store.history(pid)) == snapshot.version


def test_a_unit_of_work_left_without_commit_undoes_only_itself(
    engine: Engine, store: PortfolioStore, pid: UUID
) -> None:
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO app_orders VALUES ('order-1')"))
        with UnitOfWork(connection) as uow:  # rolled back to its savepoint
            uow.portfolios.get(pid).deposit(Decimal("5"))
        deposit_with_app_row(connection, pid, "order-2")

    snapshot = store.get(pid)
    assert app_rows(engine) == ["order-1", "order-2"]
    assert (snapshot.version, snapshot.cash_balance) == (2, Decimal("105"))
