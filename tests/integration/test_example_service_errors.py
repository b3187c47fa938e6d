"""The example service's error answers over HTTP: 404, 409, 412, 422, and 503 + Retry-After.

Each case runs on a fresh app and database and checks that the refused
request changed nothing. The error table itself, case by case, is tested in
tests/unit/test_example_service_mapping.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from examples.portfolio_service import create_app
from portfolio_core import PortfolioStore, RetryPolicy, create_async_engine
from tests.integration.example_server import calls, create_portfolio, no_sleep, scrape, serving
from tests.integration.helpers import row_locked
from tests.integration.tcp_proxy import CommitLosingProxy

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The service on this test's database (default retry policy, no backoff waits)."""
    app = create_app(database_url, policy=RetryPolicy(async_sleep=no_sleep))
    async with serving(app) as http:
        yield http


@pytest.mark.parametrize(
    ("method", "path", "payload", "headers", "status", "error"),
    [
        ("get", "/portfolios/{unknown}", None, {}, 404, "portfolio_not_found"),
        ("post", "/portfolios/{unknown}/deposits", {"amount": "1"}, {}, 404, "portfolio_not_found"),
        (
            "post",
            "/transfers",
            {"from_id": "{pid}", "to_id": "{unknown}", "amount": "1"},
            {},
            404,
            "portfolio_not_found",
        ),
        (
            "post",
            "/portfolios/{pid}/positions/MSFT/close",
            {"exit_price": "1"},
            {},
            404,
            "position_not_found",
        ),
        (
            "post",
            "/portfolios/{pid}/withdrawals",
            {"amount": "100.01"},
            {},
            409,
            "insufficient_funds",
        ),
        (
            "post",
            "/portfolios/{pid}/positions",
            {"symbol": "AAPL", "quantity": "2", "entry_price": "50.01"},
            {},
            409,
            "insufficient_funds",
        ),
        (
            "post",
            "/transfers",
            {"from_id": "{pid}", "to_id": "{pid}", "amount": "1"},
            {},
            422,
            "validation",
        ),
        ("post", "/portfolios/{pid}/deposits", {"amount": 1.5}, {}, 422, "validation"),
        ("post", "/portfolios/{pid}/deposits", {"amount": "NaN"}, {}, 422, "validation"),
        ("post", "/portfolios/{pid}/deposits", {"amount": "1e400"}, {}, 422, "validation"),
        ("post", "/portfolios/{pid}/deposits", {"amount": "0.000000001"}, {}, 422, "validation"),
        ("post", "/portfolios/{pid}/deposits", {"amount": "-5"}, {}, 422, "validation"),
        ("post", "/portfolios/{pid}/deposits", {"amount": "1", "x": 1}, {}, 422, "validation"),
        ("post", "/portfolios/not-a-uuid/deposits", {"amount": "1"}, {}, 422, "validation"),
        (
            "post",
            "/portfolios/{pid}/deposits",
            {"amount": "1"},
            {"If-Match": "W/1"},
            422,
            "validation",
        ),
        (
            "post",
            "/portfolios/{pid}/deposits",
            {"amount": "1"},
            {"Idempotency-Key": "k" * 201},
            422,
            "validation",
        ),
        (
            "post",
            "/portfolios/{pid}/positions",
            {"symbol": "bad symbol", "quantity": "1", "entry_price": "1"},
            {},
            422,
            "validation",
        ),
        (
            "post",
            "/portfolios",
            {"name": "beta", "cash_balance": "1"},
            {"Idempotency-Key": "create-1"},
            422,
            "validation",
        ),
    ],
)
async def test_errors_are_mapped_to_statuses_and_change_nothing(
    client: httpx.AsyncClient,
    store: PortfolioStore,
    method: str,
    path: str,
    payload: dict[str, Any] | None,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    pid = await create_portfolio(client, "100")
    names = {"pid": pid, "unknown": str(uuid4())}
    if payload is not None:
        payload = {k: v.format(**names) if isinstance(v, str) else v for k, v in payload.items()}

    response = await client.request(method, path.format(**names), json=payload, headers=headers)

    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    stored = store.get(UUID(pid))
    assert (stored.cash_balance, stored.version) == (Decimal("100"), 1)


async def test_a_row_lock_outlasting_the_retries_is_503_with_retry_after(
    database_url: str, engine: Engine, store: PortfolioStore
) -> None:
    # Each attempt waits 10 ms for the row lock another transaction holds for the
    # whole request: both attempts fail, whatever the timing (no retry can win).
    policy = RetryPolicy(max_retries=1, wait_lock_timeout=0.01, async_sleep=no_sleep)
    async with serving(create_app(database_url, policy=policy, retry_after_seconds=2)) as client:
        pid = await create_portfolio(client, "100")
        key = {"Idempotency-Key": "deposit-under-lock"}
        with row_locked(engine, UUID(pid)):
            busy = await client.post(
                f"/portfolios/{pid}/deposits", json={"amount": "5"}, headers=key
            )

        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "2"
        assert busy.json()["error"] == "contention"
        assert store.get(UUID(pid)).cash_balance == Decimal("100")
        # What a client does with a 503: the same request, same key, later.
        later = await client.post(f"/portfolios/{pid}/deposits", json={"amount": "5"}, headers=key)
        assert later.status_code == 200
        assert store.get(UUID(pid)).cash_balance == Decimal("105")
        samples = await scrape(client)
    assert samples[calls("execute", "retries_exhausted")] == 1
    assert samples[calls("execute", "ok")] == 1
    retried = frozenset({("operation", "execute"), ("cause", "lock_not_available")})
    assert samples[("portfolio_core_retries_total", retried)] == 1


async def test_a_pool_with_no_connection_free_is_503_with_retry_after(database_url: str) -> None:
    # One pooled connection, held by the test for the whole request: the
    # request's checkout times out (100 ms), whatever the timing.
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        async with serving(create_app(engine)) as client:
            pid = await create_portfolio(client, "100")
            async with engine.connect():
                busy = await client.post(f"/portfolios/{pid}/deposits", json={"amount": "5"})
            fetched = await client.get(f"/portfolios/{pid}")

        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "1"
        assert busy.json()["error"] == "database_unavailable"
        assert (fetched.json()["cash_balance"], fetched.headers["ETag"]) == ("100", '"1"')
        # The app leaves an engine it was given to its owner: still usable.
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_a_lost_commit_is_503_outcome_unknown_and_the_same_key_later_learns_it(
    database_url: str, store: PortfolioStore
) -> None:
    url = make_url(database_url)
    policy = RetryPolicy(max_retries=1, async_sleep=no_sleep)
    payload, key = {"amount": "250"}, {"Idempotency-Key": "deposit-lost"}
    with CommitLosingProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        async with serving(create_app(proxied, policy=policy)) as client:
            pid = await create_portfolio(client, "1000")
            # COMMIT reaches the server, its reply is dropped, then the database
            # looks unreachable: the service can not learn the outcome.
            proxy.arm(refuse_after=True)
            lost = await client.post(f"/portfolios/{pid}/deposits", json=payload, headers=key)

    assert proxy.commit_lost.is_set()
    assert lost.status_code == 503
    assert lost.headers["Retry-After"] == "1"
    assert lost.json()["error"] == "outcome_unknown"
    assert store.get(UUID(pid)).cash_balance == Decimal("1250")  # it had committed
    # Later, the database reachable again: the same request learns the outcome.
    async with serving(create_app(database_url, policy=policy)) as client:
        later = await client.post(f"/portfolios/{pid}/deposits", json=payload, headers=key)
    assert later.status_code == 200
    assert (later.json()["cash_balance"], later.headers["ETag"]) == ("1250", '"2"')
    stored = store.get(UUID(pid))
    assert (stored.cash_balance, stored.version) == (Decimal("1250"), 2)
