"""``isolation=`` on stores and units of work: the level applies to that transaction only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import AsyncPortfolioStore, ConfigurationError, PortfolioStore, UnitOfWork
from portfolio_core.persistence.isolation import ISOLATION_LEVELS

SHOW = text("SHOW transaction_isolation")


@pytest.mark.parametrize("level", ISOLATION_LEVELS)
def test_the_unit_of_work_runs_at_its_level_and_the_pooled_connection_does_not_keep_it(
    engine: Engine, level: str
) -> None:
    store = PortfolioStore(engine, isolation=level)  # type: ignore[arg-type]
    with store.unit_of_work() as uow:
        assert uow.session.execute(SHOW).scalar_one() == level
        used = uow.session.connection().connection.dbapi_connection
    with engine.connect() as connection:
        # The same pooled connection (pool of one idle connection), back at the default.
        assert connection.connection.dbapi_connection is used
        assert connection.execute(SHOW).scalar_one() == "read committed"


def test_store_operations_commit_at_serializable(engine: Engine) -> None:
    store = PortfolioStore(engine, isolation="serializable")
    pid = store.create_portfolio("s", Decimal("10"))
    store.execute(pid, lambda p: p.deposit(Decimal("5")))
    assert store.get(pid).cash_balance == Decimal("15")


def test_without_isolation_the_engine_level_is_kept(engine: Engine) -> None:
    repeatable = engine.execution_options(isolation_level="REPEATABLE READ")
    with UnitOfWork(repeatable) as uow:
        assert uow.session.execute(SHOW).scalar_one() == "repeatable read"


@pytest.mark.asyncio
async def test_the_async_unit_of_work_runs_at_its_level(async_engine: AsyncEngine) -> None:
    store = AsyncPortfolioStore(async_engine, isolation="serializable")
    async with store.unit_of_work() as uow:
        assert (await uow.session.execute(SHOW)).scalar_one() == "serializable"
    async with async_engine.connect() as connection:
        assert (await connection.execute(SHOW)).scalar_one() == "read committed"


def test_an_unknown_level_is_refused(engine: Engine) -> None:
    with pytest.raises(ConfigurationError, match="isolation must be one of"):
        PortfolioStore(engine, isolation="SERIALIZABLE")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        UnitOfWork(engine, isolation="snapshot")  # type: ignore[arg-type]
