"""A task taken into a batch learns its outcome is unknown when none arrives within its bound.

The asyncio twin of ``test_coalescing_bounds``' taken-caller test. An
operation can not hang inside the batch here (it would block the loop), so
the batch stalls on the database instead, after taking the follower: another
transaction holds the leader's idempotency key uncommitted, and the batch's
key INSERT waits for it (bounded by the leader's lock timeout, 30 s). The
queue's bounds are made short (``queue_wait``: 5 s to be taken, a wide margin
for a loaded machine, then 5 s for the outcome), not the 35 s + 35 s of the
default 30 s lock timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

import portfolio_core.coalescing as coalescing_module
from portfolio_core import AsyncPortfolioStore, CommitOutcomeUnknownException, Portfolio
from portfolio_core.coalescing import CoalescedCall
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.units import Seconds
from tests.integration.coalescing_tools import committed_state, key_count
from tests.integration.helpers import row_locked, wait_until_blocked

pytestmark = pytest.mark.asyncio

_BOUND: Seconds = 5.0
_POLLS = 2000

_CLAIM_KEY = text(
    "INSERT INTO idempotency_keys (key, fingerprint, portfolio_ids, result) "
    "VALUES (:key, 'held', ARRAY[CAST(:pid AS uuid)], '{}')"
)


def deposit(amount: str) -> Callable[[Portfolio], Decimal]:
    def operation(portfolio: Portfolio) -> Decimal:
        portfolio.deposit(Decimal(amount))
        return portfolio.cash_balance

    return operation


async def test_a_taken_task_gets_an_unknown_outcome_past_its_bound(
    async_engine: AsyncEngine,
    engine: Engine,
    no_sleep: list[Seconds],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = ConcurrencyService(async_engine=async_engine, max_retries=0, sleep=no_sleep.append)
    store = AsyncPortfolioStore(async_engine, service, coalesce=True)
    pid = await store.create_portfolio("alpha", Decimal("100"))

    def short(request: CoalescedCall[object]) -> Seconds:
        return _BOUND

    monkeypatch.setattr(coalescing_module, "queue_wait", short)
    with engine.connect() as holder:
        claim = holder.begin()
        holder.execute(_CLAIM_KEY, {"key": "ka", "pid": pid})
        with row_locked(engine, pid):
            leader = asyncio.create_task(store.execute(pid, deposit("1"), idempotency_key="ka"))
            await asyncio.to_thread(wait_until_blocked, engine)
            follower = asyncio.create_task(store.execute(pid, deposit("2")))
            for _ in range(_POLLS):
                if store.coalescing_queue(pid) == 1:
                    break
                await asyncio.sleep(0.01)
            assert store.coalescing_queue(pid) == 1
        # The row is free: the leader takes the follower, applies both, and its
        # key INSERT waits for ``holder``; the follower's bound runs out meanwhile.
        (outcome,) = await asyncio.wait_for(asyncio.gather(follower, return_exceptions=True), 30)
        assert isinstance(outcome, CommitOutcomeUnknownException)
        assert not leader.done()
        claim.rollback()
    assert await asyncio.wait_for(leader, 30) == Decimal("101")
    # Unknown, not refused: the batch went on and committed it.
    assert committed_state(engine, pid) == (3, Decimal("103"), 3)
    assert key_count(engine, "ka") == 1
