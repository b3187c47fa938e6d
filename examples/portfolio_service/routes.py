"""The endpoints: portfolios, cash movements, positions and transfers.

Changes run through ``AsyncPortfolioStore.execute`` with ``lock="wait"``:
concurrent requests on one portfolio queue on its row lock (bounded by the
retry policy's ``wait_lock_timeout``) instead of failing each other's
version checks. ``If-Match`` becomes ``expected_version`` and
``Idempotency-Key`` the library's ``idempotency_key``; the operation
returns the response body, so the library stores it with the key and a
repeated request gets the very same response.
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request, Response

from examples.portfolio_service.bodies import (
    CashMovement,
    ClosePosition,
    NewPortfolio,
    OpenPosition,
    Transfer,
)
from examples.portfolio_service.preconditions import etag, expected_version
from examples.portfolio_service.representation import (
    CanonicalJSONResponse,
    JSONObject,
    committed_body,
    money_text,
    portfolio_body,
)
from portfolio_core import Portfolio, PositionRequest, ValidationError
from portfolio_core.async_store import AsyncPortfolioStore


def store_of(request: Request) -> AsyncPortfolioStore:
    """The app's store, made by its lifespan."""
    store = getattr(request.app.state, "store", None)
    if not isinstance(store, AsyncPortfolioStore):
        raise RuntimeError("the app has not started: its store is made by its lifespan")
    return store


Store = Annotated[AsyncPortfolioStore, Depends(store_of)]
IfMatch = Annotated[str | None, Header(description='The ETag the change expects, e.g. "3".')]
IdempotencyKey = Annotated[
    str | None, Header(description="Repeat a request with the same key: applied once.")
]

router = APIRouter()


async def change(
    store: AsyncPortfolioStore,
    portfolio_id: UUID,
    operation: Callable[[Portfolio], JSONObject],
    if_match: str | None,
    idempotency_key: str | None,
) -> CanonicalJSONResponse:
    """Run ``operation`` (which returns the response body) and answer it with its ETag."""
    body = await store.execute(
        portfolio_id,
        operation,
        lock="wait",
        idempotency_key=idempotency_key,
        expected_version=expected_version(if_match),
    )
    return CanonicalJSONResponse(body, headers={"ETag": etag(body["version"])})


@router.post("/portfolios", status_code=201)
async def create_portfolio(
    body: NewPortfolio, store: Store, idempotency_key: IdempotencyKey = None
) -> CanonicalJSONResponse:
    """Create a portfolio: 201, its ``Location`` and ``ETag`` (version 1)."""
    if idempotency_key is not None:
        # The library keys changes of existing portfolios only: refused, not ignored.
        raise ValidationError("Idempotency-Key", idempotency_key, "is not taken by this endpoint")
    portfolio_id = await store.create_portfolio(body.name, body.cash_balance)
    portfolio = await store.get(portfolio_id)
    headers = {"Location": f"/portfolios/{portfolio_id}", "ETag": etag(portfolio.version)}
    return CanonicalJSONResponse(portfolio_body(portfolio, portfolio.version), 201, headers=headers)


@router.get("/portfolios/{portfolio_id}")
async def get_portfolio(portfolio_id: UUID, store: Store) -> CanonicalJSONResponse:
    """The portfolio and its open positions; ``ETag`` is its version."""
    portfolio = await store.get(portfolio_id)
    return CanonicalJSONResponse(
        portfolio_body(portfolio, portfolio.version), headers={"ETag": etag(portfolio.version)}
    )


@router.post("/portfolios/{portfolio_id}/deposits")
async def deposit(
    portfolio_id: UUID,
    body: CashMovement,
    store: Store,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> CanonicalJSONResponse:
    """Add cash."""

    def operation(portfolio: Portfolio) -> JSONObject:
        portfolio.deposit(body.amount)
        return committed_body(portfolio)

    return await change(store, portfolio_id, operation, if_match, idempotency_key)


@router.post("/portfolios/{portfolio_id}/withdrawals")
async def withdraw(
    portfolio_id: UUID,
    body: CashMovement,
    store: Store,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> CanonicalJSONResponse:
    """Take cash out (409 when the balance is short)."""

    def operation(portfolio: Portfolio) -> JSONObject:
        portfolio.withdraw(body.amount)
        return committed_body(portfolio)

    return await change(store, portfolio_id, operation, if_match, idempotency_key)


@router.post("/portfolios/{portfolio_id}/positions")
async def open_position(
    portfolio_id: UUID,
    body: OpenPosition,
    store: Store,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> CanonicalJSONResponse:
    """Buy: cash pays quantity x entry_price (409 when it is short)."""
    request = PositionRequest(body.symbol, body.quantity, body.entry_price)

    def operation(portfolio: Portfolio) -> JSONObject:
        portfolio.open_position(request)
        return committed_body(portfolio)

    return await change(store, portfolio_id, operation, if_match, idempotency_key)


@router.post("/portfolios/{portfolio_id}/positions/{symbol}/close")
async def close_position(
    portfolio_id: UUID,
    symbol: str,
    body: ClosePosition,
    store: Store,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> CanonicalJSONResponse:
    """Sell all (or ``quantity``) of ``symbol``: the portfolio, with ``realized_profit``."""

    def operation(portfolio: Portfolio) -> JSONObject:
        profit = portfolio.close_position(symbol, body.exit_price, body.quantity)
        return {**committed_body(portfolio), "realized_profit": money_text(profit)}

    return await change(store, portfolio_id, operation, if_match, idempotency_key)


@router.post("/transfers")
async def transfer(
    body: Transfer, store: Store, idempotency_key: IdempotencyKey = None
) -> CanonicalJSONResponse:
    """Move cash between two portfolios atomically (404 for an unknown one, 409 when short)."""
    await store.transfer(body.from_id, body.to_id, body.amount, idempotency_key=idempotency_key)
    amount = money_text(Decimal(body.amount))  # validated by the transfer
    return CanonicalJSONResponse(
        {"from_id": str(body.from_id), "to_id": str(body.to_id), "amount": amount}
    )


@router.get("/health")
async def health() -> Response:
    """Liveness: the process answers (no database round trip)."""
    return Response(status_code=204)
