"""portfolio_core: concurrency-safe persistence of trading portfolios in PostgreSQL.

Start with :class:`PortfolioStore`; see README.md. Nothing here connects to a
database at import time.
"""

from portfolio_core.concurrency import ConcurrencyMetrics, ConcurrencyService, RetryPolicy
from portfolio_core.domain import Portfolio, Position, PositionRequest
from portfolio_core.domain.events import PortfolioEvent, PortfolioOperation
from portfolio_core.errors import (
    CommitOutcomeUnknownError,
    ConcurrencyException,
    ConfigurationError,
    ConnectionLostError,
    DatabaseConnectionError,
    DeadlockException,
    IdempotencyConflictError,
    InsufficientFundsError,
    OptimisticLockException,
    PessimisticLockException,
    PortfolioCoreError,
    PortfolioNotFoundError,
    PositionNotFoundError,
    SerializationFailureError,
    StaleDataException,
    ValidationError,
)
from portfolio_core.migrations import migrate
from portfolio_core.persistence import PostgreSQLPortfolioRepository, create_engine
from portfolio_core.store import PortfolioStore
from portfolio_core.unit_of_work import UnitOfWork

__version__ = "0.1.0"

__all__ = [
    "CommitOutcomeUnknownError",
    "ConcurrencyException",
    "ConcurrencyMetrics",
    "ConcurrencyService",
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseConnectionError",
    "DeadlockException",
    "IdempotencyConflictError",
    "InsufficientFundsError",
    "OptimisticLockException",
    "PessimisticLockException",
    "Portfolio",
    "PortfolioCoreError",
    "PortfolioEvent",
    "PortfolioNotFoundError",
    "PortfolioOperation",
    "PortfolioStore",
    "Position",
    "PositionNotFoundError",
    "PositionRequest",
    "PostgreSQLPortfolioRepository",
    "RetryPolicy",
    "SerializationFailureError",
    "StaleDataException",
    "UnitOfWork",
    "ValidationError",
    "__version__",
    "create_engine",
    "migrate",
]
