"""Reads on a real hot standby: read-your-writes, tokens, no lost update, a stopped standby.

One primary with a streaming hot standby serves the whole module. The
standby's replay is paused (``pg_wal_replay_pause()``) to make its lag
deterministic: what the primary commits while it is paused is invisible on
the standby, so a read that shows it came from the primary, and a read that
does not came from the standby. The last tests stop the standby for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID

import psycopg2
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import (
    AsyncPortfolioStore,
    PessimisticLockException,
    PortfolioStore,
    StaleDataException,
    create_async_engine,
    create_engine,
    migrate,
)
from portfolio_core.persistence.locking import advisory_key
from portfolio_core.persistence.read_routing import ReadPolicy, ReadToken
from tests.integration.readme_blocks import run_section, section_blocks
from tests.topology.replay import (
    primary_insert_lsn,
    replay_paused,
    wait_for_receipt,
    wait_for_replay,
)
from tests.topology.servers import ReplicatedPair

# Reads may wait briefly for a token; a stale standby stays usable (no lag bound
# in the way of the staleness these tests show), and a failed one is left alone.
POLICY = ReadPolicy(max_lag=3600.0, replay_wait=0.05, retry_standby_after=3600.0)


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicatedPair]:
    """A migrated primary with a hot standby (replay resumed after each test that pauses it)."""
    with ReplicatedPair(synchronous=False) as started:
        migrate(started.url())
        yield started


@pytest.fixture
def primary(pair: ReplicatedPair) -> Iterator[Engine]:
    """An engine on the primary."""
    engine = create_engine(pair.primary.url)
    yield engine
    engine.dispose()


@pytest.fixture
def standby(pair: ReplicatedPair) -> Iterator[Engine]:
    """An engine on the standby, failing fast if it is unreachable."""
    if pair.standby is None:
        raise RuntimeError("not started")
    engine = create_engine(pair.standby.url, connect_args={"connect_timeout": 5})
    yield engine
    engine.dispose()


def _cash_on_primary(engine: Engine, pid: UUID) -> Decimal:
    with engine.connect() as connection:
        cash = connection.execute(
            text("SELECT cash_balance FROM portfolios WHERE id = :id"), {"id": pid}
        ).scalar_one()
    return Decimal(cash)


def _replicated_portfolio(pair: ReplicatedPair, store: PortfolioStore, cash: str) -> UUID:
    pid = store.create_portfolio("replicated", Decimal(cash))
    wait_for_replay(pair, primary_insert_lsn(pair))
    return pid


def test_a_read_after_the_store_s_own_commit_sees_it_under_paused_replay(
    pair: ReplicatedPair, primary: Engine, standby: Engine
) -> None:
    store = PortfolioStore(primary, read_engines=[standby], read_policy=POLICY)
    pid = _replicated_portfolio(pair, store, "100")
    assert store.get(pid).cash_balance == Decimal("100")
    assert store.reads is not None
    assert store.reads.metrics()["standby_reads"] == 1

    with replay_paused(pair):
        store.execute(pid, lambda p: p.deposit(Decimal("5")))

        assert store.get(pid).cash_balance == Decimal("105")  # the standby can not show it
        assert [e.version for e in store.history(pid)] == [1, 2]
        assert store.replay(pid).cash_balance == Decimal("105")
        assert store.reads.metrics()["primary_reads"] == 3

    wait_for_replay(pair, str(store.last_commit_token()))
    assert store.get(pid).cash_balance == Decimal("105")
    assert store.reads.metrics()["standby_reads"] == 2


def test_without_a_token_a_read_may_be_stale_and_a_token_from_elsewhere_makes_it_fresh(
    pair: ReplicatedPair, primary: Engine, standby: Engine
) -> None:
    writer = PortfolioStore(primary)  # another process: no read engines
    pid = _replicated_portfolio(pair, writer, "100")
    reader = PortfolioStore(primary, read_engines=[standby], read_policy=POLICY)

    with replay_paused(pair):
        writer.execute(pid, lambda p: p.deposit(Decimal("7")))
        token = str(writer.last_commit_token())  # as sent along in an HTTP header

        assert reader.get(pid).cash_balance == Decimal("100")  # stale: the standby's
        assert len(reader.history(pid)) == 1
        assert reader.reads is not None
        assert reader.reads.metrics()["standby_reads"] == 2

        assert reader.get(pid, read_token=token).cash_balance == Decimal("107")
        assert len(reader.history(pid, read_token=ReadToken.parse(token))) == 2
        assert reader.reads.metrics()["primary_reads"] == 2

    wait_for_replay(pair, token)
    assert reader.get(pid, read_token=token).cash_balance == Decimal("107")
    assert reader.reads.metrics()["standby_reads"] == 3


def test_a_commit_through_the_store_s_unit_of_work_is_read_back(
    pair: ReplicatedPair, primary: Engine, standby: Engine
) -> None:
    pid = _replicated_portfolio(pair, PortfolioStore(primary), "100")
    store = PortfolioStore(primary, read_engines=[standby], read_policy=POLICY)

    with replay_paused(pair):
        with store.unit_of_work() as uow:  # the store's first commit
            uow.portfolios.get_portfolio_for_update(pid).deposit(Decimal("2"))
            uow.commit()

        assert store.get(pid).cash_balance == Decimal("102")
        assert store.reads is not None
        assert store.reads.metrics()["primary_reads"] == 1


def test_a_standby_lagging_beyond_the_bound_is_not_read(
    pair: ReplicatedPair, primary: Engine, standby: Engine
) -> None:
    writer = PortfolioStore(primary)
    pid = _replicated_portfolio(pair, writer, "100")
    reader = PortfolioStore(primary, read_engines=[standby], read_policy=ReadPolicy(max_lag=0.0))

    with replay_paused(pair):
        writer.execute(pid, lambda p: p.deposit(Decimal("1")))
        wait_for_receipt(pair, primary_insert_lsn(pair))  # received, not replayed: lagging

        assert reader.get(pid).cash_balance == Decimal("101")
        assert reader.reads is not None
        assert reader.reads.metrics() == {
            "standby_reads": 0,
            "primary_reads": 1,
            "standby_failures": 1,
        }


def test_a_stale_standby_never_causes_a_lost_update(
    pair: ReplicatedPair, primary: Engine, standby: Engine
) -> None:
    writer = PortfolioStore(primary)
    pid = _replicated_portfolio(pair, writer, "100")
    other = _replicated_portfolio(pair, writer, "0")
    store = PortfolioStore(primary, read_engines=[standby], read_policy=POLICY)

    with replay_paused(pair):
        writer.execute(pid, lambda p: p.deposit(Decimal("50")))
        stale = PortfolioStore(primary, read_engines=[standby], read_policy=POLICY).get(pid)
        assert stale.cash_balance == Decimal("100")  # the standby still shows the old row

        for lock in ("optimistic", "nowait", "wait"):
            store.execute(pid, lambda p: p.deposit(Decimal("1")), lock=lock)
        store.transfer(pid, other, Decimal("3"))
        with store.unit_of_work() as uow:
            loaded = uow.portfolios.get_portfolio_for_update(pid)
            port = uow.session.execute(text("SELECT inet_server_port()")).scalar_one()
            assert (loaded.cash_balance, port) == (Decimal("150"), pair.primary.port)

        with store.unit_of_work() as uow, pytest.raises(StaleDataException):
            uow.portfolios.update_portfolio(stale)  # a standby's copy fails the version check

    assert _cash_on_primary(primary, pid) == Decimal("150")
    assert _cash_on_primary(primary, other) == Decimal("3")


def test_an_entity_lock_taken_through_the_store_excludes_on_the_primary(
    pair: ReplicatedPair, primary: Engine, standby: Engine
) -> None:
    store = PortfolioStore(primary, read_engines=[standby], read_policy=POLICY)
    pid = _replicated_portfolio(pair, store, "1")
    rival = PortfolioStore(primary, read_engines=[standby], read_policy=POLICY)
    if pair.standby is None:
        raise RuntimeError("not started")

    with store.concurrency.entity_lock("Portfolio", pid):
        with (
            pytest.raises(PessimisticLockException),
            rival.concurrency.entity_lock("Portfolio", pid, timeout=0),
        ):
            pass
        # Why it must be the primary: the same lock taken on the standby succeeds.
        on_standby = psycopg2.connect(pair.standby.url)
        try:
            with on_standby.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_try_advisory_xact_lock(%s)", (advisory_key("Portfolio", pid),)
                )
                assert (cursor.fetchone() or [None])[0] is True
        finally:
            on_standby.close()


def test_async_store_reads_its_writes_and_serves_stale_reads_from_the_standby(
    pair: ReplicatedPair, primary: Engine
) -> None:
    writer = PortfolioStore(primary)
    pid = _replicated_portfolio(pair, writer, "100")
    if pair.standby is None:
        raise RuntimeError("not started")
    standby_url = pair.standby.url

    async def scenario() -> None:
        engine = create_async_engine(pair.primary.url)
        standby = create_async_engine(standby_url, connect_args={"timeout": 5})
        try:
            store = AsyncPortfolioStore(engine, read_engines=[standby], read_policy=POLICY)
            reader = AsyncPortfolioStore(engine, read_engines=[standby], read_policy=POLICY)
            with replay_paused(pair):
                await store.execute(pid, lambda p: p.deposit(Decimal("5")))
                assert (await store.get(pid)).cash_balance == Decimal("105")
                assert (await reader.get(pid)).cash_balance == Decimal("100")  # stale
                token = await store.last_commit_token()
                fresh = await reader.history(pid, read_token=str(token))
                assert len(fresh) == 2
                async with store.unit_of_work() as uow:
                    locked = await uow.portfolios.get_portfolio_for_update(pid, nowait=False)
                    locked.deposit(Decimal("1"))
                    await uow.commit()
                assert (await store.replay(pid)).cash_balance == Decimal("106")
            assert store.reads is not None
            assert reader.reads is not None
            assert store.reads.metrics()["primary_reads"] == 2
            assert reader.reads.metrics() == {
                "standby_reads": 1,
                "primary_reads": 1,
                "standby_failures": 0,
            }
        finally:
            await standby.dispose()
            await engine.dispose()

    asyncio.run(scenario())
    assert _cash_on_primary(primary, pid) == Decimal("106")


def test_the_readme_read_replicas_blocks_run_against_the_pair(
    pair: ReplicatedPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pair.standby is None:
        raise RuntimeError("not started")
    monkeypatch.setenv("PORTFOLIO_CORE_DATABASE_URL", pair.primary.url)
    monkeypatch.setenv("STANDBY_URL", pair.standby.url)
    blocks = section_blocks("Read replicas")
    assert blocks
    namespace = run_section(blocks)
    for name in ("engine", "standby"):
        engine = namespace[name]
        if isinstance(engine, Engine):
            engine.dispose()


# -- the standby stopped: the last tests of the module --------------------------


def test_with_the_standby_stopped_reads_still_succeed(
    pair: ReplicatedPair, primary: Engine, standby: Engine
) -> None:
    store = PortfolioStore(primary, read_engines=[standby], read_policy=POLICY)
    pid = _replicated_portfolio(pair, store, "100")
    assert store.get(pid).cash_balance == Decimal("100")  # a pooled connection to it, too
    if pair.standby is None:
        raise RuntimeError("not started")

    pair.standby.stop(remove=False)

    assert store.get(pid).cash_balance == Decimal("100")
    assert len(store.history(pid)) == 1
    assert store.replay(pid).cash_balance == Decimal("100")
    store.execute(pid, lambda p: p.deposit(Decimal("1")))
    assert store.get(pid).cash_balance == Decimal("101")
    assert store.reads is not None
    # Tried once, then left alone: not hammered on every read.
    assert store.reads.metrics() == {
        "standby_reads": 1,
        "primary_reads": 4,
        "standby_failures": 1,
    }


def test_with_the_standby_stopped_async_reads_still_succeed(
    pair: ReplicatedPair, primary: Engine
) -> None:
    pid = PortfolioStore(primary).create_portfolio("after the standby", Decimal("9"))
    if pair.standby is None:
        raise RuntimeError("not started")
    assert not pair.standby.running
    standby_url = pair.standby.url

    async def scenario() -> dict[str, int]:
        engine = create_async_engine(pair.primary.url)
        standby: AsyncEngine = create_async_engine(standby_url, connect_args={"timeout": 5})
        try:
            store = AsyncPortfolioStore(engine, read_engines=[standby], read_policy=POLICY)
            assert (await store.get(pid)).cash_balance == Decimal("9")
            assert len(await store.history(pid)) == 1
            assert store.reads is not None
            return store.reads.metrics()
        finally:
            await standby.dispose()
            await engine.dispose()

    assert asyncio.run(scenario()) == {
        "standby_reads": 0,
        "primary_reads": 2,
        "standby_failures": 1,
    }
