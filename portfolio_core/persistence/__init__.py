"""Everything that touches SQLAlchemy and PostgreSQL."""

from portfolio_core.persistence.engine import (
    DATABASE_URL_ENV,
    create_async_engine,
    create_engine,
    resolve_url,
)
from portfolio_core.persistence.mapping import start_mappers
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository

__all__ = [
    "DATABASE_URL_ENV",
    "PostgreSQLPortfolioRepository",
    "create_async_engine",
    "create_engine",
    "resolve_url",
    "start_mappers",
]
