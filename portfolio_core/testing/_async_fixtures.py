"""The asyncio fixtures of the plugin (imported only when pytest-asyncio is installed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest_asyncio

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from portfolio_core.async_store import AsyncPortfolioStore

__all__ = ["async_engine", "async_store"]


@pytest_asyncio.fixture
async def async_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An asyncpg engine on this test's database (pool of 10 + 10, as create_engine)."""
    from portfolio_core.persistence.engine import create_async_engine

    created = create_async_engine(database_url)
    try:
        yield created
    finally:
        await created.dispose()


@pytest_asyncio.fixture
async def async_store(async_engine: AsyncEngine) -> AsyncPortfolioStore:
    """An AsyncPortfolioStore (default retry policy) on this test's database."""
    from portfolio_core.async_store import AsyncPortfolioStore

    return AsyncPortfolioStore(async_engine)
