"""PgBouncer in transaction mode: the switch, the loud default, the classification.

``database_url`` is this test's database through the session's PgBouncer
(tests/topology/conftest.py), checked for leftover session state after each test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from portfolio_core import (
    AsyncPortfolioStore,
    ConcurrencyService,
    ConfigurationError,
    PortfolioStore,
    create_async_engine,
    create_engine,
)
from portfolio_core.persistence.errors import sqlstate_of
from tests.topology.leaks import assert_no_session_state
from tests.topology.servers import PgBouncer

DEPOSITS = 60


def test_the_async_engine_refuses_a_pooler_it_was_not_told_about(database_url: str) -> None:
    async def use() -> None:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    with pytest.raises(ConfigurationError, match="transaction_pooler=True"):
        asyncio.run(use())


def test_sixty_concurrent_async_deposits_through_the_pooler_all_apply(database_url: str) -> None:
    async def deposit_concurrently() -> Decimal:
        engine = create_async_engine(database_url, transaction_pooler=True)
        store = AsyncPortfolioStore(engine, ConcurrencyService(engine, max_retries=10))
        try:
            pid = await store.create_portfolio("busy", 0)
            await asyncio.gather(
                *(store.execute(pid, lambda p: p.deposit(1), lock="wait") for _ in range(DEPOSITS))
            )
            return (await store.get(pid)).cash_balance
        finally:
            await engine.dispose()

    assert asyncio.run(deposit_concurrently()) == DEPOSITS


def test_sixty_concurrent_sync_deposits_through_the_pooler_all_apply(database_url: str) -> None:
    # psycopg2 prepares nothing on the server: the default engine is right as it is.
    engine = create_engine(database_url)
    store = PortfolioStore(engine, ConcurrencyService(engine, max_retries=10))
    pid = store.create_portfolio("busy", 0)
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(
            pool.map(
                lambda _: store.execute(pid, lambda p: p.deposit(1), lock="wait"), range(DEPOSITS)
            )
        )
    assert store.get(pid).cash_balance == DEPOSITS
    engine.dispose()


@pytest.fixture
def small_pool(postgres_server_url: str) -> Iterator[PgBouncer]:
    """A PgBouncer with at most two server connections per database."""
    with PgBouncer(postgres_server_url, pool_size=2) as bouncer:
        yield bouncer


def test_a_statement_clash_is_a_configuration_error_never_retried(
    database_url: str, small_pool: PgBouncer
) -> None:
    """Told "no pooler" (False), asyncpg reuses a statement on a server connection without it."""
    url = small_pool.url(make_url(database_url).database or "")
    dsn = make_url(url).render_as_string(hide_password=False)

    async def statement_moves_to_another_server() -> None:
        engine = create_async_engine(url, transaction_pooler=False, pool_size=1, max_overflow=0)
        store = AsyncPortfolioStore(engine, ConcurrencyService(engine, max_retries=3))
        holder = psycopg2.connect(dsn)
        try:
            pid = await store.create_portfolio("alpha", 1)
            await store.get(pid)  # its statements are prepared (and cached) on server one
            with holder.cursor() as cursor:
                cursor.execute("SELECT 1")  # a transaction holds server one now
            await store.get(pid)  # the cached statements, sent to server two
        finally:
            holder.close()
            await engine.dispose()

    with pytest.raises(ConfigurationError, match="transaction_pooler=True") as raised:
        asyncio.run(statement_moves_to_another_server())
    assert sqlstate_of(raised.value.__cause__ or raised.value) in ("42P05", "26000")


def test_the_session_state_check_sees_what_a_client_leaves(
    database_url: str, direct_database_url: str
) -> None:
    """The check the other tests rely on: a session setting and a named statement are found."""
    dsn = make_url(database_url).render_as_string(hide_password=False)
    leaving = psycopg2.connect(dsn)
    with leaving.cursor() as cursor:
        cursor.execute("SET lock_timeout = '5s'")
        cursor.execute("PREPARE left_behind AS SELECT 1")
    leaving.commit()
    leaving.close()
    with pytest.raises(AssertionError, match="session state left"):
        assert_no_session_state(database_url, direct_database_url)
    # Clean up for the fixture's own check: the server connections go.
    direct = psycopg2.connect(make_url(direct_database_url).render_as_string(hide_password=False))
    direct.autocommit = True
    with direct.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    direct.close()
