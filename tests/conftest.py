"""Test harness: a private PostgreSQL for the session, a fresh database per test.

With $PORTFOLIO_CORE_DATABASE_URL set, that server is used (the URL must allow
CREATE DATABASE); otherwise an embedded PostgreSQL starts on first use and
stops at the end of the session. A template database is migrated once; each
integration test gets its own copy (CREATE DATABASE ... TEMPLATE is fast).
Unit tests request none of these fixtures and never start a server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import PortfolioStore, create_async_engine, create_engine, migrate
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.persistence.engine import DATABASE_URL_ENV

TEMPLATE_PREFIX = "pc_template"


def _admin_engine(server_url: str) -> Engine:
    return create_engine(server_url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of the PostgreSQL server the tests use (embedded unless the environment names one)."""
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        yield configured
        return
    from portfolio_core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def template_database(postgres_server_url: str) -> Iterator[str]:
    """Name of a database migrated to head, copied for every test."""
    name = f"{TEMPLATE_PREFIX}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine(postgres_server_url)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server_url).set(database=name)
    migrate(url)
    try:
        yield name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(postgres_server_url: str, template_database: str) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own."""
    name = f"pc_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(postgres_server_url)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
        yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on this test's database."""
    created = create_engine(database_url)
    try:
        yield created
    finally:
        created.dispose()


@pytest.fixture
def no_sleep() -> list[float]:
    """Records the waits a retry policy asked for, without waiting."""
    return []


@pytest.fixture
def service(engine: Engine, no_sleep: list[float]) -> ConcurrencyService:
    """A ConcurrencyService on this test's engine whose backoff never really sleeps."""
    return ConcurrencyService(engine, max_retries=5, sleep=no_sleep.append)


@pytest.fixture
def store(engine: Engine, service: ConcurrencyService) -> PortfolioStore:
    """A PortfolioStore on this test's database."""
    return PortfolioStore(engine, service)


@pytest_asyncio.fixture
async def async_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An asyncpg engine on this test's database (pool of 10 + 10, as create_engine)."""
    created = create_async_engine(database_url)
    try:
        yield created
    finally:
        await created.dispose()
