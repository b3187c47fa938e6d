"""Representative contract cases again, with the library's tables in a schema of their own.

The cases are the contract suite's own functions (collected here a second
time); this module's ``flavour`` fixture overrides the conftest one: the
test's database is migrated into :data:`SCHEMA` as well, and the flavours'
engines are made with ``schema=SCHEMA``. The default schema keeps its own
(empty) copy of the tables, so a statement that missed the option would
write there: each case ends by checking that it stayed empty. The app-role
flavour's role is granted the schema's tables only, so such a statement
would also be refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from sqlalchemy import Engine, text

from portfolio_core import create_engine, migrate
from portfolio_core.testing import databases
from tests.integration.app_role import app_role_url
from tests.integration.contract_api import Flavour, open_flavour

pytestmark = pytest.mark.asyncio

SCHEMA = "pc_contract"
APP_ROLE = "sync-app-role"

# Collected here a second time, with this module's fixtures. Create/execute/
# transfer/update_all_prices, history/replay/idempotency keys, and the text-SQL
# paths (atomic updates, the re-read of a moved version).
from tests.integration.test_contract_atomic_update import (  # noqa: E402, F401
    test_atomic_cash_change_is_booked_so_the_money_invariant_holds,
    test_atomic_update_on_a_moved_version_raises_stale_with_the_actual_version,
)
from tests.integration.test_contract_audit import (  # noqa: E402, F401
    test_history_has_one_event_per_version_and_replay_rebuilds_the_portfolio,
    test_idempotency_keys_apply_each_request_once,
)
from tests.integration.test_contract_if_match import (  # noqa: E402, F401
    test_update_all_prices_applies_only_at_the_expected_version,
)
from tests.integration.test_contract_store import (  # noqa: E402, F401
    test_open_position_transactional_commits_on_its_own,
    test_transfer_moves_cash_atomically_and_refuses_overdrafts,
)


@pytest.fixture(scope="module")
def schema_template(
    postgres_server_url: str, template_database: str, _portfolio_core_admin: Engine
) -> Iterator[str]:
    """The migrated template, migrated into :data:`SCHEMA` too (copied for every case)."""
    name = databases.unique_name("pc_schema_template")
    databases.create_database(_portfolio_core_admin, name, template=template_database)
    try:
        migrate(databases.database_url(postgres_server_url, name), schema=SCHEMA)
        yield name
    finally:
        databases.drop_database(_portfolio_core_admin, name)


@pytest.fixture
def database_url(
    postgres_server_url: str, schema_template: str, _portfolio_core_admin: Engine
) -> Iterator[str]:
    """This case's own copy of :func:`schema_template`."""
    name = databases.unique_name(databases.TEST_DATABASE_PREFIX)
    databases.create_database(_portfolio_core_admin, name, template=schema_template)
    try:
        yield databases.database_url(postgres_server_url, name)
    finally:
        databases.drop_database(_portfolio_core_admin, name)


@pytest_asyncio.fixture(params=("sync", "async", APP_ROLE))
async def flavour(
    request: pytest.FixtureRequest, database_url: str, no_sleep: list[float]
) -> AsyncIterator[Flavour]:
    """The library in one flavour, its tables in :data:`SCHEMA` of this test's database."""
    if request.param == APP_ROLE:
        with app_role_url(database_url, schema=SCHEMA) as url:
            async with open_flavour("sync", url, no_sleep.append, schema=SCHEMA) as opened:
                yield opened
    else:
        async with open_flavour(
            request.param, database_url, no_sleep.append, schema=SCHEMA
        ) as opened:
            yield opened
    default_schema = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with default_schema.connect() as connection:
            written = connection.execute(
                text(
                    "SELECT (SELECT count(*) FROM portfolios) + (SELECT count(*) FROM positions)"
                    " + (SELECT count(*) FROM portfolio_events)"
                    " + (SELECT count(*) FROM idempotency_keys)"
                )
            ).scalar_one()
    finally:
        default_schema.dispose()
    assert written == 0, "rows were written outside the schema"
