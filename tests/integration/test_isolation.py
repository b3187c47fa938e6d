"""``isolation=`` on stores and units of work: the level applies to that transaction only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import (
    AsyncPortfolioStore,
    AsyncUnitOfWork,
    ConcurrencyService,
    ConfigurationError,
    Portfolio,
    PortfolioStore,
    UnitOfWork,
    VersionMismatchError,
)
from portfolio_core.persistence.isolation import ISOLATION_LEVELS, IsolationLevel
from tests.integration.helpers import commit_deposit_behind_the_back

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


@pytest.mark.parametrize("level", ISOLATION_LEVELS)
def test_a_level_on_the_callers_connection_is_refused_before_any_sql(
    engine: Engine, level: IsolationLevel
) -> None:
    """The caller's transaction has its level already: a savepoint can not change it."""
    sent: list[str] = []

    def capture(*args: Any) -> None:
        sent.append(args[2])

    with engine.begin() as connection:
        event.listen(engine, "before_cursor_execute", capture)
        try:
            with pytest.raises(ConfigurationError, match="isolation= needs an engine"):
                UnitOfWork(connection, isolation=level)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
    assert sent == []


def test_on_the_callers_connection_the_unit_of_work_runs_at_the_callers_level(
    engine: Engine,
) -> None:
    serializable = engine.execution_options(isolation_level="SERIALIZABLE")
    with serializable.begin() as connection:
        with UnitOfWork(connection) as uow:
            assert uow.session.execute(SHOW).scalar_one() == "serializable"
            uow.commit()
        assert connection.execute(SHOW).scalar_one() == "serializable"


@pytest.mark.asyncio
async def test_a_level_on_the_callers_async_connection_is_refused(
    async_engine: AsyncEngine,
) -> None:
    async with async_engine.begin() as connection:
        with pytest.raises(ConfigurationError, match="isolation= needs an engine"):
            AsyncUnitOfWork(connection, isolation="serializable")


@pytest.mark.parametrize(
    ("level", "metric"),
    [
        ("read committed", "version_conflicts"),
        ("repeatable read", "serialization_failures"),
        ("serializable", "serialization_failures"),
    ],
)
def test_a_lost_race_is_retried_at_every_level_and_a_version_mismatch_never_is(
    engine: Engine, service: ConcurrencyService, level: IsolationLevel, metric: str
) -> None:
    store = PortfolioStore(engine, service, isolation=level)
    pid = store.create_portfolio("alpha", Decimal("100"))
    calls: list[int] = []

    def racing(portfolio: Portfolio) -> None:
        calls.append(1)
        if len(calls) == 1:
            commit_deposit_behind_the_back(engine, pid)  # version 1 -> 2 before our COMMIT
        portfolio.deposit(Decimal("5"))

    with pytest.raises(VersionMismatchError) as raised:
        store.execute(pid, racing, expected_version=1)  # retried once, then version 2 != 1

    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    assert calls == [1]
    counted = {k: v for k, v in store.metrics().items() if v}
    assert counted == {metric: 1}  # the race counted; the mismatch neither counted nor retried
    store.execute(pid, racing, expected_version=2)
    assert store.get(pid).cash_balance == Decimal("106")


@pytest.mark.asyncio
async def test_the_async_store_retries_a_serialization_failure_and_counts_it_apart(
    async_engine: AsyncEngine, engine: Engine
) -> None:
    store = AsyncPortfolioStore(async_engine, isolation="serializable")
    pid = await store.create_portfolio("alpha", Decimal("100"))
    calls: list[int] = []

    def racing(portfolio: Portfolio) -> None:
        calls.append(1)
        if len(calls) == 1:
            commit_deposit_behind_the_back(engine, pid)
        portfolio.deposit(Decimal("5"))

    await store.execute(pid, racing)

    assert calls == [1, 1]
    assert store.metrics()["serialization_failures"] == 1
    assert store.metrics()["version_conflicts"] == 0
    assert (await store.get(pid)).cash_balance == Decimal("106")
