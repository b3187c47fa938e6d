"""The integration contract (tests/integration/test_contract_*.py) at SERIALIZABLE.

Every contract test runs again, both flavours, with stores created with
``isolation="serializable"``: the semantics CockroachDB and YugabyteDB give
by default. A write over a concurrently committed change is then refused by
PostgreSQL (40001) before the version check sees it; the tests that count
conflicts read the counter from ``flavour.conflict_metric``.
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
    """The library in one flavour, its stores and units of work at SERIALIZABLE."""
    async with open_flavour(
        request.param, database_url, no_sleep.append, isolation="serializable"
    ) as opened:
        yield opened
