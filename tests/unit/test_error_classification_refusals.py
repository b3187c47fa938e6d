"""Refusals, statement timeouts and pool exhaustion become typed, non-retried errors."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyPoolTimeout

from portfolio_core import (
    ConnectionLostError,
    DatabaseAccessError,
    PoolTimeoutError,
    RetryPolicy,
    StatementTimeoutError,
)
from portfolio_core.persistence.errors import Failure, classify, translate, translated


class Psycopg2StyleError(Exception):
    """Shaped like a psycopg2 error: the SQLSTATE (if any) is ``pgcode``."""

    def __init__(self, message: str, pgcode: str | None = None) -> None:
        super().__init__(message)
        self.pgcode = pgcode


class AsyncpgStyleError(Exception):
    """Shaped like an asyncpg error: the SQLSTATE is ``sqlstate``."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


CONNECT_FAILED = 'connection to server at "127.0.0.1", port 5432 failed: '


def _operational(orig: Exception) -> OperationalError:
    return OperationalError(None, None, orig)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ('FATAL:  password authentication failed for user "app"', "28P01"),
        ('FATAL:  database "nope" does not exist', "3D000"),
        ('FATAL:  role "ghost" does not exist', "28000"),
        ('FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "a", database "b"', "28000"),
        ('FATAL:  permission denied for database "b"', "42501"),
    ],
)
def test_a_refused_psycopg2_connect_is_an_access_error_with_the_servers_reason(
    message: str, code: str
) -> None:
    error = translate(_operational(Psycopg2StyleError(CONNECT_FAILED + message + "\n")))
    assert isinstance(error, DatabaseAccessError)
    assert error.sqlstate == code
    assert message.removeprefix("FATAL:  ") in str(error)
    assert not RetryPolicy().is_retryable(error)


@pytest.mark.parametrize("code", ["28P01", "28000", "3D000", "42501"])
def test_a_refusal_with_a_sqlstate_is_an_access_error(code: str) -> None:
    for orig in (Psycopg2StyleError("refused", code), AsyncpgStyleError("refused", code)):
        failure = classify(DBAPIError("SELECT 1", {}, orig))
        assert failure is Failure.ACCESS_DENIED
        error = translate(DBAPIError("SELECT 1", {}, orig))
        assert isinstance(error, DatabaseAccessError)
        assert "refused" in str(error)


def test_a_statement_timeout_is_typed_and_not_retried() -> None:
    message = "canceling statement due to statement timeout"
    for orig in (Psycopg2StyleError(message, "57014"), AsyncpgStyleError(message, "57014")):
        error = translate(_operational(orig))
        assert isinstance(error, StatementTimeoutError)
        assert message in str(error)
        assert not RetryPolicy().is_retryable(error)


def test_a_lost_connection_names_the_reason() -> None:
    orig = Psycopg2StyleError(CONNECT_FAILED + "Connection refused\n\tIs the server running?")
    error = translate(_operational(orig))
    assert isinstance(error, ConnectionLostError)
    assert "Connection refused" in str(error)


def test_pool_exhaustion_is_a_typed_error() -> None:
    with pytest.raises(PoolTimeoutError) as caught, translated():
        raise SQLAlchemyPoolTimeout("QueuePool limit of size 1 overflow 0 reached")
    assert "QueuePool limit" in str(caught.value)
    assert not RetryPolicy().is_retryable(caught.value)
