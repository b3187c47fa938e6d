"""Operation coalescing with asyncio tasks: the same batches as with threads.

Tasks pile up behind a leader blocked on a row lock held by a raw
connection; the batch logic is the threads' (``coalescing.batch``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import (
    AsyncPortfolioStore,
    InsufficientFundsError,
    Portfolio,
    VersionMismatchError,
)
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.units import Seconds
from tests.integration.coalescing_tools import committed_state, event_rows, key_count
from tests.integration.helpers import row_locked, wait_until_blocked

pytestmark = pytest.mark.asyncio

_POLLS = 2000


@pytest_asyncio.fixture
async def coalescing(async_engine: AsyncEngine, no_sleep: list[Seconds]) -> AsyncPortfolioStore:
    service = ConcurrencyService(async_engine=async_engine, max_retries=5, sleep=no_sleep.append)
    return AsyncPortfolioStore(async_engine, service, coalesce=True)


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(_POLLS):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never reached: {what}")


def _queued(store: AsyncPortfolioStore, pid: UUID, count: int) -> bool:
    return store.coalescing_queue(pid) == count


async def piled_up(
    store: AsyncPortfolioStore,
    engine: Engine,
    pid: UUID,
    calls: list[Callable[[], Coroutine[Any, Any, Any]]],
    before_release: Callable[[list[asyncio.Task[Any]]], Awaitable[None]] | None = None,
) -> list[Any]:
    """Start each call as a task, queued in list order behind a blocked leader; release."""
    tasks: list[asyncio.Task[Any]] = []
    with row_locked(engine, pid):
        tasks.append(asyncio.create_task(calls[0]()))
        await asyncio.to_thread(wait_until_blocked, engine)
        for index, call in enumerate(calls[1:], start=1):
            tasks.append(asyncio.create_task(call()))
            await _until(partial(_queued, store, pid, index), f"task {index} queued")
        if before_release is not None:
            await before_release(tasks)
    return list(await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60))


def deposit(amount: str) -> Callable[[Portfolio], Decimal]:
    def operation(portfolio: Portfolio) -> Decimal:
        portfolio.deposit(Decimal(amount))
        return portfolio.cash_balance

    return operation


def withdraw(amount: str) -> Callable[[Portfolio], Decimal]:
    def operation(portfolio: Portfolio) -> Decimal:
        portfolio.withdraw(Decimal(amount))
        return portfolio.cash_balance

    return operation


async def test_piled_up_tasks_commit_once_each_with_its_own_version_event_and_key(
    coalescing: AsyncPortfolioStore, engine: Engine
) -> None:
    pid = await coalescing.create_portfolio("alpha", Decimal("100"))
    amounts = ["1", "2", "3", "4"]
    outcomes = await piled_up(
        coalescing,
        engine,
        pid,
        [
            partial(coalescing.execute_versioned, pid, deposit(a), idempotency_key=f"k{a}")
            for a in amounts
        ],
    )
    assert [(o.result, o.version) for o in outcomes] == [
        (Decimal("101"), 2),
        (Decimal("103"), 3),
        (Decimal("106"), 4),
        (Decimal("110"), 5),
    ]
    events = event_rows(engine, pid)
    assert [key for _, key, _ in events] == [None, "k1", "k2", "k3", "k4"]
    assert len({occurred for _, _, occurred in events[1:]}) == 1  # one COMMIT
    assert committed_state(engine, pid) == (5, Decimal("110"), 5)
    assert (await coalescing.replay(pid, 3)).cash_balance == Decimal("103")


async def test_failing_tasks_leave_no_trace_and_keys_apply_once(
    coalescing: AsyncPortfolioStore, engine: Engine
) -> None:
    pid = await coalescing.create_portfolio("alpha", Decimal("100"))

    def deposit_then_fail(portfolio: Portfolio) -> None:
        portfolio.deposit(Decimal("1000"))
        raise RuntimeError("changed its mind")

    outcomes = await piled_up(
        coalescing,
        engine,
        pid,
        [
            partial(coalescing.execute, pid, deposit("1"), idempotency_key="a"),
            partial(coalescing.execute, pid, withdraw("500")),
            partial(coalescing.execute, pid, deposit_then_fail),
            partial(coalescing.execute, pid, deposit("2"), expected_version=3),
            partial(coalescing.execute, pid, deposit("4"), expected_version=2),
            partial(coalescing.execute, pid, deposit("1"), idempotency_key="a"),
        ],
    )
    assert isinstance(outcomes[1], InsufficientFundsError)
    assert isinstance(outcomes[2], RuntimeError)
    assert isinstance(outcomes[3], VersionMismatchError)
    assert [outcomes[0], outcomes[4], outcomes[5]] == [
        Decimal("101"),
        Decimal("105"),
        Decimal("101"),
    ]
    assert committed_state(engine, pid) == (3, Decimal("105"), 3)
    assert key_count(engine, "a") == 1


async def test_a_cancelled_queued_task_leaves_the_queue_and_the_others_apply(
    coalescing: AsyncPortfolioStore, engine: Engine
) -> None:
    pid = await coalescing.create_portfolio("alpha", Decimal("100"))
    victim: list[asyncio.Task[Any]] = []

    async def cancelled_later() -> Decimal:
        victim.append(asyncio.current_task())  # type: ignore[arg-type]
        return await coalescing.execute(pid, deposit("1000"))

    async def cancel_the_victim(tasks: list[asyncio.Task[Any]]) -> None:
        victim[0].cancel()
        await asyncio.wait([victim[0]])

    outcomes = await piled_up(
        coalescing,
        engine,
        pid,
        [
            partial(coalescing.execute, pid, deposit("1")),
            cancelled_later,
            partial(coalescing.execute, pid, deposit("2")),
        ],
        before_release=cancel_the_victim,
    )
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert [outcomes[0], outcomes[2]] == [Decimal("101"), Decimal("103")]
    assert committed_state(engine, pid) == (3, Decimal("103"), 3)


async def test_many_tasks_on_one_hot_portfolio_lose_nothing(
    coalescing: AsyncPortfolioStore, engine: Engine
) -> None:
    opening = Decimal("200")
    pid = await coalescing.create_portfolio("hot", opening)
    applied: list[tuple[str, Decimal, int]] = []
    refused: list[str] = []

    async def worker(index: int) -> None:
        rng = random.Random(index)
        for n in range(12):
            amount = Decimal(rng.randint(1, 90))
            signed = amount if n % 2 == 0 else -amount
            key = f"t{index}-{n}"
            operation = deposit(str(signed)) if signed > 0 else withdraw(str(-signed))
            try:
                answer = await coalescing.execute_versioned(pid, operation, idempotency_key=key)
            except InsufficientFundsError:
                refused.append(key)
            else:
                applied.append((key, signed, answer.version))

    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(8))), 300)
    cash = opening + sum((signed for _, signed, _ in applied), Decimal(0))
    assert committed_state(engine, pid) == (len(applied) + 1, cash, len(applied) + 1)
    assert sorted(version for _, _, version in applied) == list(range(2, len(applied) + 2))
    assert all(key_count(engine, key) == 1 for key, _, _ in applied)
    assert all(key_count(engine, key) == 0 for key in refused)
    for index in range(8):
        mine = [version for key, _, version in applied if key.startswith(f"t{index}-")]
        assert mine == sorted(mine)  # each task's operations in its own order


async def test_a_leader_cancelled_while_waiting_for_the_row_hands_the_lead_on(
    coalescing: AsyncPortfolioStore, engine: Engine
) -> None:
    pid = await coalescing.create_portfolio("alpha", Decimal("100"))

    async def cancel_the_leader(tasks: list[asyncio.Task[Any]]) -> None:
        tasks[0].cancel()
        await asyncio.wait([tasks[0]])

    outcomes = await piled_up(
        coalescing,
        engine,
        pid,
        [
            partial(coalescing.execute, pid, deposit(str(n)), idempotency_key=f"c{n}")
            for n in (1, 2, 4)
        ],
        before_release=cancel_the_leader,
    )
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1:] == [Decimal("102"), Decimal("106")]
    assert committed_state(engine, pid) == (3, Decimal("106"), 3)
    assert coalescing.coalescing_queue(pid) == 0
