"""A connection lost before COMMIT of a keyed execute is retried, never "outcome unknown".

A repeated idempotency key is looked up first in the unit of work; the
backend is killed (pg_terminate_backend, which waits until it is gone) just
before that lookup, so the loss happens at a chosen statement. The repeat
must get its stored answer: nothing was committed by the lost attempt, so
there is no outcome to resolve (it used to be classified as a lost COMMIT
and then refused as an IdempotencyConflictError).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from portfolio_core import AsyncPortfolioStore, PortfolioStore
from portfolio_core.domain import Portfolio
from portfolio_core.persistence.engine import create_async_engine

KEY = "deposit-once"


class KillBeforeKeyLookup:
    """Kills the backend of the connection about to look up an idempotency key, once."""

    def __init__(self, target: Engine, killer: Engine) -> None:
        self.killer = killer
        self.armed = False
        self.killed = 0
        event.listen(target, "connect", self._remember_pid)
        event.listen(target, "before_cursor_execute", self._maybe_kill)

    @staticmethod
    def _remember_pid(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        record.info["backend_pid"] = cursor.fetchone()[0]
        cursor.close()

    def _maybe_kill(self, connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not self.armed or "FROM idempotency_keys" not in statement:
            return
        self.armed = False
        pid = connection.connection._connection_record.info["backend_pid"]
        with self.killer.connect() as killer:
            assert killer.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})
        self.killed += 1


def deposit(portfolio: Portfolio) -> Decimal:
    portfolio.deposit(Decimal("10"))
    return portfolio.cash_balance


def test_a_repeated_key_whose_connection_dies_on_the_lookup_gets_its_stored_result(
    engine: Engine, store: PortfolioStore
) -> None:
    kill = KillBeforeKeyLookup(engine, engine)
    pid = store.create_portfolio("p", Decimal("100"))
    first = store.execute(pid, deposit, idempotency_key=KEY)

    kill.armed = True
    again = store.execute(pid, deposit, idempotency_key=KEY)

    assert kill.killed == 1
    assert again == first == Decimal("110")
    assert store.get(pid).version == 2
    assert store.metrics()["successful_retries"] == 1


def test_a_first_keyed_call_whose_connection_dies_on_the_lookup_applies_once(
    engine: Engine, store: PortfolioStore
) -> None:
    kill = KillBeforeKeyLookup(engine, engine)
    pid = store.create_portfolio("p", Decimal("100"))

    kill.armed = True
    assert store.execute(pid, deposit, idempotency_key=KEY) == Decimal("110")

    assert kill.killed == 1
    assert store.get(pid).version == 2
    assert len(store.history(pid)) == 2
    # Retried as a lost connection, not resolved as a lost COMMIT (a fresh run).
    assert store.metrics()["successful_retries"] == 1


@pytest.mark.asyncio
async def test_async_a_repeated_key_whose_connection_dies_on_the_lookup_gets_its_stored_result(
    database_url: str, engine: Engine
) -> None:
    async_engine = create_async_engine(database_url)
    try:
        kill = KillBeforeKeyLookup(async_engine.sync_engine, engine)
        store = AsyncPortfolioStore(async_engine)
        pid = await store.create_portfolio("p", Decimal("100"))
        first = await store.execute(pid, deposit, idempotency_key=KEY)

        kill.armed = True
        again = await store.execute(pid, deposit, idempotency_key=KEY)

        assert kill.killed == 1
        assert again == first == Decimal("110")
        assert (await store.get(pid)).version == 2
    finally:
        await async_engine.dispose()
