"""A COMMIT whose reply is lost: resolved through the idempotency key, never retried blindly.

Contract cases, run for the sync (psycopg2) and the async (asyncpg) flavour.
A TCP proxy (tests/integration/tcp_proxy.py) between the store and PostgreSQL
loses exactly one COMMIT (or its reply) when armed; it recognises both
drivers' COMMIT. Every check of what really happened is made on a direct
connection, not through the proxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from uuid import UUID

import pytest
import pytest_asyncio
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from portfolio_core import CommitOutcomeUnknownException, Portfolio
from tests.integration.contract_api import Flavour, open_flavour
from tests.integration.tcp_proxy import CommitLosingProxy

pytestmark = pytest.mark.asyncio


@pytest.fixture
def proxy(database_url: str) -> Iterator[CommitLosingProxy]:
    url = make_url(database_url)
    with CommitLosingProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest_asyncio.fixture
async def proxied(
    flavour: Flavour, database_url: str, proxy: CommitLosingProxy, no_sleep: list[float]
) -> AsyncIterator[Flavour]:
    """The same flavour as ``flavour``, connected through the proxy, with 3 retries."""
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    async with open_flavour(
        flavour.name,
        url,
        no_sleep.append,
        max_retries=3,
        **{**flavour.engine_options, "pool_size": 2, "max_overflow": 2},
    ) as opened:
        yield opened


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
    proxied: Flavour, proxy: CommitLosingProxy, engine: Engine
) -> None:
    pid = await proxied.store.create_portfolio("alpha", Decimal("1000"))
    proxy.arm()

    result = await proxied.store.execute(pid, _deposit_250, idempotency_key="deposit-1")

    assert proxy.commit_lost.is_set()
    assert result == Decimal("1250")
    assert _committed(engine, pid) == (2, Decimal("1250"), 2)


async def test_lost_commit_reply_without_key_raises_outcome_unknown_and_does_not_retry(
    proxied: Flavour, proxy: CommitLosingProxy, engine: Engine
) -> None:
    pid = await proxied.store.create_portfolio("alpha", Decimal("1000"))
    proxy.arm()

    with pytest.raises(CommitOutcomeUnknownException) as raised:
        await proxied.store.execute(pid, _deposit_250)

    assert proxy.commit_lost.is_set()
    assert raised.value.idempotency_key is None
    assert _committed(engine, pid) == (2, Decimal("1250"), 2)


async def test_lost_commit_that_never_reached_the_server_is_retried_through_the_key(
    proxied: Flavour, proxy: CommitLosingProxy, engine: Engine
) -> None:
    pid = await proxied.store.create_portfolio("alpha", Decimal("1000"))
    proxy.arm(forward_commit=False)

    result = await proxied.store.execute(pid, _deposit_250, idempotency_key="deposit-2")

    assert proxy.commit_lost.is_set()
    assert result == Decimal("1250")
    assert _committed(engine, pid) == (2, Decimal("1250"), 2)


async def test_lost_commit_with_database_unreachable_raises_outcome_unknown_carrying_the_key(
    proxied: Flavour, proxy: CommitLosingProxy, engine: Engine, flavour: Flavour
) -> None:
    pid = await proxied.store.create_portfolio("alpha", Decimal("1000"))
    proxy.arm(refuse_after=True)

    with pytest.raises(CommitOutcomeUnknownException) as raised:
        await proxied.store.execute(pid, _deposit_250, idempotency_key="deposit-3")

    assert raised.value.idempotency_key == "deposit-3"
    assert _committed(engine, pid) == (2, Decimal("1250"), 2)
    # Later, with the database back (a direct store), the same key resolves to the committed result.
    assert await flavour.store.execute(pid, _deposit_250, idempotency_key="deposit-3") == Decimal(
        "1250"
    )
    assert _committed(engine, pid) == (2, Decimal("1250"), 2)


async def test_lost_commit_reply_of_a_keyed_transfer_applies_it_once(
    proxied: Flavour, proxy: CommitLosingProxy, engine: Engine
) -> None:
    source = await proxied.store.create_portfolio("source", Decimal("1000"))
    target = await proxied.store.create_portfolio("target", Decimal("0"))
    proxy.arm()

    await proxied.store.transfer(source, target, Decimal("400"), idempotency_key="transfer-1")

    assert proxy.commit_lost.is_set()
    assert _committed(engine, source) == (2, Decimal("600"), 2)
    assert _committed(engine, target) == (2, Decimal("400"), 2)
