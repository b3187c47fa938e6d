"""Topology fixtures: the integration contract again, through a PgBouncer in transaction mode.

``pgbouncer`` (one per session) pools every database of the test server.
``database_url`` and ``engine`` are overridden here: each test still gets its
own fresh database, but reaches it through PgBouncer, and at teardown every
server connection PgBouncer holds to it is checked for session state a
client left behind (settings, advisory locks, prepared statements, open
transactions).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from portfolio_core import create_engine
from tests.topology.leaks import assert_no_session_state
from tests.topology.servers import PgBouncer


@pytest.fixture(scope="session")
def pgbouncer(postgres_server_url: str) -> Iterator[PgBouncer]:
    """A PgBouncer (transaction pooling) in front of the test server."""
    with PgBouncer(postgres_server_url, pool_mode="transaction") as bouncer:
        yield bouncer


@pytest.fixture
def database_url(
    database_url: str, pgbouncer: PgBouncer, postgres_server_url: str
) -> Iterator[str]:
    """This test's fresh database, through PgBouncer; server connections checked after."""
    name = make_url(database_url).database or ""
    yield pgbouncer.url(name)
    assert_no_session_state(pgbouncer.url(name), database_url)


@pytest.fixture
def direct_database_url(postgres_server_url: str, database_url: str) -> str:
    """This test's database on the server itself, PgBouncer bypassed."""
    name = make_url(database_url).database
    return make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A psycopg2 engine through PgBouncer, declared as such."""
    created = create_engine(database_url, transaction_pooler=True)
    try:
        yield created
    finally:
        created.dispose()
