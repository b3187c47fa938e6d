"""The ``flavour`` fixture of the contract suite (tests/integration/test_contract_*.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.integration.app_role import app_role_url
from tests.integration.contract_api import FLAVOURS, Flavour, open_flavour
from tests.integration.routing_rules import every_statement_routed

APP_ROLE = "sync-app-role"


@pytest_asyncio.fixture(params=(*FLAVOURS, APP_ROLE))
async def flavour(
    request: pytest.FixtureRequest, database_url: str, no_sleep: list[float]
) -> AsyncIterator[Flavour]:
    """The library in one flavour on this test's database; retries never sleep.

    ``sync``, ``async``, and ``sync-app-role``: the sync store connected as a
    role holding only grant_app_role's privileges (the production setup).
    Every statement the flavour's engine sends must route to one Citus
    distribution key (routing_rules.py, docs/scaling.md): checked after the test.
    """
    if request.param == APP_ROLE:
        with app_role_url(database_url) as url:
            async with open_flavour("sync", url, no_sleep.append) as opened:
                with every_statement_routed(opened.engine):
                    yield opened
        return
    async with open_flavour(request.param, database_url, no_sleep.append) as opened:
        with every_statement_routed(opened.engine):
            yield opened
