"""SQLSTATE classification: the same answer for psycopg2- and asyncpg-shaped driver errors.

SQLAlchemy wraps a driver error in a DBAPIError whose ``orig`` is the driver's
exception: psycopg2 puts the SQLSTATE in ``pgcode``, asyncpg in ``sqlstate``.
These tests build such exception objects by hand (classification is a pure
function of them); the integration tests see the real ones from PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    ConnectionLostError,
    DeadlockException,
    PessimisticLockException,
    SerializationFailureException,
)
from portfolio_core.persistence.errors import Failure, classify, sqlstate_of, translate, translated


class Psycopg2StyleError(Exception):
    """Shaped like a psycopg2 error: the SQLSTATE is ``pgcode``."""

    def __init__(self, pgcode: str | None) -> None:
        super().__init__(f"psycopg2 error {pgcode}")
        self.pgcode = pgcode


class AsyncpgStyleError(Exception):
    """Shaped like an asyncpg error: the SQLSTATE is ``sqlstate``."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"asyncpg error {sqlstate}")
        self.sqlstate = sqlstate


class AdapterError(Exception):
    """Shaped like SQLAlchemy's asyncpg adapter error: no code, the driver error as cause."""


def psycopg2_error(
    code: str | None, *, invalidated: bool = False, wrapper: type[DBAPIError] = DBAPIError
) -> DBAPIError:
    return wrapper("SELECT 1", {}, Psycopg2StyleError(code), connection_invalidated=invalidated)


def asyncpg_error(
    code: str | None, *, invalidated: bool = False, wrapper: type[DBAPIError] = DBAPIError
) -> DBAPIError:
    return wrapper("SELECT 1", {}, AsyncpgStyleError(code), connection_invalidated=invalidated)


def adapted_asyncpg_error(code: str) -> DBAPIError:
    adapter = AdapterError("adapted")
    adapter.__cause__ = AsyncpgStyleError(code)
    return DBAPIError("SELECT 1", {}, adapter)


Wrap = Callable[..., DBAPIError]

WRAPPERS = pytest.mark.parametrize(
    "wrap", [psycopg2_error, asyncpg_error], ids=["psycopg2", "asyncpg"]
)


@WRAPPERS
@pytest.mark.parametrize(
    ("code", "failure"),
    [
        ("40001", Failure.SERIALIZATION),
        ("40P01", Failure.DEADLOCK),
        ("55P03", Failure.LOCK_NOT_AVAILABLE),
        ("08006", Failure.CONNECTION_LOST),
        ("57P01", Failure.CONNECTION_LOST),
        ("23505", Failure.OTHER),
        ("22003", Failure.OTHER),
        (None, Failure.OTHER),
    ],
)
def test_sqlstate_is_classified_the_same_for_both_drivers(
    wrap: Wrap, code: str | None, failure: Failure
) -> None:
    error = wrap(code)

    assert sqlstate_of(error) == code
    assert classify(error) is failure


@WRAPPERS
@pytest.mark.parametrize("wrapper", [DBAPIError, OperationalError, IntegrityError])
@pytest.mark.parametrize("invalidated", [False, True])
@pytest.mark.parametrize(
    ("code", "failure"),
    [
        ("40001", Failure.SERIALIZATION),
        ("40P01", Failure.DEADLOCK),
        ("55P03", Failure.LOCK_NOT_AVAILABLE),
        ("08006", Failure.CONNECTION_LOST),
        ("57P01", Failure.CONNECTION_LOST),
    ],
)
def test_sqlstate_decides_whatever_the_sqlalchemy_wrapper(
    wrap: Wrap, wrapper: type[DBAPIError], invalidated: bool, code: str, failure: Failure
) -> None:
    assert classify(wrap(code, invalidated=invalidated, wrapper=wrapper)) is failure


@WRAPPERS
@pytest.mark.parametrize("code", ["23505", "22003"])
def test_other_sqlstates_stay_other_in_an_operational_error(wrap: Wrap, code: str) -> None:
    assert classify(wrap(code, wrapper=OperationalError)) is Failure.OTHER


def test_sqlstate_is_found_on_the_cause_of_an_adapter_error() -> None:
    assert classify(adapted_asyncpg_error("40P01")) is Failure.DEADLOCK


@pytest.mark.parametrize("driver_error", [Psycopg2StyleError(None), AsyncpgStyleError(None)])
def test_operational_error_without_sqlstate_is_connection_lost(driver_error: Exception) -> None:
    # e.g. "connection to server at 127.0.0.1 failed: Connection refused"
    unreachable = OperationalError(None, None, driver_error)

    assert classify(unreachable) is Failure.CONNECTION_LOST
    assert isinstance(translate(unreachable), ConnectionLostError)


@pytest.mark.parametrize("code", ["53300", "XX000"])  # 57014: StatementTimeoutError
def test_operational_error_the_server_sent_is_not_a_lost_connection(code: str) -> None:
    assert classify(OperationalError("SELECT 1", {}, Psycopg2StyleError(code))) is Failure.OTHER


@WRAPPERS
def test_invalidated_connection_without_sqlstate_is_connection_lost(
    wrap: Wrap,
) -> None:
    error = wrap(None, invalidated=True)

    assert classify(error) is Failure.CONNECTION_LOST


@WRAPPERS
def test_serialization_failure_translates_to_retryable_error(wrap: Wrap) -> None:
    pid = uuid4()
    mapped = translate(wrap("40001"), entity_type="Portfolio", entity_id=pid)

    assert isinstance(mapped, SerializationFailureException)
    assert (mapped.entity_type, mapped.entity_id) == ("Portfolio", pid)


@WRAPPERS
def test_deadlock_translates_to_deadlock_exception_naming_the_entity(
    wrap: Wrap,
) -> None:
    pid = uuid4()
    mapped = translate(wrap("40P01"), entity_type="Portfolio", entity_id=pid)

    assert isinstance(mapped, DeadlockException)
    assert mapped.entities == (("Portfolio", pid),)


@WRAPPERS
def test_lock_not_available_translates_with_sqlstate_and_timeout(wrap: Wrap) -> None:
    mapped = translate(wrap("55P03"), entity_type="Portfolio", entity_id=1, lock_timeout=0.25)

    assert isinstance(mapped, PessimisticLockException)
    assert mapped.sqlstate == "55P03"
    assert mapped.timeout == 0.25


@WRAPPERS
@pytest.mark.parametrize("code", ["08006", "57P01"])
def test_connection_lost_before_commit_is_retryable_connection_lost(wrap: Wrap, code: str) -> None:
    assert isinstance(translate(wrap(code)), ConnectionLostError)


@WRAPPERS
@pytest.mark.parametrize(
    ("code", "invalidated"), [("08006", False), ("57P01", False), (None, True)]
)
def test_connection_lost_during_commit_is_outcome_unknown(
    wrap: Wrap, code: str | None, invalidated: bool
) -> None:
    error = wrap(code, invalidated=invalidated)

    mapped = translate(error, entity_type="Portfolio", entity_id=7, during_commit=True)

    assert isinstance(mapped, CommitOutcomeUnknownException)
    assert not isinstance(mapped, ConnectionLostError)
    assert (mapped.entity_type, mapped.entity_id) == ("Portfolio", 7)


@WRAPPERS
@pytest.mark.parametrize("code", ["23505", "22003", "42P01", None])
def test_other_errors_are_not_translated(wrap: Wrap, code: str | None) -> None:
    assert translate(wrap(code)) is None
    assert translate(wrap(code), during_commit=True) is None


def test_translated_reraises_the_domain_error_chained_to_the_driver_error() -> None:
    original = psycopg2_error("40P01")

    with pytest.raises(DeadlockException) as caught, translated(entity_type="Portfolio"):
        raise original

    assert caught.value.__cause__ is original


def test_translated_lets_other_errors_through_unchanged() -> None:
    original = IntegrityError("INSERT", {}, Psycopg2StyleError("23505"))

    with pytest.raises(IntegrityError) as caught, translated():
        raise original

    assert caught.value is original


def test_translated_ignores_errors_that_are_not_from_the_driver() -> None:
    with pytest.raises(KeyError), translated():
        raise KeyError("not a database error")
