"""The example service's pure parts: error -> response table, If-Match parsing, money text."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from fastapi import Response

from examples.portfolio_service.errors import error_response
from examples.portfolio_service.preconditions import etag, expected_version
from examples.portfolio_service.representation import money_text
from portfolio_core import (
    CommitOutcomeUnknownException,
    ConfigurationError,
    ConnectionLostError,
    DatabaseAccessError,
    DeadlockException,
    IdempotencyConflictError,
    InsufficientFundsError,
    OptimisticLockException,
    PessimisticLockException,
    PoolTimeoutError,
    PortfolioNotFoundError,
    PositionNotFoundError,
    ReentrantUnitOfWorkError,
    StatementTimeoutError,
    ValidationError,
    VersionMismatchError,
)

PID = uuid4()


def body_of(response: Response) -> Any:
    """The decoded JSON body of a response built (not sent) by the service."""
    return json.loads(bytes(response.body))


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (PortfolioNotFoundError(PID), 404, "portfolio_not_found"),
        (PositionNotFoundError(PID, "AAPL"), 404, "position_not_found"),
        (InsufficientFundsError(PID, Decimal(2), Decimal(1)), 409, "insufficient_funds"),
        (IdempotencyConflictError("k"), 422, "idempotency_key_reused"),
        (ValidationError("amount", "x", "is not a number"), 422, "validation"),
        (DatabaseAccessError("no such role", sqlstate="28000"), 500, "database_refused"),
        (ConfigurationError("no URL"), 500, "internal"),
        (ReentrantUnitOfWorkError(PID), 500, "internal"),
    ],
)
def test_errors_without_retry_after(error: Exception, status: int, code: str) -> None:
    response = error_response(error, 3)

    assert response.status_code == status
    assert body_of(response)["error"] == code
    assert "Retry-After" not in response.headers


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (OptimisticLockException("conflicts", retries=3), "contention"),
        (PessimisticLockException("busy", sqlstate="55P03", retries=3), "contention"),
        (DeadlockException("deadlock", retries=3), "contention"),
        (CommitOutcomeUnknownException("lost", idempotency_key="k"), "outcome_unknown"),
        (PoolTimeoutError("pool exhausted"), "database_unavailable"),
        (ConnectionLostError("gone", attempts=4), "database_unavailable"),
        (StatementTimeoutError("canceling statement"), "statement_timeout"),
    ],
)
def test_retries_exhausted_and_unknown_outcomes_are_503_with_retry_after(
    error: Exception, code: str
) -> None:
    response = error_response(error, 3)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"
    assert body_of(response)["error"] == code


def test_a_version_mismatch_is_412_with_the_current_etag() -> None:
    response = error_response(VersionMismatchError("Portfolio", PID, 2, 5), 1)

    assert response.status_code == 412
    assert response.headers["ETag"] == '"5"'


def test_a_version_mismatch_on_a_portfolio_that_is_gone_is_404() -> None:
    response = error_response(VersionMismatchError("Portfolio", PID, 2, None), 1)

    assert response.status_code == 404
    assert "ETag" not in response.headers


def test_a_500_does_not_echo_the_error() -> None:
    response = error_response(DatabaseAccessError("password=secret", sqlstate="28P01"), 1)

    assert body_of(response)["detail"] == "internal error"


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("*", None), ('"1"', 1), (' "42" ', 42), (etag(7), 7)],
)
def test_if_match_values_understood(header: str | None, expected: int | None) -> None:
    assert expected_version(header) == expected


@pytest.mark.parametrize("header", ['W/"1"', "1", '"0"', '"1", "2"', '"-1"', '""', '"01"'])
def test_if_match_values_refused(header: str) -> None:
    with pytest.raises(ValidationError):
        expected_version(header)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1E+2"), "100"),
        (Decimal("1010.50000000"), "1010.5"),
        (Decimal("0E-8"), "0"),
        (Decimal("0.00000001"), "0.00000001"),
        (Decimal("-12.30"), "-12.3"),
        (Decimal("9999999999999999.99999999"), "9999999999999999.99999999"),
        # A market value (quantity x price) can pass the default context's 28 digits.
        (Decimal("12345678901234567890.1234567890123456"), "12345678901234567890.1234567890123456"),
        (Decimal("-0.0"), "0"),
    ],
)
def test_money_text_is_exact_and_plain(value: Decimal, text: str) -> None:
    assert money_text(value) == text
    assert Decimal(text) == value
