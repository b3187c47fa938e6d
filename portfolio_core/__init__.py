"""portfolio_core: concurrency-safe persistence of trading portfolios in PostgreSQL.

Start with :class:`PortfolioStore` (or :class:`AsyncPortfolioStore` in asyncio
code); see README.md. Nothing here connects to a database at import time.
The async names need the ``async`` extra and are imported on first use, so the
sync API works without greenlet and asyncpg installed.
"""

import logging as _logging
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from portfolio_core.concurrency import (
    ConcurrencyMetrics,
    ConcurrencyService,
    HotRows,
    RetryPolicy,
)
from portfolio_core.domain import Portfolio, Position, PositionRequest
from portfolio_core.domain.arguments import PortfolioId
from portfolio_core.domain.events import PortfolioEvent, PortfolioOperation
from portfolio_core.domain.money import FixedPoint
from portfolio_core.errors import (
    CommitOutcomeUnknownError,
    CommitOutcomeUnknownException,
    ConcurrencyException,
    ConfigurationError,
    ConnectionLostError,
    DatabaseAccessError,
    DatabaseConnectionError,
    DeadlockException,
    IdempotencyConflictError,
    InsufficientFundsError,
    OptimisticLockException,
    PessimisticLockException,
    PoolTimeoutError,
    PortfolioCoreError,
    PortfolioNotFoundError,
    PositionNotFoundError,
    ReentrantUnitOfWorkError,
    SerializationFailureError,
    SerializationFailureException,
    StaleDataException,
    StatementTimeoutError,
    UnrecordedChangeError,
    ValidationError,
    VersionMismatchError,
)
from portfolio_core.migrations import migrate
from portfolio_core.persistence import PostgreSQLPortfolioRepository, create_engine
from portfolio_core.persistence.engine import create_async_engine
from portfolio_core.persistence.read_routing import ReadPolicy, ReadToken
from portfolio_core.persistence.roles import grant_app_role
from portfolio_core.persistence.schema_option import with_schema
from portfolio_core.store import PortfolioStore
from portfolio_core.store_call import Versioned
from portfolio_core.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from portfolio_core.async_store import AsyncPortfolioStore
    from portfolio_core.async_unit_of_work import AsyncUnitOfWork
    from portfolio_core.persistence.async_repository import AsyncPostgreSQLPortfolioRepository

# A library's logger gets a NullHandler: without one, a service that configured
# no logging would have the library's warnings printed to its stderr by
# Python's last-resort handler. The service's own handlers decide.
_logging.getLogger("portfolio_core").addHandler(_logging.NullHandler())

try:  # The version is pyproject.toml's, as installed.
    __version__ = _metadata.version("portfolio-core")
except _metadata.PackageNotFoundError:  # a checkout on sys.path that was never installed
    __version__ = "0+unknown"

_ASYNC_NAMES = {
    "AsyncPortfolioStore": "portfolio_core.async_store",
    "AsyncUnitOfWork": "portfolio_core.async_unit_of_work",
    "AsyncPostgreSQLPortfolioRepository": "portfolio_core.persistence.async_repository",
}


def __getattr__(name: str) -> Any:
    """Import the async API on first use (it needs the ``async`` extra)."""
    module = _ASYNC_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'portfolio_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncPortfolioStore",
    "AsyncPostgreSQLPortfolioRepository",
    "AsyncUnitOfWork",
    "CommitOutcomeUnknownError",
    "CommitOutcomeUnknownException",
    "ConcurrencyException",
    "ConcurrencyMetrics",
    "ConcurrencyService",
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseAccessError",
    "DatabaseConnectionError",
    "DeadlockException",
    "FixedPoint",
    "HotRows",
    "IdempotencyConflictError",
    "InsufficientFundsError",
    "OptimisticLockException",
    "PessimisticLockException",
    "PoolTimeoutError",
    "Portfolio",
    "PortfolioCoreError",
    "PortfolioEvent",
    "PortfolioId",
    "PortfolioNotFoundError",
    "PortfolioOperation",
    "PortfolioStore",
    "Position",
    "PositionNotFoundError",
    "PositionRequest",
    "PostgreSQLPortfolioRepository",
    "ReadPolicy",
    "ReadToken",
    "ReentrantUnitOfWorkError",
    "RetryPolicy",
    "SerializationFailureError",
    "SerializationFailureException",
    "StaleDataException",
    "StatementTimeoutError",
    "UnitOfWork",
    "UnrecordedChangeError",
    "ValidationError",
    "VersionMismatchError",
    "Versioned",
    "__version__",
    "create_async_engine",
    "create_engine",
    "grant_app_role",
    "migrate",
    "with_schema",
]
