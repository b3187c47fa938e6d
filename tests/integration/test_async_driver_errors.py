"""What only the async side can get wrong: asyncpg's error shapes, async_entity_lock's engine.

The cases shared with the sync API are contract cases: lost connections in
test_contract_connection_loss.py, advisory locks in test_contract_entity_lock.py.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import (
    AsyncPortfolioStore,
    ConcurrencyService,
    ConfigurationError,
    PessimisticLockException,
)
from portfolio_core.persistence.errors import Failure, classify

pytestmark = pytest.mark.asyncio


async def test_asyncpg_lock_errors_are_dbapi_errors_classified_by_sqlstate(
    async_engine: AsyncEngine, engine: Engine
) -> None:
    store = AsyncPortfolioStore(async_engine)
    pid = await store.create_portfolio("alpha", Decimal("1"))

    with engine.connect() as holder, holder.begin():
        holder.execute(text("SELECT 1 FROM portfolios WHERE id = :id FOR UPDATE"), {"id": pid})
        async with store.unit_of_work() as uow:
            with pytest.raises(PessimisticLockException) as raised:
                await uow.portfolios.get_portfolio_for_update(pid)

    cause = raised.value.__cause__
    assert isinstance(cause, DBAPIError)
    assert not isinstance(cause, OperationalError)  # unlike psycopg2: SQLSTATE is what counts
    assert getattr(cause.orig, "sqlstate", None) == "55P03"
    assert classify(cause) is Failure.LOCK_NOT_AVAILABLE


async def test_async_entity_lock_without_session_needs_an_async_engine(engine: Engine) -> None:
    with pytest.raises(ConfigurationError):
        async with ConcurrencyService(engine).async_entity_lock("Portfolio", 1):
            pass
