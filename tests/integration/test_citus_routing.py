"""Ready for Citus: every statement the library sends routes to one distribution key.

The contract suite (tests/integration/test_contract_*.py) runs again, both
flavours, with every statement the flavour's engine sends captured
(``before_cursor_execute``). Each must touch rows of one portfolio (or the
listed portfolios of a transfer/batch) through its table's distribution
column, by ``=`` or ``IN``/``= ANY``: see docs/scaling.md for the DDL.
Statements of the test's own ``engine`` (writes behind the library's back)
are not captured. Admin and session statements are listed in
routing_rules.py with the reason each is allowed.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from _pytest.fixtures import FixtureFunctionDefinition
from sqlalchemy import Engine, event

import tests.integration
from tests.integration.contract_api import FLAVOURS, Flavour, open_flavour
from tests.integration.routing_rules import unroutable

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
    """The library in one flavour; after the test, every statement it sent must route."""
    statements: list[str] = []

    def capture(
        connection: object,
        cursor: object,
        statement: str,
        parameters: object,
        context: object,
        executemany: bool,
    ) -> None:
        statements.append(statement)

    async with open_flavour(request.param, database_url, no_sleep.append) as opened:
        engine = opened.engine
        sync_engine = engine if isinstance(engine, Engine) else engine.sync_engine  # type: ignore[union-attr]
        event.listen(sync_engine, "before_cursor_execute", capture)
        yield opened
    offending = sorted({s for s in statements if unroutable(s)})
    assert not offending, "statements that would not route to one distribution key:\n" + (
        "\n---\n".join(offending)
    )
