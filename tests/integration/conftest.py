"""The ``flavour`` fixture of the contract suite (tests/integration/test_contract_*.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.integration.contract_api import FLAVOURS, Flavour, open_flavour


@pytest_asyncio.fixture(params=FLAVOURS)
async def flavour(
    request: pytest.FixtureRequest, database_url: str, no_sleep: list[float]
) -> AsyncIterator[Flavour]:
    """The library in one flavour (sync / async) on this test's database; retries never sleep."""
    async with open_flavour(request.param, database_url, no_sleep.append) as opened:
        yield opened
