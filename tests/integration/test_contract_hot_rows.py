"""``lock="auto"`` adapts per portfolio: after a version conflict, its next calls lock first.

Contract cases (sync and async flavours). A conflict is forced as in
test_contract_auto_lock (the operation commits a competing change on its first
attempt); each attempt probes from another connection, with ``FOR UPDATE
NOWAIT``, whether its row is locked at that moment. Cooling down is driven by
an injected HotRows (a count of locked commits, a hand-moved clock): no sleeps.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import Engine

from portfolio_core import HotRows, Portfolio
from portfolio_core.units import Seconds
from tests.integration.contract_api import Flavour
from tests.integration.helpers import commit_deposit_behind_the_back
from tests.integration.test_contract_auto_lock import row_locked_by_someone_else

pytestmark = pytest.mark.asyncio


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now: Seconds = 1000.0

    def __call__(self) -> Seconds:
        return self.now


async def _conflict_once(flavour: Flavour, engine: Engine, pid: UUID) -> None:
    """An ``auto`` deposit that loses its first attempt to a competing commit."""
    attempts: list[int] = []

    def deposit(portfolio: Portfolio) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            commit_deposit_behind_the_back(engine, pid)
        portfolio.deposit(Decimal("1"))

    await flavour.store.execute(pid, deposit)
    assert len(attempts) == 2


async def _locked_attempts(flavour: Flavour, engine: Engine, pid: UUID) -> list[bool]:
    """An ``auto`` deposit without competition: whether each attempt held the row lock."""
    locked: list[bool] = []

    def deposit(portfolio: Portfolio) -> None:
        locked.append(row_locked_by_someone_else(engine, pid))
        portfolio.deposit(Decimal("1"))

    await flavour.store.execute(pid, deposit)
    return locked


async def test_after_a_conflict_the_next_auto_call_locks_first(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("hot", Decimal("100"))
    await _conflict_once(flavour, engine, pid)

    assert await _locked_attempts(flavour, engine, pid) == [True]
    assert flavour.store.metrics()[flavour.conflict_metric] == 1
    assert flavour.service.hot_rows.hot_portfolios() == [pid]


async def test_another_portfolio_stays_optimistic(flavour: Flavour, engine: Engine) -> None:
    hot = await flavour.store.create_portfolio("hot", Decimal("100"))
    cold = await flavour.store.create_portfolio("cold", Decimal("100"))
    await _conflict_once(flavour, engine, hot)

    assert await _locked_attempts(flavour, engine, cold) == [False]


async def test_explicit_modes_ignore_the_memory(flavour: Flavour, engine: Engine) -> None:
    pid = await flavour.store.create_portfolio("hot", Decimal("100"))
    await _conflict_once(flavour, engine, pid)
    locked: list[bool] = []

    def deposit(portfolio: Portfolio) -> None:
        locked.append(row_locked_by_someone_else(engine, pid))
        portfolio.deposit(Decimal("1"))

    await flavour.store.execute(pid, deposit, lock="optimistic")

    assert locked == [False]


async def test_locked_commits_cool_a_portfolio_down(flavour: Flavour, engine: Engine) -> None:
    flavour.service.hot_rows = HotRows(cool_after_commits=2)
    pid = await flavour.store.create_portfolio("hot", Decimal("100"))
    await _conflict_once(flavour, engine, pid)

    runs = [await _locked_attempts(flavour, engine, pid) for _ in range(3)]

    assert runs == [[True], [True], [False]]
    assert flavour.service.hot_rows.hot_portfolios() == []


async def test_time_without_a_conflict_cools_a_portfolio_down(
    flavour: Flavour, engine: Engine
) -> None:
    clock = Clock()
    flavour.service.hot_rows = HotRows(cool_after=30.0, clock=clock)
    pid = await flavour.store.create_portfolio("hot", Decimal("100"))
    await _conflict_once(flavour, engine, pid)
    clock.now += 29.0
    assert await _locked_attempts(flavour, engine, pid) == [True]

    clock.now += 1.0

    assert await _locked_attempts(flavour, engine, pid) == [False]


async def test_a_new_conflict_heats_a_cooled_portfolio_again(
    flavour: Flavour, engine: Engine
) -> None:
    flavour.service.hot_rows = HotRows(cool_after_commits=1)
    pid = await flavour.store.create_portfolio("hot", Decimal("100"))
    await _conflict_once(flavour, engine, pid)
    assert await _locked_attempts(flavour, engine, pid) == [True]
    assert await _locked_attempts(flavour, engine, pid) == [False]

    await _conflict_once(flavour, engine, pid)

    assert await _locked_attempts(flavour, engine, pid) == [True]
