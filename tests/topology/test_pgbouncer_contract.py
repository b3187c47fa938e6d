"""The integration contract (tests/integration/test_contract_*.py), through PgBouncer.

Every contract test runs again, both flavours, with ``database_url`` and
``engine`` pointing at a PgBouncer in transaction mode (tests/topology/
conftest.py); the engines are created with ``transaction_pooler=True``. After
each test the server connections are checked for leftover session state.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from _pytest.fixtures import FixtureFunctionDefinition

import tests.integration
from tests.integration.contract_api import FLAVOURS, Flavour, open_flavour

pytestmark = pytest.mark.asyncio


def _collected_again(value: object) -> bool:
    """A contract test function, or a fixture a contract module defines for its tests."""
    return callable(value) and (
        getattr(value, "__name__", "").startswith("test_")
        or isinstance(value, FixtureFunctionDefinition)
    )


# The contract's tests (and their module fixtures), collected here again with
# this folder's database_url/engine: the same cases, through PgBouncer.
for _module in pkgutil.iter_modules(tests.integration.__path__):
    if _module.name.startswith("test_contract_"):
        _contract = importlib.import_module(f"tests.integration.{_module.name}")
        globals().update(
            {name: value for name, value in vars(_contract).items() if _collected_again(value)}
        )


@pytest_asyncio.fixture(params=FLAVOURS)
async def flavour(
    request: pytest.FixtureRequest, database_url: str, no_sleep: list[float]
) -> AsyncIterator[Flavour]:
    """The library in one flavour, through PgBouncer, declared as behind a transaction pooler."""
    async with open_flavour(
        request.param, database_url, no_sleep.append, transaction_pooler=True
    ) as opened:
        yield opened
