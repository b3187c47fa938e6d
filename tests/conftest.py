"""Test harness: the database fixtures come from the project's own testing kit.

``portfolio_core.testing`` (loaded through its pytest11 entry point, and named
here too so that a stale install can not drop it) gives ``postgres_server_url``,
``template_database``, ``database_url``, ``engine``, ``store``,
``async_engine`` and ``async_store``: a private PostgreSQL for the session
(or $PORTFOLIO_CORE_DATABASE_URL), a migrated template, a fresh copy per test.
Unit tests request none of them and never start a server.

This file adds what only this project's tests need: a ConcurrencyService that
never really sleeps, and a ``store`` built on it (overriding the kit's).
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from portfolio_core import PortfolioStore
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.units import Seconds

pytest_plugins = ["portfolio_core.testing"]


@pytest.fixture
def no_sleep() -> list[Seconds]:
    """Records the waits a retry policy asked for, without waiting."""
    return []


@pytest.fixture
def service(engine: Engine, no_sleep: list[Seconds]) -> ConcurrencyService:
    """A ConcurrencyService on this test's engine whose backoff never really sleeps."""
    return ConcurrencyService(engine, max_retries=5, sleep=no_sleep.append)


@pytest.fixture
def store(engine: Engine, service: ConcurrencyService) -> PortfolioStore:
    """A PortfolioStore on this test's database, retrying without sleeping."""
    return PortfolioStore(engine, service)
