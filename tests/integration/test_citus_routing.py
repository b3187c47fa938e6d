"""Ready for Citus: every statement the library sends routes to one distribution key.

The check itself runs in the contract suite: the ``flavour`` fixture
(tests/integration/conftest.py, and test_serializable_contract.py at
SERIALIZABLE) captures every statement the flavour's engine sends
(``before_cursor_execute``) and fails the test if one would not touch rows of
one portfolio (or the listed portfolios of a transfer/batch) through its
table's distribution column; routing_rules.py lists the exceptions with their
reasons, docs/scaling.md the DDL. These tests show the capture is live on
both drivers and that a fan-out statement does fail it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import (
    AsyncPortfolioStore,
    PortfolioStore,
    Position,
    PositionRequest,
    StaleDataException,
    UnitOfWork,
    create_engine,
)
from tests.integration.routing_rules import every_statement_routed


def test_the_sync_capture_sees_every_statement_of_a_keyed_transfer(engine: Engine) -> None:
    store = PortfolioStore(engine)
    a = store.create_portfolio("a", Decimal("10"))
    b = store.create_portfolio("b", Decimal("0"))
    with every_statement_routed(engine) as statements:
        store.transfer(a, b, Decimal("4"), idempotency_key="t-1")
        store.transfer(a, b, Decimal("4"), idempotency_key="t-1")  # the repeat: a key lookup

    sent = " ".join(statements)
    assert "FOR UPDATE" in sent
    assert "INSERT INTO portfolio_events" in sent
    assert "FROM idempotency_keys" in sent
    assert store.get(a).cash_balance == Decimal("6")


@pytest.mark.asyncio
async def test_the_async_capture_sees_the_statements_of_an_execute(
    async_engine: AsyncEngine,
) -> None:
    store = AsyncPortfolioStore(async_engine)
    pid = await store.create_portfolio("a", Decimal("10"))
    with every_statement_routed(async_engine) as statements:
        await store.execute(pid, lambda p: p.deposit(Decimal("1")), idempotency_key="k")

    # The versioned UPDATE, alone or with its event in one statement (persistence.row_flush).
    updates = ("UPDATE portfolios", "WITH bumped AS (UPDATE portfolios")
    assert any(" ".join(s.split()).startswith(updates) for s in statements)


def test_a_statement_over_every_shard_fails_the_check(engine: Engine) -> None:
    with (
        pytest.raises(AssertionError, match="would not route to one distribution key"),
        every_statement_routed(engine),
        engine.connect() as connection,
    ):
        connection.execute(text("SELECT count(*) FROM positions WHERE symbol = 'AAPL'"))


def test_the_stale_position_diagnosis_is_pinned_to_its_portfolio(
    engine: Engine, database_url: str
) -> None:
    """After a stale flush the versions are re-read by ``portfolio_id`` as well."""
    store = PortfolioStore(engine)
    pid = store.create_portfolio("a", Decimal("1000"))
    position: Position = store.execute(
        pid, lambda p: p.open_position(PositionRequest("AAPL", 1, 100))
    )
    elsewhere = create_engine(database_url)  # a writer the capture does not see
    try:
        with every_statement_routed(engine) as statements, UnitOfWork(engine) as uow:
            uow.portfolios.get(pid).update_position_price("AAPL", 101)
            with elsewhere.begin() as connection:
                connection.execute(
                    text("UPDATE positions SET version = version + 1 WHERE id = :id"),
                    {"id": position.id},
                )
            with pytest.raises(StaleDataException) as caught:
                uow.commit()
    finally:
        elsewhere.dispose()

    assert (caught.value.entity_type, caught.value.actual_version) == ("Position", 2)
    assert any(s.startswith("SELECT version FROM positions WHERE portfolio_id") for s in statements)
