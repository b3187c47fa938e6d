"""The example service (examples/portfolio_service) over HTTP: uvicorn on 127.0.0.1, httpx.

Each test serves a fresh app on its own database (the ``database_url``
fixture) and checks what a client sees, then what the database holds. Its
error answers are tested in test_example_service_errors.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine

from examples.portfolio_service import create_app
from portfolio_core import PortfolioStore, RetryPolicy
from tests.integration.example_server import calls, create_portfolio, no_sleep, scrape, serving
from tests.integration.helpers import row_locked, wait_until_blocked

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The service on this test's database (default retry policy, no backoff waits)."""
    app = create_app(database_url, policy=RetryPolicy(async_sleep=no_sleep))
    async with serving(app) as http:
        yield http


async def test_create_answers_201_with_location_and_etag_and_get_answers_the_same(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/portfolios", json={"name": "alpha", "cash_balance": "1000.50"})

    assert created.status_code == 201
    body = created.json()
    assert created.headers["ETag"] == '"1"'
    assert created.headers["Location"] == f"/portfolios/{body['id']}"
    assert body == {
        "id": body["id"],
        "name": "alpha",
        "version": 1,
        "cash_balance": "1000.5",
        "realized_pnl": "0",
        "positions": [],
    }
    fetched = await client.get(created.headers["Location"])
    assert fetched.status_code == 200
    assert fetched.headers["ETag"] == '"1"'
    assert fetched.json() == body


async def test_each_change_answers_the_version_it_committed_as_etag(
    client: httpx.AsyncClient, store: PortfolioStore
) -> None:
    pid = await create_portfolio(client, "1000")
    steps: list[tuple[str, dict[str, Any]]] = [
        (f"/portfolios/{pid}/deposits", {"amount": "250.25"}),
        (f"/portfolios/{pid}/withdrawals", {"amount": "50"}),
        (
            f"/portfolios/{pid}/positions",
            {"symbol": "AAPL", "quantity": "10", "entry_price": "100"},
        ),
        (f"/portfolios/{pid}/positions/AAPL/close", {"exit_price": "110", "quantity": "4"}),
    ]
    etag = '"1"'
    bodies = []
    for path, payload in steps:
        response = await client.post(path, json=payload, headers={"If-Match": etag})
        assert response.status_code == 200, response.text
        bodies.append(response.json())
        assert response.headers["ETag"] == f'"{response.json()["version"]}"'
        etag = response.headers["ETag"]

    assert [b["version"] for b in bodies] == [2, 3, 4, 5]
    assert [b["cash_balance"] for b in bodies] == ["1250.25", "1200.25", "200.25", "640.25"]
    assert bodies[-1]["realized_profit"] == "40"
    assert bodies[-1]["realized_pnl"] == "40"
    assert bodies[-1]["positions"] == [
        {
            "symbol": "AAPL",
            "quantity": "6",
            "cost_basis": "600",
            "current_price": "110",
            "market_value": "660",
        }
    ]
    fetched = await client.get(f"/portfolios/{pid}")
    assert fetched.headers["ETag"] == '"5"'
    assert {k: v for k, v in bodies[-1].items() if k != "realized_profit"} == fetched.json()
    stored = store.get(UUID(pid))
    assert (stored.version, stored.cash_balance) == (5, Decimal("640.25"))


async def test_a_stale_if_match_is_412_with_the_current_etag_and_changes_nothing(
    client: httpx.AsyncClient, store: PortfolioStore
) -> None:
    pid = await create_portfolio(client, "100")
    first = await client.post(
        f"/portfolios/{pid}/deposits", json={"amount": "5"}, headers={"If-Match": '"1"'}
    )
    assert first.status_code == 200

    stale = await client.post(
        f"/portfolios/{pid}/deposits", json={"amount": "7"}, headers={"If-Match": '"1"'}
    )

    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"2"'
    assert stale.json()["error"] == "version_mismatch"
    assert store.get(UUID(pid)).cash_balance == Decimal("105")
    fresh = await client.post(
        f"/portfolios/{pid}/deposits", json={"amount": "7"}, headers={"If-Match": '"2"'}
    )
    assert (fresh.status_code, fresh.headers["ETag"]) == (200, '"3"')
    assert store.get(UUID(pid)).cash_balance == Decimal("112")


async def test_a_repeated_key_with_the_same_body_gets_the_same_response_applied_once(
    client: httpx.AsyncClient, store: PortfolioStore
) -> None:
    pid = await create_portfolio(client, "100")
    key = {"Idempotency-Key": "deposit-1"}
    first = await client.post(f"/portfolios/{pid}/deposits", json={"amount": "10"}, headers=key)
    # Another change in between: the repeat still answers what the first request committed.
    other = await client.post(f"/portfolios/{pid}/deposits", json={"amount": "1"})
    assert other.status_code == 200

    again = await client.post(
        f"/portfolios/{pid}/deposits",
        json={"amount": "10.00"},  # the same amount, written differently
        headers={**key, "If-Match": '"1"'},  # stale now; a committed key's result wins
    )

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.content == first.content  # the same bytes, not only the same JSON
    assert again.headers["ETag"] == first.headers["ETag"] == '"2"'
    stored = store.get(UUID(pid))
    assert (stored.cash_balance, stored.version) == (Decimal("111"), 3)


async def test_a_repeated_key_with_another_body_is_422_and_changes_nothing(
    client: httpx.AsyncClient, store: PortfolioStore
) -> None:
    pid = await create_portfolio(client, "100")
    key = {"Idempotency-Key": "payment-7"}
    first = await client.post(f"/portfolios/{pid}/deposits", json={"amount": "10"}, headers=key)
    assert first.status_code == 200

    other_amount = await client.post(
        f"/portfolios/{pid}/deposits", json={"amount": "11"}, headers=key
    )
    other_endpoint = await client.post(
        f"/portfolios/{pid}/withdrawals", json={"amount": "10"}, headers=key
    )

    for response in (other_amount, other_endpoint):
        assert response.status_code == 422
        assert response.json()["error"] == "idempotency_key_reused"
    stored = store.get(UUID(pid))
    assert (stored.cash_balance, stored.version) == (Decimal("110"), 2)


async def test_a_transfer_moves_cash_once_per_key(
    client: httpx.AsyncClient, store: PortfolioStore
) -> None:
    source, target = (
        await create_portfolio(client, "100"),
        await create_portfolio(client, "0", "beta"),
    )
    payload = {"from_id": source, "to_id": target, "amount": "30.50"}
    key = {"Idempotency-Key": "transfer-1"}

    first = await client.post("/transfers", json=payload, headers=key)
    again = await client.post("/transfers", json=payload, headers=key)
    other = await client.post("/transfers", json={**payload, "amount": "1"}, headers=key)

    assert (first.status_code, again.status_code, other.status_code) == (200, 200, 422)
    assert first.json() == again.json() == {"from_id": source, "to_id": target, "amount": "30.5"}
    assert store.get(UUID(source)).cash_balance == Decimal("69.5")
    assert store.get(UUID(target)).cash_balance == Decimal("30.5")


async def test_fifty_concurrent_keyed_requests_are_each_applied_exactly_once(
    client: httpx.AsyncClient, engine: Engine, store: PortfolioStore
) -> None:
    pids = [await create_portfolio(client, "1000", f"p{i}") for i in range(3)]
    requests: dict[str, tuple[str, dict[str, str]]] = {}
    for n in range(50):
        if n % 5 == 4:  # 10 transfers around the three portfolios
            payload = {"from_id": pids[n % 3], "to_id": pids[(n + 1) % 3], "amount": f"{n}.25"}
            requests[f"transfer-{n}"] = ("/transfers", payload)
        else:  # 40 deposits
            requests[f"deposit-{n}"] = (
                f"/portfolios/{pids[n % 3]}/deposits",
                {"amount": f"{n}.01"},
            )
    doubled = [key for n, key in enumerate(requests) if n % 4 == 0]  # 13 keys sent twice
    sends = [*requests, *doubled]

    async def send(key: str) -> httpx.Response:
        path, payload = requests[key]
        return await client.post(path, json=payload, headers={"Idempotency-Key": key})

    # The portfolios' rows are locked until requests queue behind them, so the
    # requests (twins included) meet in the database, not one after another.
    with row_locked(engine, *map(UUID, pids)):
        tasks = [asyncio.create_task(send(key)) for key in sends]
        await asyncio.to_thread(wait_until_blocked, engine)
    responses = await asyncio.gather(*tasks)

    assert [r.status_code for r in responses] == [200] * len(sends), [r.text for r in responses]
    answers = dict(zip(requests, responses, strict=False))  # the first send of each key
    for key, twin in zip(doubled, responses[len(requests) :], strict=True):
        assert twin.content == answers[key].content
    events = [event for pid in pids for event in store.history(UUID(pid))]
    applied = Counter(event.idempotency_key for event in events if event.idempotency_key)
    # A transfer writes one event on each of its two portfolios.
    assert applied == {key: 2 if key.startswith("transfer") else 1 for key in requests}
    deposited = sum(
        Decimal(payload["amount"]) for key, (_, payload) in requests.items() if "deposit" in key
    )
    portfolios = [store.get(UUID(pid)) for pid in pids]
    assert sum(p.cash_balance for p in portfolios) == Decimal("3000") + deposited
    for portfolio in portfolios:
        assert portfolio.version == len(store.history(portfolio.id))
        assert portfolio.money_invariant_holds()


async def test_metrics_count_the_store_calls_of_the_requests_made(
    client: httpx.AsyncClient,
) -> None:
    pid = await create_portfolio(client, "100")
    deposits = f"/portfolios/{pid}/deposits"
    assert (await client.post(deposits, json={"amount": "5"})).status_code == 200
    assert (await client.post(deposits, json={"amount": "6"})).status_code == 200
    short = await client.post(f"/portfolios/{pid}/withdrawals", json={"amount": "1000"})
    stale = await client.post(deposits, json={"amount": "1"}, headers={"If-Match": '"1"'})
    assert (short.status_code, stale.status_code) == (409, 412)

    samples = await scrape(client)

    assert samples[calls("execute", "ok")] == 2
    assert samples[calls("execute", "error:InsufficientFundsError")] == 1
    assert samples[calls("execute", "error:VersionMismatchError")] == 1
    assert samples[calls("create_portfolio", "ok")] == 1
    assert (
        samples[("portfolio_core_call_attempts_count", frozenset({("operation", "execute")}))] == 4
    )
