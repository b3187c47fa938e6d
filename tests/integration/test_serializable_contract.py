"""The integration contract (tests/integration/test_contract_*.py) at SERIALIZABLE.

Every contract test runs again with the sync store created with
``isolation="serializable"``: the semantics CockroachDB and YugabyteDB give
by default. A write over a concurrently committed change is then refused by
PostgreSQL (40001) before the version check sees it; the tests that count
conflicts read the counter from ``flavour.conflict_metric``.

The sync flavour only: the level is applied by the code both flavours share
(``UnitOfWorkBase._bind``), the async path at each level is covered by
tests/integration/test_isolation.py, and a second flavour would double what
this re-run adds to the suite. Statements are checked for Citus routing here
too (``every_statement_routed``), so serializable-only paths are covered.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from _pytest.fixtures import FixtureFunctionDefinition

import tests.integration
from tests.integration.contract_api import Flavour, open_flavour
from tests.integration.routing_rules import every_statement_routed

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


@pytest_asyncio.fixture
async def flavour(database_url: str, no_sleep: list[float]) -> AsyncIterator[Flavour]:
    """The sync library, its stores and units of work at SERIALIZABLE."""
    async with open_flavour(
        "sync", database_url, no_sleep.append, isolation="serializable"
    ) as opened:
        with every_statement_routed(opened.engine):
            yield opened
