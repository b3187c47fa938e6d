"""The pytest fixtures of ``portfolio_core.testing``: a real PostgreSQL database per test.

Fixtures and their scopes (each worker of pytest-xdist is a session of its own):

========================  ========  ===============================================
``postgres_server_url``   session   the server: $PORTFOLIO_CORE_DATABASE_URL if set
                                    (it must allow CREATE DATABASE), else an
                                    embedded PostgreSQL started on first use
``template_database``     session   name of a database migrated to head, per worker
``database_url``          function  URL of a fresh copy of the template, dropped after
``engine``                function  a sync engine on that database
``store``                 function  ``PortfolioStore(engine)``
``async_engine``          function  an asyncpg engine on that database
``async_store``           function  ``AsyncPortfolioStore(async_engine)``
========================  ========  ===============================================

Nothing starts until a test asks for one of them, so unit tests cost nothing.
An embedded server is stopped when the session ends, also when the run is
interrupted (Ctrl-C, ``pytest -x``, a crash inside a test): ``pytest_unconfigure``
runs in pytest's outermost ``finally``, and ``atexit`` backs it up. A process
killed with SIGKILL can not clean up; its server's folder is in the system
temporary directory.

Override any fixture in your conftest.py (say, ``store`` built with your own
ConcurrencyService); the others keep working on top of it.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from portfolio_core.persistence.engine import DATABASE_URL_ENV, create_engine
from portfolio_core.store import PortfolioStore
from portfolio_core.testing import databases

if TYPE_CHECKING:
    from portfolio_core.embedded import EmbeddedPostgres

__all__ = [
    "database_url",
    "engine",
    "postgres_server_url",
    "pytest_report_header",
    "pytest_unconfigure",
    "store",
    "template_database",
]

_RUNNING: list[EmbeddedPostgres] = []
"""Embedded servers this process started and has not stopped yet."""


def _stop_servers() -> None:
    while _RUNNING:
        _RUNNING.pop().stop()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop every embedded server still running (the run may have been interrupted)."""
    _stop_servers()


def pytest_report_header(config: pytest.Config) -> str:
    """Say which PostgreSQL the database fixtures use."""
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        shown = make_url(configured).render_as_string(hide_password=True)
        return f"portfolio_core.testing: PostgreSQL at {shown} (${DATABASE_URL_ENV})"
    return "portfolio_core.testing: embedded PostgreSQL, started on first use (one per worker)"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of the PostgreSQL server the tests use (embedded unless the environment names one)."""
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        yield configured
        return
    from portfolio_core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    _RUNNING.append(server)
    atexit.register(_stop_servers)
    try:
        server.start()
        yield server.url
    finally:
        if server in _RUNNING:
            _RUNNING.remove(server)
        server.stop()


@pytest.fixture(scope="session")
def _portfolio_core_admin(postgres_server_url: str) -> Iterator[Engine]:
    """The AUTOCOMMIT engine that creates and drops this session's databases."""
    admin = databases.admin_engine(postgres_server_url)
    try:
        yield admin
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def template_database(postgres_server_url: str, _portfolio_core_admin: Engine) -> Iterator[str]:
    """Name of a database migrated to head (this worker's own), copied for every test."""
    name = databases.create_template(_portfolio_core_admin, postgres_server_url)
    try:
        yield name
    finally:
        databases.drop_database(_portfolio_core_admin, name)


@pytest.fixture
def database_url(
    postgres_server_url: str, template_database: str, _portfolio_core_admin: Engine
) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own (dropped after the test)."""
    name = databases.unique_name(databases.TEST_DATABASE_PREFIX)
    databases.create_database(_portfolio_core_admin, name, template=template_database)
    try:
        yield databases.database_url(postgres_server_url, name)
    finally:
        databases.drop_database(_portfolio_core_admin, name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A psycopg2 engine on this test's database (disposed after the test)."""
    created = create_engine(database_url)
    try:
        yield created
    finally:
        created.dispose()


@pytest.fixture
def store(engine: Engine) -> PortfolioStore:
    """A PortfolioStore (default retry policy) on this test's database."""
    return PortfolioStore(engine)


try:
    # The async fixtures need pytest-asyncio and asyncpg (both in the testing
    # extra); without them the rest of the plugin still loads.
    from portfolio_core.testing._async_fixtures import async_engine as async_engine
    from portfolio_core.testing._async_fixtures import async_store as async_store
except ImportError as missing:
    _MISSING = f"{missing}: pip install 'portfolio-core[testing]'"

    @pytest.fixture(name="async_engine")
    def _async_engine_unavailable() -> NoReturn:
        """Unavailable: the async fixtures need pytest-asyncio and asyncpg."""
        pytest.fail(f"async_engine is unavailable ({_MISSING})")

    @pytest.fixture(name="async_store")
    def _async_store_unavailable() -> NoReturn:
        """Unavailable: the async fixtures need pytest-asyncio and asyncpg."""
        pytest.fail(f"async_store is unavailable ({_MISSING})")
