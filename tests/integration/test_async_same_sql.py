"""The async store sends PostgreSQL the very statements the sync store sends, in the same order."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import AsyncPortfolioStore, Portfolio, PortfolioStore, PositionRequest
from portfolio_core.store_call import LOCK_MODES, LockMode

pytestmark = pytest.mark.asyncio

# psycopg2 writes %(name)s, asyncpg $1 and SQLAlchemy's asyncpg dialect adds a
# cast to each bound value: the rest of each statement must match.
_PLACEHOLDER = re.compile(r"%\(\w+\)s|\$\d+")
_BIND_CAST = re.compile(
    r"\?::(?:NUMERIC\(\d+, \d+\)|TIMESTAMP WITH TIME ZONE|INTEGER|BIGINT|UUID|JSONB|JSON"
    r"|VARCHAR(?:\(\d+\))?|TEXT|BOOLEAN)(?:\[\])?"
)


def _recorder(engine: Engine) -> list[str]:
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        plain = _BIND_CAST.sub("?", _PLACEHOLDER.sub("?", statement))
        statements.append(" ".join(plain.split()))

    @event.listens_for(engine, "commit")
    def record_commit(conn: object) -> None:
        statements.append("COMMIT")

    return statements


def _buy(portfolio: Portfolio) -> None:
    portfolio.deposit(Decimal("10"))
    portfolio.open_position(PositionRequest("AAPL", 1, "5"))


@pytest.mark.parametrize("lock", LOCK_MODES)
async def test_execute_sends_the_same_sql_sync_and_async(
    engine: Engine, async_engine: AsyncEngine, lock: LockMode
) -> None:
    sync_store, async_store = PortfolioStore(engine), AsyncPortfolioStore(async_engine)
    sync_id = sync_store.create_portfolio("sync", Decimal("100"))
    async_id = await async_store.create_portfolio("async", Decimal("100"))
    sync_sql, async_sql = _recorder(engine), _recorder(async_engine.sync_engine)
    operation: Callable[[Portfolio], None] = _buy

    sync_store.execute(sync_id, operation, lock=lock)
    sync_store.update_all_prices(sync_id, {"AAPL": "6"})
    await async_store.execute(async_id, operation, lock=lock)
    await async_store.update_all_prices(async_id, {"AAPL": "6"})

    assert async_sql == sync_sql
    assert "COMMIT" in sync_sql
