"""Optimistic concurrency: stale writes refused with both versions, conflicts retried and counted.

Contract cases: each runs for the sync and the async flavour (the ``flavour``
fixture, tests/integration/conftest.py; API in contract_api.py).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine

from portfolio_core import (
    OptimisticLockException,
    StaleDataException,
)
from tests.integration.contract_api import Flavour
from tests.integration.helpers import (
    commit_deposit_behind_the_back,
)

pytestmark = pytest.mark.asyncio


# -- optimistic conflicts -----------------------------------------------------------------


async def test_stale_write_is_refused_with_expected_and_actual_versions(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    async with flavour.store.unit_of_work() as uow:
        portfolio = await uow.portfolios.get(pid)
        portfolio.deposit(Decimal("5"))
        commit_deposit_behind_the_back(engine, pid)
        with pytest.raises(flavour.conflict_error) as raised:
            await uow.commit()

    if isinstance(raised.value, StaleDataException):
        # Above READ COMMITTED PostgreSQL refuses the UPDATE itself (40001), before
        # the version check could read the versions.
        assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    assert (await flavour.store.get(pid)).cash_balance == Decimal("101")


async def test_update_portfolio_refuses_a_detached_copy_that_fell_behind(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    copy = await flavour.store.get(pid)
    await flavour.store.execute(pid, lambda p: p.deposit(Decimal("1")))
    copy.deposit(Decimal("2"))

    async with flavour.store.unit_of_work() as uow:
        with pytest.raises(StaleDataException) as raised:
            await uow.portfolios.update_portfolio(copy)

    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)


async def test_conflict_is_retried_and_counted_exactly(flavour: Flavour, engine: Engine) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    attempts = 0

    async def deposit_racing_another_writer_once() -> None:
        nonlocal attempts
        attempts += 1
        async with flavour.store.unit_of_work() as uow:
            portfolio = await uow.portfolios.get(pid)
            portfolio.deposit(Decimal("10"))
            if attempts == 1:
                commit_deposit_behind_the_back(engine, pid)
            await uow.commit()

    await flavour.retried(deposit_racing_another_writer_once, pid)

    assert attempts == 2
    assert (await flavour.store.get(pid)).cash_balance == Decimal("111")
    assert flavour.store.metrics() == {
        "version_conflicts": 0,
        "successful_retries": 1,
        "failed_retries": 0,
        "deadlocks_detected": 0,
        "lock_timeouts": 0,
        "serialization_failures": 0,
    } | {flavour.conflict_metric: 1}


async def test_retry_exhaustion_raises_optimistic_lock_exception(
    flavour: Flavour, engine: Engine, no_sleep: list[float]
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    async def always_overtaken() -> None:
        async with flavour.store.unit_of_work() as uow:
            (await uow.portfolios.get(pid)).deposit(Decimal("10"))
            commit_deposit_behind_the_back(engine, pid)
            await uow.commit()

    with pytest.raises(OptimisticLockException) as raised:
        await flavour.retried(always_overtaken, pid)

    assert raised.value.retries == 5
    assert isinstance(raised.value.__cause__, flavour.conflict_error)
    assert len(no_sleep) == 5
    assert flavour.store.metrics()[flavour.conflict_metric] == 6
    assert flavour.store.metrics()["failed_retries"] == 1
