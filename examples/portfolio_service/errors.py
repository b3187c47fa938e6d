"""The library's errors as HTTP responses, in one table.

Every error body is ``{"error": code, "detail": message}``. 503 answers
carry ``Retry-After``: the request met contention or an unreachable
database that outlasted the retry policy, or a COMMIT whose outcome is
unknown; repeating it (with the same ``Idempotency-Key``) is safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from examples.portfolio_service.preconditions import etag
from portfolio_core import (
    CommitOutcomeUnknownException,
    ConcurrencyException,
    DatabaseAccessError,
    DatabaseConnectionError,
    IdempotencyConflictError,
    InsufficientFundsError,
    PortfolioCoreError,
    PortfolioNotFoundError,
    PositionNotFoundError,
    StatementTimeoutError,
    ValidationError,
    VersionMismatchError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorAnswer:
    """How one class of errors is answered."""

    error: type[Exception]
    status: int
    code: str
    retry_after: bool = False


# First match wins: subclasses come before their bases.
ERROR_TABLE: Final[tuple[ErrorAnswer, ...]] = (
    ErrorAnswer(VersionMismatchError, 412, "version_mismatch"),
    ErrorAnswer(PortfolioNotFoundError, 404, "portfolio_not_found"),
    ErrorAnswer(PositionNotFoundError, 404, "position_not_found"),
    ErrorAnswer(InsufficientFundsError, 409, "insufficient_funds"),
    # The IETF Idempotency-Key draft: a key reused with another payload is 422.
    ErrorAnswer(IdempotencyConflictError, 422, "idempotency_key_reused"),
    ErrorAnswer(ValidationError, 422, "validation"),
    ErrorAnswer(CommitOutcomeUnknownException, 503, "outcome_unknown", retry_after=True),
    # Retries exhausted: OptimisticLock-, PessimisticLock-, DeadlockException...
    ErrorAnswer(ConcurrencyException, 503, "contention", retry_after=True),
    ErrorAnswer(DatabaseAccessError, 500, "database_refused"),  # configuration: retrying won't help
    # PoolTimeoutError, ConnectionLostError: the database is busy or unreachable.
    ErrorAnswer(DatabaseConnectionError, 503, "database_unavailable", retry_after=True),
    ErrorAnswer(StatementTimeoutError, 503, "statement_timeout", retry_after=True),
)

INTERNAL: Final = ErrorAnswer(PortfolioCoreError, 500, "internal")


def mapping_of(error: Exception) -> ErrorAnswer:
    """The row of ERROR_TABLE for ``error`` (INTERNAL when none matches)."""
    for row in ERROR_TABLE:
        if isinstance(error, row.error):
            return row
    return INTERNAL


def error_response(error: Exception, retry_after_seconds: int) -> JSONResponse:
    """The response for a library error: status, ``{"error", "detail"}``, headers.

    A 412 carries the portfolio's current ``ETag`` (the client refreshes from
    it); a version mismatch on a portfolio that is gone is a 404.
    """
    row = mapping_of(error)
    headers: dict[str, str] = {}
    if isinstance(error, VersionMismatchError):
        if error.actual_version is None:
            row = ErrorAnswer(VersionMismatchError, 404, "portfolio_not_found")
        else:
            headers["ETag"] = etag(error.actual_version)
    if row.retry_after:
        headers["Retry-After"] = str(retry_after_seconds)
    if row.status >= 500:
        logger.warning("%s answered %d", type(error).__name__, row.status, exc_info=error)
    detail = "internal error" if row.status == 500 else str(error)
    return JSONResponse({"error": row.code, "detail": detail}, row.status, headers=headers)


def install_error_handlers(app: FastAPI, retry_after_seconds: int) -> None:
    """Answer library errors per ERROR_TABLE and request validation errors as 422s."""

    async def library_error(request: Request, error: Exception) -> JSONResponse:
        return error_response(error, retry_after_seconds)

    async def invalid_request(request: Request, error: Exception) -> JSONResponse:
        details = error.errors() if isinstance(error, RequestValidationError) else str(error)
        return JSONResponse({"error": "validation", "detail": jsonable_encoder(details)}, 422)

    app.add_exception_handler(PortfolioCoreError, library_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
