"""Driver errors -> portfolio_core errors, in one place, for psycopg2 and asyncpg alike.

PostgreSQL reports what went wrong as a SQLSTATE.  psycopg2 exposes it as
``pgcode``, asyncpg as ``sqlstate``; SQLAlchemy wraps either in a
``DBAPIError`` whose ``orig`` carries it (its asyncpg adapter copies
``sqlstate`` to ``pgcode`` too).  Lost connections carry no SQLSTATE: SQLAlchemy
marks them with ``connection_invalidated``; a server that cannot be reached at
all gives an OperationalError with no SQLSTATE (libpq's own error, raised
before any server could answer), classified as a lost connection too.

A server that answers a connect with a refusal (wrong password, unknown role
or database, no CONNECT privilege) is not a lost connection: retrying gets the
same answer. asyncpg reports its SQLSTATE; psycopg2 does not for a failed
connect (libpq gives only text), so the server's FATAL message is matched
(PostgreSQL's English messages; with another ``lc_messages`` a refusal
falls back to a lost connection, retried, and its message still names it).

========  =============================  =====================================
SQLSTATE  meaning                        becomes
========  =============================  =====================================
40001     serialization_failure          SerializationFailureException (retryable)
40P01     deadlock_detected              DeadlockException (retryable)
55P03     lock_not_available             PessimisticLockException (policy)
08xxx,    connection failure, server     ConnectionLostError (retryable) or,
57P01-03  shutting down                  during COMMIT, CommitOutcomeUnknownException
28xxx,    invalid authorization, no      DatabaseAccessError (never retried)
3D000,    such database, insufficient
42501     privilege
57014     query_canceled (statement      StatementTimeoutError (not retried: the
          timeout, cancel request)       retry would meet the same budget)
--        pool checkout timed out        PoolTimeoutError (not retried)
          (sqlalchemy TimeoutError)
25006     read_only_sql_transaction      the same: a write reached a standby, the
                                         primary moved (see persistence.topology)
42P05,    duplicate_prepared_statement,  ConfigurationError (never retried): the
26000     invalid_sql_statement_name     driver's statements met another client's
                                         behind a transaction pooler
========  =============================  =====================================

Every translated message carries the server's (or libpq's) own reason, the
first line of the driver's message. Everything else propagates unchanged.
"""

from __future__ import annotations

import enum
import re
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Final

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolCheckoutTimeout

from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    ConfigurationError,
    ConnectionLostError,
    DatabaseAccessError,
    DeadlockException,
    PessimisticLockException,
    PoolTimeoutError,
    SerializationFailureException,
    StatementTimeoutError,
)
from portfolio_core.units import Seconds

SERIALIZATION_FAILURE: Final = "40001"
DEADLOCK_DETECTED: Final = "40P01"
LOCK_NOT_AVAILABLE: Final = "55P03"
QUERY_CANCELED: Final = "57014"
INSUFFICIENT_PRIVILEGE: Final = "42501"
INVALID_CATALOG_NAME: Final = "3D000"
_SERVER_GONE: Final = frozenset({"57P01", "57P02", "57P03"})
READ_ONLY_TRANSACTION: Final = "25006"
# The library never PREPAREs by name: these come from the driver's own
# statements crossing clients on a transaction pooler's server connections.
_POOLER_STATEMENT_CLASH: Final = frozenset({"42P05", "26000"})

# psycopg2 gives a failed connect no SQLSTATE: the server's FATAL text says it.
_REFUSALS: Final = (
    (re.compile(r"FATAL:\s+password authentication failed"), "28P01"),
    (re.compile(r"FATAL:\s+(role .* does not exist|no pg_hba\.conf entry)"), "28000"),
    (re.compile(r"FATAL:\s+role .* is not permitted to log in"), "28000"),
    (re.compile(r"FATAL:\s+database .* does not exist"), INVALID_CATALOG_NAME),
    (re.compile(r"FATAL:\s+permission denied for database"), INSUFFICIENT_PRIVILEGE),
)


class Failure(enum.Enum):
    """What kind of failure a database error is."""

    SERIALIZATION = "serialization_failure"
    DEADLOCK = "deadlock"
    LOCK_NOT_AVAILABLE = "lock_not_available"
    CONNECTION_LOST = "connection_lost"
    ACCESS_DENIED = "access_denied"
    STATEMENT_TIMEOUT = "statement_timeout"
    POOL_TIMEOUT = "pool_timeout"
    POOLER_STATEMENT_CLASH = "pooler_statement_clash"
    OTHER = "other"


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error, wrapped by SQLAlchemy or not (None if it has none)."""
    candidates: list[object] = [error]
    if isinstance(error, DBAPIError):
        # An adapter's own exception (SQLAlchemy's asyncpg adapter) may keep the
        # driver's error, which carries the SQLSTATE, as its __cause__.
        candidates[:0] = [error.orig, getattr(error.orig, "__cause__", None)]
    for candidate in candidates:
        for attribute in ("pgcode", "sqlstate"):
            code = getattr(candidate, attribute, None)
            if isinstance(code, str) and code:
                return code
    return None


def refusal_sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a refused connect or access (28xxx, 3D000, 42501), else None.

    From the error's SQLSTATE if it has one, else from the server's FATAL
    message (psycopg2's failed connect carries no SQLSTATE).
    """
    code = sqlstate_of(error)
    if code is not None:
        refused = code.startswith("28") or code in (INVALID_CATALOG_NAME, INSUFFICIENT_PRIVILEGE)
        return code if refused else None
    if isinstance(error, OperationalError):
        text = str(error.orig)
        for pattern, refused_code in _REFUSALS:
            if pattern.search(text):
                return refused_code
    return None


def reason_of(error: BaseException) -> str:
    """The server's (or libpq's) own words: the first line of the driver's message."""
    orig = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    first = lines[0] if lines else type(orig).__name__
    # libpq prefixes the server's words with where it tried: keep the words.
    fatal = re.search(r"FATAL:\s+(.*)", first)
    return (fatal.group(1) if fatal else first)[:500]


def classify(error: BaseException) -> Failure:
    """Classify a SQLAlchemy/driver error by SQLSTATE or connection loss."""
    if isinstance(error, PoolCheckoutTimeout):
        return Failure.POOL_TIMEOUT
    code = sqlstate_of(error)
    if refusal_sqlstate(error) is not None:
        return Failure.ACCESS_DENIED
    if code == QUERY_CANCELED:
        return Failure.STATEMENT_TIMEOUT
    if code == SERIALIZATION_FAILURE:
        return Failure.SERIALIZATION
    if code == DEADLOCK_DETECTED:
        return Failure.DEADLOCK
    if code == LOCK_NOT_AVAILABLE:
        return Failure.LOCK_NOT_AVAILABLE
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return Failure.CONNECTION_LOST
    if code is not None and (code.startswith("08") or code in _SERVER_GONE):
        return Failure.CONNECTION_LOST
    if code == READ_ONLY_TRANSACTION:
        return Failure.CONNECTION_LOST
    if code in _POOLER_STATEMENT_CLASH:
        return Failure.POOLER_STATEMENT_CLASH
    if code is None and isinstance(error, OperationalError):
        # Every error the server sends has a SQLSTATE; none means the client
        # library failed to talk to it (refused, unreachable, reset).
        return Failure.CONNECTION_LOST
    return Failure.OTHER


def translate(
    error: DBAPIError | PoolCheckoutTimeout,
    *,
    entity_type: str | None = None,
    entity_id: object = None,
    during_commit: bool = False,
    lock_timeout: Seconds | None = None,
) -> Exception | None:
    """The portfolio_core error for ``error``, or None if it is not one we translate."""
    failure = classify(error)
    code = sqlstate_of(error)
    if failure is Failure.POOLER_STATEMENT_CLASH:
        return ConfigurationError(
            f"prepared statement clash (SQLSTATE {code}) on {entity_type} {entity_id}: "
            "a transaction-mode pooler sits in between; create the engine with "
            "transaction_pooler=True"
        )
    if failure is Failure.POOL_TIMEOUT:
        return PoolTimeoutError(f"no pooled database connection came free: {reason_of(error)}")
    if failure is Failure.ACCESS_DENIED:
        refused = refusal_sqlstate(error)
        return DatabaseAccessError(
            f"the database refused access (SQLSTATE {refused}): {reason_of(error)}",
            sqlstate=refused,
        )
    if failure is Failure.STATEMENT_TIMEOUT:
        return StatementTimeoutError(
            f"statement cancelled on {entity_type} {entity_id} (SQLSTATE {code}): "
            f"{reason_of(error)}"
        )
    if failure is Failure.CONNECTION_LOST:
        if during_commit:
            return CommitOutcomeUnknownException(
                f"connection lost during COMMIT of {entity_type} {entity_id}: "
                f"the transaction may or may not have committed ({reason_of(error)})",
                entity_type=entity_type,
                entity_id=entity_id,
            )
        return ConnectionLostError(
            f"database connection failed or lost before COMMIT ({code or 'no SQLSTATE'}): "
            f"{reason_of(error)}"
        )
    if failure is Failure.DEADLOCK:
        return DeadlockException(
            f"deadlock detected on {entity_type} {entity_id} (SQLSTATE {code})",
            # Unnamed here (e.g. a flush): ConcurrencyService.run names its entity.
            entities=[(entity_type, entity_id)] if entity_type is not None else [],
        )
    if failure is Failure.SERIALIZATION:
        return SerializationFailureException(
            f"could not serialize access to {entity_type} {entity_id} (SQLSTATE {code})",
            entity_type=entity_type,
            entity_id=entity_id,
        )
    if failure is Failure.LOCK_NOT_AVAILABLE:
        return PessimisticLockException(
            f"lock on {entity_type} {entity_id} not available (SQLSTATE {code})",
            entity_type=entity_type,
            entity_id=entity_id,
            sqlstate=code,
            timeout=lock_timeout,
        )
    return None


class _Translated:
    """The context manager :func:`translated` returns (a class: it wraps every statement)."""

    __slots__ = ("during_commit", "entity_id", "entity_type", "lock_timeout")

    def __init__(
        self,
        entity_type: str | None,
        entity_id: object,
        during_commit: bool,
        lock_timeout: Seconds | None,
    ) -> None:
        self.entity_type = entity_type
        self.entity_id = entity_id
        self.during_commit = during_commit
        self.lock_timeout = lock_timeout

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not isinstance(error, DBAPIError | PoolCheckoutTimeout):
            return
        mapped = translate(
            error,
            entity_type=self.entity_type,
            entity_id=self.entity_id,
            during_commit=self.during_commit,
            lock_timeout=self.lock_timeout,
        )
        if mapped is None:
            return
        raise mapped from error


def translated(
    *,
    entity_type: str | None = None,
    entity_id: object = None,
    during_commit: bool = False,
    lock_timeout: Seconds | None = None,
) -> AbstractContextManager[None]:
    """Run a block, re-raising classified driver errors as portfolio_core errors."""
    return _Translated(entity_type, entity_id, during_commit, lock_timeout)
