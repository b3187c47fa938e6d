"""A COMMIT lost on the asyncpg path: resolved through the idempotency key, never retried blindly.

The same commit-losing TCP proxy as the sync tests (it recognises asyncpg's
``COMMIT;``); what really committed is read on a direct connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from uuid import UUID

import pytest
import pytest_asyncio
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from portfolio_core import (
    AsyncPortfolioStore,
    CommitOutcomeUnknownException,
    ConcurrencyService,
    Portfolio,
    create_async_engine,
)
from tests.integration.tcp_proxy import CommitLosingProxy

pytestmark = pytest.mark.asyncio


@pytest.fixture
def proxy(database_url: str) -> Iterator[CommitLosingProxy]:
    url = make_url(database_url)
    with CommitLosingProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest_asyncio.fixture
async def proxied_store(
    database_url: str, proxy: CommitLosingProxy, no_sleep: list[float]
) -> AsyncIterator[AsyncPortfolioStore]:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    proxied = create_async_engine(url, pool_size=2, max_overflow=2)
    try:
        yield AsyncPortfolioStore(
            proxied, ConcurrencyService(proxied, max_retries=3, sleep=no_sleep.append)
        )
    finally:
        await proxied.dispose()


def _deposit_250(portfolio: Portfolio) -> Decimal:
    portfolio.deposit(Decimal("250"))
    return portfolio.cash_balance


def _committed(engine: Engine, pid: UUID) -> tuple[int, Decimal, int]:
    """(version, cash_balance, number of events), read on a direct connection."""
    with engine.connect() as connection:
        version, cash = connection.execute(
            text("SELECT version, cash_balance FROM portfolios WHERE id = :id"), {"id": pid}
        ).one()
        events = connection.execute(
            text("SELECT count(*) FROM portfolio_events WHERE portfolio_id = :id"), {"id": pid}
        ).scalar_one()
    return version, cash, events


async def test_lost_commit_reply_with_key_returns_the_stored_result_and_applies_once(
    proxied_store: AsyncPortfolioStore, proxy: CommitLosingProxy, engine: Engine
) -> None:
    pid = await proxied_store.create_portfolio("alpha", Decimal("1000"))
    proxy.arm()

    result = await proxied_store.execute(pid, _deposit_250, idempotency_key="deposit-1")

    assert proxy.commit_lost.is_set()
    assert result == Decimal("1250")
    assert _committed(engine, pid) == (2, Decimal("1250"), 2)


async def test_lost_commit_reply_without_key_raises_outcome_unknown_and_does_not_retry(
    proxied_store: AsyncPortfolioStore, proxy: CommitLosingProxy, engine: Engine
) -> None:
    pid = await proxied_store.create_portfolio("alpha", Decimal("1000"))
    proxy.arm()

    with pytest.raises(CommitOutcomeUnknownException) as raised:
        await proxied_store.execute(pid, _deposit_250)

    assert proxy.commit_lost.is_set()
    assert raised.value.idempotency_key is None
    assert _committed(engine, pid) == (2, Decimal("1250"), 2)


async def test_lost_commit_that_never_reached_the_server_is_retried_through_the_key(
    proxied_store: AsyncPortfolioStore, proxy: CommitLosingProxy, engine: Engine
) -> None:
    pid = await proxied_store.create_portfolio("alpha", Decimal("1000"))
    proxy.arm(forward_commit=False)

    result = await proxied_store.execute(pid, _deposit_250, idempotency_key="deposit-2")

    assert proxy.commit_lost.is_set()
    assert result == Decimal("1250")
    assert _committed(engine, pid) == (2, Decimal("1250"), 2)


async def test_lost_commit_with_database_unreachable_raises_outcome_unknown_carrying_the_key(
    proxied_store: AsyncPortfolioStore, proxy: CommitLosingProxy, engine: Engine
) -> None:
    pid = await proxied_store.create_portfolio("alpha", Decimal("1000"))
    proxy.arm(refuse_after=True)

    with pytest.raises(CommitOutcomeUnknownException) as raised:
        await proxied_store.execute(pid, _deposit_250, idempotency_key="deposit-3")

    assert raised.value.idempotency_key == "deposit-3"
    assert _committed(engine, pid) == (2, Decimal("1250"), 2)
