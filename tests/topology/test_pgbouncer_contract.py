"""The integration contract (tests/integration/test_contract.py), through PgBouncer.

Every contract test runs again, both flavours, with ``database_url`` and
``engine`` pointing at a PgBouncer in transaction mode (tests/topology/
conftest.py); the engines are created with ``transaction_pooler=True``. After
each test the server connections are checked for leftover session state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import Engine

from portfolio_core import (
    AsyncPortfolioStore,
    ConcurrencyService,
    PortfolioStore,
    create_async_engine,
)
from portfolio_core.units import Seconds
from tests.integration import test_contract
from tests.integration.contract_api import Flavour, SyncStore

pytestmark = pytest.mark.asyncio

# The contract's test functions, collected here again with this folder's fixtures.
globals().update(
    {name: value for name, value in vars(test_contract).items() if name.startswith("test_")}
)


@pytest_asyncio.fixture(params=["sync", "async"])
async def flavour(
    request: pytest.FixtureRequest, engine: Engine, database_url: str, no_sleep: list[Seconds]
) -> AsyncIterator[Flavour]:
    """The library in one flavour, through PgBouncer, declared as behind a transaction pooler."""
    if request.param == "sync":
        service = ConcurrencyService(engine, max_retries=5, sleep=no_sleep.append)
        yield Flavour("sync", SyncStore(PortfolioStore(engine, service)), service)
        return
    async_engine = create_async_engine(database_url, transaction_pooler=True)
    service = ConcurrencyService(async_engine, max_retries=5, sleep=no_sleep.append)
    try:
        yield Flavour("async", AsyncPortfolioStore(async_engine, service), service)
    finally:
        await async_engine.dispose()
