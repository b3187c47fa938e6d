"""The next coalesced batch starts while the last one's COMMIT is in flight (READ COMMITTED).

A leader hands the lead over at its batch's COMMIT point: the successor's
batch queues on the row lock, which the COMMIT releases. At REPEATABLE READ
the successor waits for the COMMIT to end instead (its snapshot would
predate the COMMIT and its FOR UPDATE would fail to serialize).
Each test holds the row with a raw connection until a leader and one queued
caller are in place (batches of one), then looks at the state of things from
inside the leader's COMMIT (an engine ``commit`` listener).
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import AsyncPortfolioStore, Portfolio, PortfolioStore
from portfolio_core.coalescing import overlaps_commit
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.errors import CommitOutcomeUnknownException
from portfolio_core.persistence.engine import create_engine
from portfolio_core.persistence.isolation import IsolationLevel
from tests.integration.coalescing_tools import Caller, committed_state, wait_for
from tests.integration.helpers import row_locked, wait_until_blocked


def _one(portfolio: Portfolio) -> Decimal:
    portfolio.deposit(Decimal("1"))
    return portfolio.cash_balance


@pytest.mark.parametrize("isolation", [None, "repeatable read"])
def test_the_next_batch_waits_on_the_row_during_the_commit(
    engine: Engine, isolation: IsolationLevel | None
) -> None:
    service = ConcurrencyService(engine, max_retries=0)
    store = PortfolioStore(
        engine, service, isolation=isolation, coalesce=True, coalesce_max_batch=1
    )
    pid = store.create_portfolio("alpha", Decimal("100"))
    seen: dict[str, Any] = {}

    def at_commit(connection: object) -> None:
        if threading.current_thread().name != "leader" or "queued" in seen:
            return
        seen["queued"] = store.coalescing_queue(pid)
        if isolation is None:  # the successor's batch is blocked on the row this COMMIT holds
            wait_until_blocked(engine)

    event.listen(engine, "commit", at_commit)
    try:
        with row_locked(engine, pid):
            leader = Caller(lambda: store.execute(pid, _one), "leader")
            leader.start()
            wait_until_blocked(engine)
            follower = Caller(lambda: store.execute(pid, _one), "follower")
            follower.start()
            wait_for(lambda: store.coalescing_queue(pid) == 1, "the follower queued")
        for caller in (leader, follower):
            caller.join(60)
            assert not caller.is_alive()
    finally:
        event.remove(engine, "commit", at_commit)
    assert [leader.error, follower.error] == [None, None]
    assert sorted([leader.result, follower.result]) == [Decimal("101"), Decimal("102")]
    # READ COMMITTED: promoted at the COMMIT point; REPEATABLE READ: still queued then.
    assert seen["queued"] == (0 if isolation is None else 1)
    assert committed_state(engine, pid) == (3, Decimal("102"), 3)


@pytest.mark.asyncio
@pytest.mark.parametrize("isolation", [None, "repeatable read"])
async def test_tasks_hand_the_lead_over_at_the_commit_point(
    engine: Engine, async_engine: AsyncEngine, isolation: IsolationLevel | None
) -> None:
    service = ConcurrencyService(async_engine=async_engine, max_retries=0)
    store = AsyncPortfolioStore(
        async_engine, service, isolation=isolation, coalesce=True, coalesce_max_batch=1
    )
    pid = await store.create_portfolio("alpha", Decimal("100"))
    seen: list[int] = []

    def at_commit(connection: object) -> None:
        if not seen:  # the leader's (the first after the row is released)
            seen.append(store.coalescing_queue(pid))

    with row_locked(engine, pid):
        leader = asyncio.create_task(store.execute(pid, _one))
        await asyncio.to_thread(wait_until_blocked, engine)
        follower = asyncio.create_task(store.execute(pid, _one))
        for _ in range(2000):
            if store.coalescing_queue(pid) == 1:
                break
            await asyncio.sleep(0.01)
        assert store.coalescing_queue(pid) == 1
        event.listen(async_engine.sync_engine, "commit", at_commit)
    try:
        results = await asyncio.wait_for(asyncio.gather(leader, follower), 60)
    finally:
        event.remove(async_engine.sync_engine, "commit", at_commit)
    assert sorted(results) == [Decimal("101"), Decimal("102")]
    assert seen == [0 if isolation is None else 1]
    assert committed_state(engine, pid) == (3, Decimal("102"), 3)


def test_overlaps_commit_only_at_read_committed(engine: Engine) -> None:
    with engine.connect():  # the server's default level is known after a connection
        pass
    assert overlaps_commit(engine, None)
    assert overlaps_commit(engine, "read committed")
    assert not overlaps_commit(engine, "repeatable read")
    assert not overlaps_commit(engine, "serializable")
    assert not overlaps_commit(engine.execution_options(isolation_level="SERIALIZABLE"), None)


def test_overlaps_commit_reads_the_level_the_engine_was_created_with(database_url: str) -> None:
    engine = create_engine(database_url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect():
            pass
        assert not overlaps_commit(engine, None)
        assert overlaps_commit(engine, "read committed")
    finally:
        engine.dispose()


def test_a_commit_failing_after_the_hand_over_fails_only_its_own_batch(engine: Engine) -> None:
    service = ConcurrencyService(engine, max_retries=0)
    store = PortfolioStore(engine, service, coalesce=True, coalesce_max_batch=1)
    pid = store.create_portfolio("alpha", Decimal("100"))
    queued_at_commit: list[int] = []

    def at_commit(connection: object) -> None:
        if threading.current_thread().name != "leader" or queued_at_commit:
            return
        queued_at_commit.append(store.coalescing_queue(pid))
        wait_until_blocked(engine)  # the successor waits on the row during this COMMIT
        raise OperationalError("COMMIT", {}, Exception("the COMMIT failed"))

    event.listen(engine, "commit", at_commit)
    try:
        with row_locked(engine, pid):
            leader = Caller(lambda: store.execute(pid, _one), "leader")
            leader.start()
            wait_until_blocked(engine)
            follower = Caller(lambda: store.execute(pid, _one), "follower")
            follower.start()
            wait_for(lambda: store.coalescing_queue(pid) == 1, "the follower queued")
        for caller in (leader, follower):
            caller.join(60)
            assert not caller.is_alive()
    finally:
        event.remove(engine, "commit", at_commit)
    assert queued_at_commit == [0]  # the lead had passed before the COMMIT failed
    assert isinstance(leader.error, CommitOutcomeUnknownException)
    assert follower.error is None
    assert follower.result == Decimal("101")
    assert committed_state(engine, pid) == (2, Decimal("101"), 2)
    assert store.coalescing_queue(pid) == 0
