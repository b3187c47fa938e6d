"""A primary that moves: stop it, promote the standby, under a keyed write load.

The library is given a multi-host URL with ``target_session_attrs=read-write``
(threads: SQLAlchemy's ``?host=a:p1&host=b:p2`` form through psycopg2;
asyncio tasks: libpq's ``?host=a,b&port=p1,p2`` form through asyncpg). The
primary is stopped while writers from threads and from asyncio tasks keep
depositing with idempotency keys; the standby is promoted. Every keyed write
must be applied exactly once. The longest gap between two acknowledged
writes is printed and recorded (not asserted: no timing assertions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from portfolio_core import (
    AsyncPortfolioStore,
    ConcurrencyService,
    ConnectionLostError,
    DatabaseConnectionError,
    PortfolioStore,
    create_async_engine,
    create_engine,
    migrate,
)
from portfolio_core.persistence.errors import sqlstate_of
from portfolio_core.units import Seconds
from tests.topology.load import assert_applied_exactly_once, patient_service, under_load
from tests.topology.servers import ReplicatedPair

THREADS = 3
TASKS = 3
WRITES_BEFORE = 30
WRITES_AFTER = 30


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicatedPair]:
    """A migrated primary with a hot standby, left as it is by the tests that share it."""
    with ReplicatedPair(synchronous=False) as started:
        migrate(started.url())
        yield started


@pytest.fixture
def failing_pair() -> Iterator[ReplicatedPair]:
    """A pair of this test's own: its primary is about to be stopped."""
    with ReplicatedPair(synchronous=False) as started:
        migrate(started.url())
        yield started


@pytest.mark.parametrize("standby_first", [False, True])
def test_multi_host_urls_find_the_primary_with_both_drivers(
    pair: ReplicatedPair, standby_first: bool
) -> None:
    """Both URL forms, standby listed first or not: both engines land on the read-write host."""
    query = text("SELECT inet_server_port(), pg_is_in_recovery()")
    expected = (pair.primary.port, False)
    for url in (pair.url(standby_first=standby_first), pair.libpq_url(standby_first=standby_first)):
        engine = create_engine(url)
        with engine.connect() as connection:
            assert tuple(connection.execute(query).one()) == expected
        engine.dispose()

        async def through_asyncpg(url: str = url) -> tuple[Any, ...]:
            async_engine = create_async_engine(url)
            try:
                async with async_engine.connect() as connection:
                    return tuple((await connection.execute(query)).one())
            finally:
                await async_engine.dispose()

        assert asyncio.run(through_asyncpg()) == expected


def test_a_write_that_reaches_a_standby_is_retried_as_a_moved_primary(
    pair: ReplicatedPair,
) -> None:
    """25006 on a standby: ConnectionLostError (retryable) and a new connection each attempt."""
    if pair.standby is None:
        raise AssertionError("no standby")
    store = PortfolioStore(create_engine(pair.primary.url))
    pid = store.create_portfolio("on the primary", 10)
    pair.wait_for_standby_replay()
    engine = create_engine(pair.standby.url)
    connections: list[object] = []
    event.listen(engine, "connect", lambda dbapi_connection, record: connections.append(1))
    sleeps: list[Seconds] = []
    service = ConcurrencyService(engine, max_retries=2, sleep=sleeps.append)
    with pytest.raises(DatabaseConnectionError) as raised:
        PortfolioStore(engine, service).execute(pid, lambda p: p.deposit(1))
    assert isinstance(raised.value.__cause__, ConnectionLostError)
    assert sqlstate_of(raised.value.__cause__.__cause__ or raised.value) == "25006"
    assert (len(connections), len(sleeps)) == (3, 2)
    engine.dispose()


def test_no_read_write_host_is_a_refused_connection_for_asyncpg(pair: ReplicatedPair) -> None:
    """asyncpg's TargetServerAttributeNotMatched (only a standby listed) is classified too."""
    if pair.standby is None:
        raise AssertionError("no standby")
    url = pair.url(primary=False)

    async def write() -> None:
        engine = create_async_engine(url)
        service = ConcurrencyService(engine, max_retries=1, async_sleep=_no_wait)
        try:
            await AsyncPortfolioStore(engine, service).create_portfolio("nowhere")
        finally:
            await engine.dispose()

    with pytest.raises(DatabaseConnectionError) as raised:
        asyncio.run(write())
    assert isinstance(raised.value.__cause__, ConnectionLostError)
    assert sqlstate_of(raised.value.__cause__.__cause__ or raised.value) == "08001"


async def _no_wait(seconds: Seconds) -> None:
    return None


def test_failover_applies_every_keyed_write_exactly_once(
    failing_pair: ReplicatedPair, record_property: Any
) -> None:
    pair = failing_pair
    engine = create_engine(pair.url(), pool_size=THREADS, max_overflow=THREADS)
    store = PortfolioStore(engine, patient_service(engine))
    thread_pids = {f"thread{i}": store.create_portfolio(f"thread{i}") for i in range(THREADS)}
    task_pids = {f"task{i}": store.create_portfolio(f"task{i}") for i in range(TASKS)}

    def failover() -> None:
        pair.stop_primary()
        pair.promote_standby()

    load = under_load(
        store,
        pair.libpq_url(),
        (thread_pids, task_pids),
        failover,
        before=WRITES_BEFORE,
        after=WRITES_AFTER,
    )

    gaps = {"threads": load.longest_gap("thread"), "tasks": load.longest_gap("task")}
    summary = {
        "acknowledged": len(load.acknowledged),
        "caller_retries": load.caller_retries,
        "longest_gap_s": {name: round(gap, 3) for name, gap in gaps.items()},
    }
    print(f"\nfailover: {summary}")
    for name, value in summary.items():
        record_property(name, value)

    assert_applied_exactly_once(load, store, {**thread_pids, **task_pids})
    engine.dispose()
