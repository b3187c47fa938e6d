"""The integration contract, run against the sync API AND the async API from one definition.

Every test takes the ``flavour`` fixture (parametrized ``sync`` / ``async``,
see contract_api.py) and awaits the same calls; a second party, when a race
is the point, is a plain psycopg2 connection driven from a thread, ordered by
threading.Event and by polling the server for the lock wait (never by sleeps).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from decimal import Decimal
from uuid import UUID

import pytest
import pytest_asyncio
from sqlalchemy import Connection, Engine, text

from portfolio_core import (
    AsyncPortfolioStore,
    ConcurrencyService,
    DeadlockException,
    IdempotencyConflictError,
    InsufficientFundsError,
    OptimisticLockException,
    PessimisticLockException,
    Portfolio,
    PortfolioStore,
    PositionRequest,
    StaleDataException,
    create_async_engine,
)
from portfolio_core.store_work import LOCK_MODES, LockMode
from tests.integration.contract_api import Flavour, SyncStore

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["sync", "async"])
async def flavour(
    request: pytest.FixtureRequest, engine: Engine, database_url: str, no_sleep: list[float]
) -> AsyncIterator[Flavour]:
    """The library in one flavour, on this test's database; retries never really sleep."""
    if request.param == "sync":
        service = ConcurrencyService(engine, max_retries=5, sleep=no_sleep.append)
        yield Flavour("sync", SyncStore(PortfolioStore(engine, service)), service)
        return
    async_engine = create_async_engine(database_url)
    service = ConcurrencyService(async_engine, max_retries=5, sleep=no_sleep.append)
    try:
        yield Flavour("async", AsyncPortfolioStore(async_engine, service), service)
    finally:
        await async_engine.dispose()


# -- the second party ----------------------------------------------------------------


@contextmanager
def row_locked(engine: Engine, portfolio_id: UUID) -> Iterator[Connection]:
    """Hold ``SELECT ... FOR UPDATE`` on a portfolio row in another transaction."""
    with engine.connect() as connection, connection.begin():
        connection.execute(
            text("SELECT 1 FROM portfolios WHERE id = :id FOR UPDATE"), {"id": portfolio_id}
        )
        yield connection


def commit_deposit_behind_the_back(engine: Engine, portfolio_id: UUID) -> None:
    """Another writer deposits 1 and bumps the version, as the library would."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE portfolios SET cash_balance = cash_balance + 1, "
                "total_deposits = total_deposits + 1, version = version + 1 WHERE id = :id"
            ),
            {"id": portfolio_id},
        )


def wait_until_waiting_on_lock(engine: Engine, backend_pid: int) -> None:
    """Block until that backend waits on a lock: a condition on the server, not a timing."""
    deadline = time.monotonic() + 30
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": backend_pid},
            ).scalar_one_or_none()
            connection.rollback()
            if waiting:
                return
    raise AssertionError(f"backend {backend_pid} never waited on a lock")


# -- create / get / execute ------------------------------------------------------------


@pytest.mark.parametrize("lock", LOCK_MODES)
async def test_execute_commits_each_change_with_one_version_bump(
    flavour: Flavour, lock: LockMode
) -> None:
    store = flavour.store
    pid = await store.create_portfolio("alpha", Decimal("10000"))

    await store.execute(pid, lambda p: p.deposit(Decimal("250")), lock=lock)
    await store.execute(
        pid, lambda p: p.open_position(PositionRequest("AAPL", 10, "150")), lock=lock
    )
    pnl = await store.execute(pid, lambda p: p.close_position("AAPL", "160", 4), lock=lock)

    snapshot = await store.get(pid)
    assert pnl == Decimal("40")
    assert snapshot.version == 4
    assert snapshot.cash_balance == Decimal("9390")
    assert snapshot.positions["AAPL"].quantity == Decimal("6")
    assert [p.symbol for p in snapshot.closed_positions] == []
    assert snapshot.money_invariant_holds()


async def test_unit_of_work_reads_back_what_another_one_committed(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    async with flavour.store.unit_of_work() as uow:
        portfolio = await uow.portfolios.get(pid)
        portfolio.open_position(PositionRequest("MSFT", 1, "10"))
        await uow.commit()

    async with flavour.store.unit_of_work() as uow:
        # Read inside the block: leaving it rolls back, which expires what was loaded.
        listed = [p.id for p in await uow.portfolios.list()]
        loaded = await uow.portfolios.get(pid)
        quantity, version = loaded.positions["MSFT"].quantity, loaded.version

    assert listed == [pid]
    assert (quantity, version) == (Decimal("1"), 2)


# -- optimistic conflicts -----------------------------------------------------------------


async def test_stale_write_is_refused_with_expected_and_actual_versions(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    async with flavour.store.unit_of_work() as uow:
        portfolio = await uow.portfolios.get(pid)
        portfolio.deposit(Decimal("5"))
        commit_deposit_behind_the_back(engine, pid)
        with pytest.raises(StaleDataException) as raised:
            await uow.commit()

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


async def test_update_portfolio_atomic_checks_the_expected_version(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    async with flavour.store.unit_of_work() as uow:
        new_version = await uow.portfolios.update_portfolio_atomic(
            pid, {"cash_balance": Decimal("150")}, expected_version=1
        )
        with pytest.raises(StaleDataException) as raised:
            await uow.portfolios.update_portfolio_atomic(pid, {"name": "beta"}, expected_version=1)
        await uow.commit()

    snapshot = await flavour.store.get(pid)
    assert new_version == 2
    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    assert (snapshot.cash_balance, snapshot.total_deposits) == (Decimal("150"), Decimal("50"))
    assert snapshot.money_invariant_holds()


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
        "version_conflicts": 1,
        "successful_retries": 1,
        "failed_retries": 0,
        "deadlocks_detected": 0,
        "lock_timeouts": 0,
    }


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
    assert isinstance(raised.value.__cause__, StaleDataException)
    assert len(no_sleep) == 5
    assert flavour.store.metrics()["version_conflicts"] == 6
    assert flavour.store.metrics()["failed_retries"] == 1


# -- pessimistic locks -------------------------------------------------------------------


async def test_nowait_on_a_held_row_fails_and_leaves_the_unit_of_work_usable(
    flavour: Flavour, engine: Engine
) -> None:
    busy = await flavour.store.create_portfolio("busy", Decimal("100"))
    free = await flavour.store.create_portfolio("free", Decimal("100"))

    with row_locked(engine, busy):
        async with flavour.store.unit_of_work() as uow:
            (await uow.portfolios.get(free)).deposit(Decimal("7"))
            with pytest.raises(PessimisticLockException) as raised:
                await uow.portfolios.get_portfolio_for_update(busy, nowait=True)
            await uow.commit()

    assert raised.value.sqlstate == "55P03"
    assert (await flavour.store.get(free)).cash_balance == Decimal("107")
    assert (await flavour.store.get(busy)).version == 1


async def test_lock_timeout_is_honoured_and_reported(flavour: Flavour, engine: Engine) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    with row_locked(engine, pid):
        async with flavour.store.unit_of_work() as uow:
            with pytest.raises(PessimisticLockException) as raised:
                await uow.portfolios.get_portfolio_for_update(pid, nowait=False, lock_timeout=0.05)

    assert raised.value.timeout == 0.05
    assert raised.value.sqlstate == "55P03"


async def test_skip_locked_leaves_out_the_held_rows(flavour: Flavour, engine: Engine) -> None:
    busy = await flavour.store.create_portfolio("busy", Decimal("1"))
    free = await flavour.store.create_portfolio("free", Decimal("1"))

    with row_locked(engine, busy):
        async with flavour.store.unit_of_work() as uow:
            locked = await uow.portfolios.get_portfolios_for_update([busy, free], skip_locked=True)
            locked_ids = [p.id for p in locked]

    assert locked_ids == [free]


async def test_execute_nowait_exhaustion_counts_lock_timeouts(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    with row_locked(engine, pid), pytest.raises(PessimisticLockException) as raised:
        await flavour.store.execute(pid, lambda p: p.deposit(Decimal("1")), lock="nowait")

    assert raised.value.retries == 5
    assert flavour.store.metrics()["lock_timeouts"] == 6
    assert flavour.store.metrics()["failed_retries"] == 1


async def test_deadlock_is_classified_counted_and_retried(flavour: Flavour, engine: Engine) -> None:
    first = await flavour.store.create_portfolio("first", Decimal("100"))
    second = await flavour.store.create_portfolio("second", Decimal("100"))
    holder_has_first = threading.Event()
    holder_may_continue = threading.Event()
    holder_committed = threading.Event()
    holder_pid: list[int] = []

    def holder() -> None:
        # Locks first then second. Its deadlock_timeout is long, so the
        # library's transaction, whose check fires first, is the victim.
        with engine.connect() as connection, connection.begin():
            connection.execute(text("SET LOCAL deadlock_timeout = '60s'"))
            holder_pid.append(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            connection.execute(
                text("SELECT 1 FROM portfolios WHERE id = :id FOR UPDATE"), {"id": first}
            )
            holder_has_first.set()
            holder_may_continue.wait(30)
            connection.execute(
                text("SELECT 1 FROM portfolios WHERE id = :id FOR UPDATE"), {"id": second}
            )
        holder_committed.set()

    thread = threading.Thread(target=holder)
    thread.start()
    holder_has_first.wait(30)
    attempts = 0

    async def lock_second_then_first() -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            # Else the retry may take the row back before the woken holder re-checks
            # it, and deadlock again: that race is PostgreSQL's, not under test.
            holder_committed.wait(30)
        async with flavour.store.unit_of_work() as uow:
            (await uow.portfolios.get_portfolio_for_update(second, nowait=False)).deposit(1)
            if attempts == 1:
                holder_may_continue.set()
                wait_until_waiting_on_lock(engine, holder_pid[0])
            (await uow.portfolios.get_portfolio_for_update(first, nowait=False)).deposit(1)
            await uow.commit()

    try:
        await flavour.retried(lock_second_then_first, (first, second))
    finally:
        holder_may_continue.set()
        thread.join(30)

    assert attempts == 2
    assert flavour.store.metrics()["deadlocks_detected"] == 1
    assert flavour.store.metrics()["successful_retries"] == 1
    assert (await flavour.store.get(first)).cash_balance == Decimal("101")


async def test_deadlock_exhaustion_raises_deadlock_exception_chained(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("1"))

    async def raise_deadlock() -> None:
        async with flavour.store.unit_of_work() as uow:
            await uow.portfolios.get(pid)
            raise DeadlockException("forced", entities=[("Portfolio", pid)])

    with pytest.raises(DeadlockException) as raised:
        await flavour.retried(raise_deadlock, pid)

    assert raised.value.retries == 5
    assert isinstance(raised.value.__cause__, DeadlockException)
    assert flavour.store.metrics()["deadlocks_detected"] == 6
    assert flavour.store.metrics()["failed_retries"] == 1


# -- several rows at once ------------------------------------------------------------------


async def test_update_all_prices_bumps_the_version_once(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100000"))

    def open_three(p: Portfolio) -> None:
        for symbol in ("AAPL", "MSFT", "NVDA"):
            p.open_position(PositionRequest(symbol, 10, "100"))

    await flavour.store.execute(pid, open_three)
    updated = await flavour.store.update_all_prices(
        pid, {"AAPL": "110", "MSFT": "90.5", "NVDA": "100.00000001", "TSLA": "1"}
    )

    snapshot = await flavour.store.get(pid)
    assert updated == 3
    assert snapshot.version == 3
    assert snapshot.positions["MSFT"].current_price == Decimal("90.5")
    assert snapshot.positions["NVDA"].current_price == Decimal("100.00000001")
    assert snapshot.market_value == Decimal("3005.0000001")


async def test_transfer_moves_cash_atomically_and_refuses_overdrafts(flavour: Flavour) -> None:
    a = await flavour.store.create_portfolio("a", Decimal("100"))
    b = await flavour.store.create_portfolio("b", Decimal("100"))

    await flavour.store.transfer(a, b, Decimal("30.5"))
    await flavour.store.transfer(b, a, "0.5")
    with pytest.raises(InsufficientFundsError):
        await flavour.store.transfer(a, b, Decimal("1000"))

    first, second = await flavour.store.get(a), await flavour.store.get(b)
    assert (first.cash_balance, second.cash_balance) == (Decimal("70"), Decimal("130"))
    assert (first.version, second.version) == (3, 3)


async def test_batch_update_is_all_or_nothing_with_one_bump_each(flavour: Flavour) -> None:
    ids = [await flavour.store.create_portfolio(f"p{i}", Decimal("100")) for i in range(3)]

    def twice(p: Portfolio) -> Decimal:
        p.deposit(Decimal("1"))
        p.deposit(Decimal("2"))
        return p.cash_balance

    results = await flavour.store.batch_update(dict.fromkeys(ids, twice))
    failing = {ids[0]: twice, ids[1]: twice, ids[2]: lambda p: p.withdraw(Decimal("1000"))}
    with pytest.raises(InsufficientFundsError):
        await flavour.store.batch_update(failing)

    snapshots = [await flavour.store.get(pid) for pid in ids]
    assert results == dict.fromkeys(ids, Decimal("103"))
    assert [s.cash_balance for s in snapshots] == [Decimal("103")] * 3
    assert [s.version for s in snapshots] == [2, 2, 2]


async def test_open_position_transactional_commits_on_its_own(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("1000"))

    async with flavour.store.unit_of_work() as uow:
        position = await uow.portfolios.open_position_transactional(
            pid, PositionRequest("AAPL", 2, "100")
        )
        # The enclosing unit of work is never committed: the position still is.

    snapshot = await flavour.store.get(pid)
    assert position.quantity == Decimal("2")
    assert snapshot.positions["AAPL"].id == position.id
    assert snapshot.cash_balance == Decimal("800")


# -- audit trail and idempotency keys ---------------------------------------------------


async def test_history_has_one_event_per_version_and_replay_rebuilds_the_portfolio(
    flavour: Flavour,
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("1000"))
    other = await flavour.store.create_portfolio("beta", Decimal("0"))
    await flavour.store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 2, "100")))
    await flavour.store.update_all_prices(pid, {"AAPL": "120"})
    await flavour.store.transfer(pid, other, Decimal("50"))
    async with flavour.store.unit_of_work() as uow:
        (await uow.portfolios.get(pid)).deposit(Decimal("5"))
        await uow.commit()

    events = await flavour.store.history(pid)
    snapshot = await flavour.store.get(pid)
    replayed = await flavour.store.replay(pid)
    assert [event.version for event in events] == [1, 2, 3, 4, 5]
    assert len(await flavour.store.history(pid, since_version=3)) == 2
    assert (replayed.version, replayed.cash_balance) == (5, snapshot.cash_balance)
    assert replayed.positions["AAPL"].current_price == Decimal("120")
    assert (await flavour.store.replay(pid, 2)).cash_balance == Decimal("800")


async def test_idempotency_keys_apply_each_request_once(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("1000"))
    other = await flavour.store.create_portfolio("beta", Decimal("0"))
    await flavour.store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 1, "10")))

    def deposit(p: Portfolio) -> str:
        p.deposit(Decimal("7"))
        return str(p.cash_balance)

    first = await flavour.store.execute(pid, deposit, idempotency_key="dep-1")
    again = await flavour.store.execute(pid, deposit, lock="wait", idempotency_key="dep-1")
    with pytest.raises(IdempotencyConflictError):
        await flavour.store.execute(pid, lambda p: p.deposit(8), idempotency_key="dep-1")
    for _ in range(2):
        await flavour.store.transfer(pid, other, Decimal("100"), idempotency_key="tr-1")
        assert await flavour.store.update_all_prices(pid, {"AAPL": 11}, idempotency_key="px") == 1

    snapshot, target = await flavour.store.get(pid), await flavour.store.get(other)
    assert first == again == "997.00000000"
    assert (snapshot.cash_balance, target.cash_balance) == (Decimal("897"), Decimal("100"))
    assert snapshot.version == 5
    keys = [event.idempotency_key for event in await flavour.store.history(pid)]
    assert keys == [None, None, "dep-1", "tr-1", "px"]
