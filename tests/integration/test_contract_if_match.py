"""If-Match: ``expected_version`` applies a change only at that version; execute_versioned.

Contract cases: each runs for the sync and the async flavour (the ``flavour``
fixture, tests/integration/conftest.py; API in contract_api.py). A mismatch
is VersionMismatchError at once: not retried, not counted, no exhaustion.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from uuid import uuid4

import pytest
from sqlalchemy import Engine

from portfolio_core import (
    Portfolio,
    PositionRequest,
    StaleDataException,
    ValidationError,
    VersionMismatchError,
)
from portfolio_core.store_call import LOCK_MODES, LockMode
from tests.integration.contract_api import Flavour
from tests.integration.helpers import commit_deposit_behind_the_back

pytestmark = pytest.mark.asyncio

NO_RETRIES = {
    "version_conflicts": 0,
    "serialization_failures": 0,
    "successful_retries": 0,
    "failed_retries": 0,
}


def retry_counters(flavour: Flavour) -> dict[str, int]:
    return {name: flavour.store.metrics()[name] for name in NO_RETRIES}


def deposit(p: Portfolio) -> str:
    p.deposit(Decimal("5"))
    return str(p.cash_balance)


@pytest.mark.parametrize("lock", LOCK_MODES)
async def test_execute_at_the_expected_version_applies_and_answers_the_new_one(
    flavour: Flavour, lock: LockMode
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    versioned = await flavour.store.execute_versioned(pid, deposit, lock=lock, expected_version=1)
    result = await flavour.store.execute(pid, deposit, lock=lock, expected_version=2)

    assert (versioned.result, versioned.version) == ("105.00000000", 2)
    assert result == "110.00000000"
    assert (await flavour.store.get(pid)).version == 3


@pytest.mark.parametrize("lock", LOCK_MODES)
async def test_a_stale_expected_version_fails_at_once_uncounted_and_unretried(
    flavour: Flavour, lock: LockMode, caplog: pytest.LogCaptureFixture
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    await flavour.store.execute(pid, deposit)
    calls: list[int] = []

    def counted(p: Portfolio) -> str:
        calls.append(1)
        return deposit(p)

    with (
        caplog.at_level(logging.INFO, logger="portfolio_core.concurrency"),
        pytest.raises(VersionMismatchError) as raised,
    ):
        await flavour.store.execute_versioned(pid, counted, lock=lock, expected_version=1)

    assert isinstance(raised.value, StaleDataException)
    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    assert calls == []
    assert retry_counters(flavour) == NO_RETRIES
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "retries_exhausted" not in events
    assert "retrying" not in events
    assert (await flavour.store.get(pid)).cash_balance == Decimal("105")


async def test_an_optimistic_attempt_that_loses_a_race_is_retried_then_mismatches(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    calls: list[int] = []

    def racing(p: Portfolio) -> None:
        calls.append(1)
        commit_deposit_behind_the_back(engine, pid)  # version 1 -> 2 before our COMMIT
        p.deposit(Decimal("5"))

    with pytest.raises(VersionMismatchError) as raised:
        await flavour.store.execute(pid, racing, expected_version=1)

    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    assert calls == [1]
    # Lost at READ COMMITTED to the version check, above it to PostgreSQL (40001).
    assert retry_counters(flavour) == {**NO_RETRIES, flavour.conflict_metric: 1}
    assert (await flavour.store.get(pid)).cash_balance == Decimal("101")


async def test_a_repeated_key_returns_its_stored_result_despite_the_old_expected_version(
    flavour: Flavour,
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("1000"))
    other = await flavour.store.create_portfolio("beta", Decimal("0"))
    await flavour.store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 1, "10")))

    for _ in range(2):  # the second round repeats each request with its old If-Match
        first = await flavour.store.execute_versioned(
            pid, deposit, idempotency_key="dep", expected_version=2
        )
        await flavour.store.transfer(
            pid, other, Decimal("100"), idempotency_key="tr", expected_version={pid: 3, other: 1}
        )
        repriced = await flavour.store.update_all_prices(
            pid, {"AAPL": 11}, idempotency_key="px", expected_version=4
        )
        assert (first.result, repriced) == ("995.00000000", 1)

    assert ((await flavour.store.get(pid)).version, (await flavour.store.get(other)).version) == (
        5,
        2,
    )
    with pytest.raises(VersionMismatchError):
        await flavour.store.execute(pid, deposit, idempotency_key="new", expected_version=4)


async def test_transfer_checks_each_leg_it_is_given(flavour: Flavour) -> None:
    source = await flavour.store.create_portfolio("alpha", Decimal("100"))
    target = await flavour.store.create_portfolio("beta", Decimal("0"))
    await flavour.store.execute(target, deposit)

    with pytest.raises(VersionMismatchError) as raised:
        await flavour.store.transfer(
            source, target, Decimal("10"), expected_version={source: 1, target: 1}
        )
    with pytest.raises(ValidationError):
        await flavour.store.transfer(
            source, target, Decimal("10"), expected_version={source: 1, uuid4(): 1}
        )
    await flavour.store.transfer(source, target, Decimal("10"), expected_version={target: 2})

    assert (raised.value.entity_id, raised.value.actual_version) == (target, 2)
    assert (await flavour.store.get(source)).cash_balance == Decimal("90")
    assert retry_counters(flavour) == NO_RETRIES


async def test_update_all_prices_applies_only_at_the_expected_version(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("1000"))
    await flavour.store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 1, "10")))

    with pytest.raises(VersionMismatchError) as raised:
        await flavour.store.update_all_prices(pid, {"AAPL": 12}, expected_version=1)
    assert await flavour.store.update_all_prices(pid, {"AAPL": 11}, expected_version=2) == 1

    snapshot = await flavour.store.get(pid)
    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    assert (snapshot.version, snapshot.positions["AAPL"].current_price) == (3, Decimal("11"))
    assert retry_counters(flavour) == NO_RETRIES
