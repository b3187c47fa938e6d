"""A cancelled asyncio follower: withdrawn from its batch before the COMMIT point.

A task taken into a batch and cancelled while the leader still waits for the
row is left out: the leader rolls back and runs the batch again without it,
so what the caller was told (CancelledError, or TimeoutError from
asyncio.timeout) holds: nothing of it committed, and a retry applies it once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import AsyncPortfolioStore, Portfolio
from portfolio_core.concurrency import ConcurrencyService
from tests.integration.coalescing_tools import committed_state
from tests.integration.helpers import row_locked, wait_until_blocked

pytestmark = pytest.mark.asyncio

# The calls wait for the row behind the test's holder while the test polls:
# a bound far beyond any poll, so a loaded machine cannot time B out.
BOUND = 60.0
WAITERS = text("SELECT count(*) FROM pg_locks WHERE NOT granted")


def deposit(amount: str) -> Callable[[Portfolio], Decimal]:
    def operation(portfolio: Portfolio) -> Decimal:
        portfolio.deposit(Decimal(amount))
        return portfolio.cash_balance

    return operation


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never reached: {what}")


def _waiters(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(WAITERS).scalar_one())


def _holder(engine: Engine, pid: UUID, has_lock: threading.Event, release: threading.Event) -> None:
    with engine.connect() as connection, connection.begin():
        connection.execute(text("SELECT 1 FROM portfolios WHERE id = :p FOR UPDATE"), {"p": pid})
        has_lock.set()
        release.wait(30)


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_follower_cancelled_before_commit_is_left_out_of_its_batch(
    async_engine: AsyncEngine, engine: Engine, how: str
) -> None:
    service = ConcurrencyService(async_engine=async_engine, max_retries=0)
    store = AsyncPortfolioStore(async_engine, service, coalesce=True, coalesce_max_batch=2)
    pid = await store.create_portfolio("alpha", Decimal("100"))
    release, has_lock = threading.Event(), threading.Event()

    async def c_call() -> Decimal:
        if how == "cancel":
            return await store.execute(pid, deposit("1000"), lock_timeout=BOUND)
        async with asyncio.timeout(None) as deadline:
            timeouts.append(deadline)
            return await store.execute(pid, deposit("1000"), lock_timeout=BOUND)

    timeouts: list[asyncio.Timeout] = []
    holder = threading.Thread(target=_holder, args=(engine, pid, has_lock, release))
    with row_locked(engine, pid):
        a = asyncio.create_task(store.execute(pid, deposit("1"), lock_timeout=BOUND))
        await asyncio.to_thread(wait_until_blocked, engine)
        f = asyncio.create_task(store.execute(pid, deposit("2"), lock_timeout=BOUND))
        await _until(lambda: store.coalescing_queue(pid) == 1, "F queued")
        b = asyncio.create_task(store.execute(pid, deposit("4"), lock_timeout=BOUND))
        await _until(lambda: store.coalescing_queue(pid) == 2, "B queued")
        c = asyncio.create_task(c_call())
        await _until(lambda: store.coalescing_queue(pid) == 3, "C queued")
        holder.start()
        await _until(lambda: _waiters(engine) >= 2, "the holder waits behind A")
    await asyncio.wait_for(asyncio.gather(a, f), 30)  # A's batch: A and F
    await asyncio.to_thread(has_lock.wait, 30)
    # B was promoted and took C; B waits for the row behind the holder.
    await _until(lambda: store.coalescing_queue(pid) == 0 and _waiters(engine) >= 1, "B blocked")
    if how == "cancel":
        c.cancel()
    else:
        timeouts[0].reschedule(asyncio.get_running_loop().time())
    (got,) = await asyncio.gather(c, return_exceptions=True)
    expected = asyncio.CancelledError if how == "cancel" else TimeoutError
    assert isinstance(got, expected)
    release.set()
    await asyncio.to_thread(holder.join, 30)
    assert await asyncio.wait_for(b, 30) == Decimal("107")
    assert committed_state(engine, pid) == (4, Decimal("107"), 4)
    # The caller retries, keyless: applied once.
    assert await store.execute(pid, deposit("1000")) == Decimal("1107")


HOLD_COMMIT = (
    "CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$",
    "CREATE CONSTRAINT TRIGGER hold_commit AFTER UPDATE ON portfolios "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit()",
)
ADVISORY_WAITER = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")


def _advisory_waiters(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(ADVISORY_WAITER).scalar_one())


def _hold_advisory(engine: Engine, has_lock: threading.Event, release: threading.Event) -> None:
    with engine.connect() as connection, connection.begin():
        connection.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        has_lock.set()
        release.wait(30)


async def test_a_follower_cancelled_during_its_batchs_commit_waits_for_it(
    async_engine: AsyncEngine, engine: Engine
) -> None:
    # The batch's COMMIT blocks (a deferred trigger waits for an advisory lock
    # the test holds) when the follower is cancelled: it is past the COMMIT
    # point, so it waits for the outcome before its CancelledError surfaces.
    with engine.begin() as connection:
        for statement in HOLD_COMMIT:
            connection.execute(text(statement))
    service = ConcurrencyService(async_engine=async_engine, max_retries=0)
    store = AsyncPortfolioStore(async_engine, service, coalesce=True)
    pid = await store.create_portfolio("alpha", Decimal("100"))
    release, has_lock = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_advisory, args=(engine, has_lock, release))
    holder.start()
    await asyncio.to_thread(has_lock.wait, 30)
    with row_locked(engine, pid):
        a = asyncio.create_task(store.execute(pid, deposit("1")))
        await asyncio.to_thread(wait_until_blocked, engine)
        c = asyncio.create_task(store.execute(pid, deposit("2")))
        await _until(lambda: store.coalescing_queue(pid) == 1, "C queued")
    await _until(lambda: _advisory_waiters(engine) == 1, "the batch's COMMIT blocked")
    c.cancel()
    # C's cancellation takes a few turns of the loop (wait_for's inner task,
    # then C), no I/O: after 20 C has run its handler, and the COMMIT can not
    # end while the test holds the lock.
    for _ in range(20):
        await asyncio.sleep(0)
    assert not c.done()  # waiting for its batch's outcome, not gone with it unknown
    release.set()
    (got,) = await asyncio.gather(c, return_exceptions=True)
    assert isinstance(got, asyncio.CancelledError)
    assert await asyncio.wait_for(a, 30) == Decimal("101")
    await asyncio.to_thread(holder.join, 30)
    assert committed_state(engine, pid) == (3, Decimal("103"), 3)  # committed, C's deposit too
