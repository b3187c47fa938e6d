"""The exception tree of portfolio_core.

Every error the library raises on purpose is a :class:`PortfolioCoreError`;
driver and SQLAlchemy errors are translated once, at the persistence boundary
(``portfolio_core.persistence.errors``), and chained with ``raise ... from``.
Errors carry the objects they concern as attributes, not only as text::

    PortfolioCoreError
    ├── ConfigurationError            no database URL, bad URL, bad settings
    ├── ValidationError(ValueError)   field, value, reason: rejected before any SQL
    ├── InsufficientFundsError        portfolio_id, requested, available
    ├── PortfolioNotFoundError(LookupError)   portfolio_id
    ├── PositionNotFoundError(LookupError)    portfolio_id, symbol
    ├── IdempotencyConflictError  key: the key was used before for a different request
    ├── UnrecordedChangeError         portfolio_id: a change no domain operation recorded
    ├── ReentrantUnitOfWorkError      portfolio_id: a store call nested in one on the same portfolio
    ├── DatabaseConnectionError       the database could not be reached; the message
    │   │                             carries the server's (or libpq's) own reason
    │   ├── ConnectionLostError       the connection broke before COMMIT (retryable)
    │   ├── DatabaseAccessError       sqlstate: the server refused (28xxx credentials,
    │   │                             3D000 unknown database, 42501 permission): never retried
    │   └── PoolTimeoutError          no pooled connection came free in time: not retried
    ├── StatementTimeoutError         sqlstate 57014: statement_timeout (or a cancel
    │                                 request) ended a statement: not retried
    └── ConcurrencyException          entity_type, entity_id
        ├── StaleDataException        expected_version, actual_version (re-read)
        ├── SerializationFailureException  SQLSTATE 40001 (retryable)
        ├── OptimisticLockException   retries, last_error: conflicts outlasted the policy
        ├── PessimisticLockException  sqlstate, timeout: a row or advisory lock not obtained
        ├── DeadlockException         entities: PostgreSQL chose this transaction as victim
        └── CommitOutcomeUnknownException  the connection died during COMMIT: it may have
                                           committed (idempotency_key set when the outcome
                                           could not be resolved)

Suffixes: the concurrency subtree keeps the seed's ``...Exception`` style
throughout; everything else is ``...Error``. ``SerializationFailureError`` and
``CommitOutcomeUnknownError``, the names of earlier releases, remain as aliases
of the same classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final
from uuid import UUID

from portfolio_core.units import Seconds

SHOWN_VALUE_LENGTH: Final = 80
"""How many characters of a rejected value an error message quotes at most."""


def shown_value(value: object) -> str:
    """``repr(value)`` cut to SHOWN_VALUE_LENGTH characters, for error messages.

    A rejected input may be 10 MB long, or an int too large for ``repr``
    (Python refuses to print ints of more than 4300 digits): the message must
    neither echo it whole nor fail while being built.
    """
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} that cannot be printed>"
    if len(text) <= SHOWN_VALUE_LENGTH:
        return text
    return f"{text[: SHOWN_VALUE_LENGTH - 20]}...<{len(text)} characters>"


__all__ = [
    "CommitOutcomeUnknownError",
    "CommitOutcomeUnknownException",
    "ConcurrencyException",
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseAccessError",
    "DatabaseConnectionError",
    "DeadlockException",
    "IdempotencyConflictError",
    "InsufficientFundsError",
    "OptimisticLockException",
    "PessimisticLockException",
    "PoolTimeoutError",
    "PortfolioCoreError",
    "PortfolioNotFoundError",
    "PositionNotFoundError",
    "ReentrantUnitOfWorkError",
    "SerializationFailureError",
    "SerializationFailureException",
    "StaleDataException",
    "StatementTimeoutError",
    "UnrecordedChangeError",
    "ValidationError",
]


class PortfolioCoreError(Exception):
    """Base class of every error raised by portfolio_core."""


class ConfigurationError(PortfolioCoreError):
    """The library was given no usable configuration (for example no database URL)."""


class ValidationError(PortfolioCoreError, ValueError):
    """An input was rejected before any SQL ran.

    ``field`` names the argument, ``value`` is what was given and ``reason``
    says what is wrong with it. The message quotes ``value`` cut to
    SHOWN_VALUE_LENGTH characters (see :func:`shown_value`).
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={shown_value(value)} {reason}")


class InsufficientFundsError(PortfolioCoreError):
    """A debit larger than the portfolio's cash balance."""

    def __init__(self, portfolio_id: UUID, requested: Decimal, available: Decimal) -> None:
        self.portfolio_id = portfolio_id
        self.requested = requested
        self.available = available
        super().__init__(f"portfolio {portfolio_id} has {available} in cash, {requested} is needed")


class PortfolioNotFoundError(PortfolioCoreError, LookupError):
    """No portfolio with this id exists."""

    def __init__(self, portfolio_id: UUID) -> None:
        self.portfolio_id = portfolio_id
        super().__init__(f"portfolio {portfolio_id} not found")


class PositionNotFoundError(PortfolioCoreError, LookupError):
    """The portfolio holds no open position in this symbol."""

    def __init__(self, portfolio_id: UUID, symbol: str) -> None:
        self.portfolio_id = portfolio_id
        self.symbol = symbol
        super().__init__(f"portfolio {portfolio_id} has no open position in {symbol}")


class IdempotencyConflictError(PortfolioCoreError):
    """An idempotency key came back with a different request than the one stored with it.

    ``key`` is the key; ``stored_fingerprint`` and ``request_fingerprint`` the
    two requests' fingerprints (``request_fingerprint`` is None when the
    request could not even be re-applied, ``reason`` says why).
    """

    def __init__(
        self,
        key: str,
        *,
        stored_fingerprint: str | None = None,
        request_fingerprint: str | None = None,
        reason: str = "a different request",
    ) -> None:
        self.key = key
        self.stored_fingerprint = stored_fingerprint
        self.request_fingerprint = request_fingerprint
        self.reason = reason
        super().__init__(f"idempotency key {key!r} was already used for {reason}")


class UnrecordedChangeError(PortfolioCoreError):
    """A flush would change a portfolio that no domain operation recorded.

    Raised before anything is written: such a change would bump the version
    with nothing in the audit trail, and replay could no longer reproduce the
    stored state. ``portfolio_id`` names the portfolio, ``reason`` says how.
    """

    def __init__(self, portfolio_id: object, reason: str) -> None:
        self.portfolio_id = portfolio_id
        self.reason = reason
        super().__init__(f"portfolio {portfolio_id}: {reason}")


class ReentrantUnitOfWorkError(PortfolioCoreError):
    """A store call was made from inside another store call on the same portfolio.

    The inner unit of work would wait for the row lock (or version) the outer
    one holds until it commits, which it never does: raised at once instead.
    """

    def __init__(self, portfolio_id: object) -> None:
        self.portfolio_id = portfolio_id
        super().__init__(
            f"a unit of work on portfolio {portfolio_id} is already running in this "
            "thread/task: nested store calls on the same portfolio would wait on themselves"
        )


class DatabaseConnectionError(PortfolioCoreError):
    """The database stayed unreachable for every attempt the retry policy allowed."""

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        self.attempts = attempts
        super().__init__(message)


class ConnectionLostError(DatabaseConnectionError):
    """The connection broke before COMMIT was sent: nothing was committed; retryable."""


class DatabaseAccessError(DatabaseConnectionError):
    """The server answered and refused: never retried, the same request gets the same answer.

    ``sqlstate`` is PostgreSQL's class 28 (invalid authorization: wrong
    password, unknown role, no pg_hba entry), 3D000 (no such database) or
    42501 (insufficient privilege); the message carries the server's reason.
    """

    def __init__(self, message: str, *, sqlstate: str | None) -> None:
        self.sqlstate = sqlstate
        super().__init__(message)


class PoolTimeoutError(DatabaseConnectionError):
    """No connection of the engine's pool came free within ``pool_timeout``.

    Not retried: every connection is busy, so another wait in the same unit
    of work would only add to the queue; raise ``pool_size`` or lower the
    concurrency instead.
    """


class StatementTimeoutError(PortfolioCoreError):
    """A statement was cancelled (SQLSTATE 57014): ``statement_timeout`` or a cancel request.

    The transaction was rolled back, nothing was committed. Not retried: the
    same unit of work would run into the same time budget again, adding load
    to a server that is already slow; ``sqlstate`` is ``"57014"`` and the
    message carries the server's reason.
    """

    sqlstate = "57014"


class ConcurrencyException(PortfolioCoreError):
    """Base class of the errors caused by concurrent access to an entity."""

    def __init__(
        self, message: str, *, entity_type: str | None = None, entity_id: object = None
    ) -> None:
        self.entity_type = entity_type
        self.entity_id = entity_id
        super().__init__(message)


class StaleDataException(ConcurrencyException):
    """A writer's copy of an entity was older than the committed one.

    ``expected_version`` is the version the writer loaded; ``actual_version``
    is re-read from the database after the conflict (None if the row is gone).
    """

    def __init__(
        self,
        entity_type: str,
        entity_id: object,
        expected_version: int | None,
        actual_version: int | None,
    ) -> None:
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"{entity_type} {entity_id} is stale: expected version {expected_version}, "
            f"database has {actual_version}",
            entity_type=entity_type,
            entity_id=entity_id,
        )


class VersionMismatchError(StaleDataException):
    """The caller's ``expected_version`` (an If-Match) is not the committed version.

    Raised at once by ``execute``/``transfer``/``update_all_prices`` given
    ``expected_version``: never retried (a retry would meet the same version),
    not counted as a version conflict. ``expected_version`` is the caller's,
    ``actual_version`` the committed one (None if the portfolio is gone).
    """


class SerializationFailureException(ConcurrencyException):
    """PostgreSQL could not serialize the transaction (SQLSTATE 40001); retryable."""

    sqlstate = "40001"


class OptimisticLockException(ConcurrencyException):
    """Version conflicts (or serialization failures) outlasted the retry policy.

    ``retries`` is how many times the unit of work was re-run after its first
    attempt; ``last_error`` is the conflict that ended the last attempt.
    """

    def __init__(
        self,
        message: str,
        *,
        retries: int,
        entity_type: str | None = None,
        entity_id: object = None,
        last_error: BaseException | None = None,
    ) -> None:
        self.retries = retries
        self.last_error = last_error
        super().__init__(message, entity_type=entity_type, entity_id=entity_id)


class PessimisticLockException(ConcurrencyException):
    """A row lock or advisory lock was not obtained (NOWAIT, SKIP LOCKED or timeout).

    ``sqlstate`` is PostgreSQL's code (55P03 for lock_not_available) when the
    database reported it; ``timeout`` the lock timeout in seconds, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        entity_type: str | None = None,
        entity_id: object = None,
        sqlstate: str | None = None,
        timeout: Seconds | None = None,
        retries: int = 0,
    ) -> None:
        self.sqlstate = sqlstate
        self.timeout = timeout
        self.retries = retries
        super().__init__(message, entity_type=entity_type, entity_id=entity_id)


class DeadlockException(ConcurrencyException):
    """PostgreSQL detected a deadlock (SQLSTATE 40P01) and aborted this transaction.

    ``entities`` lists what the unit of work was working on, as
    ``(entity_type, entity_id)`` pairs.
    """

    def __init__(
        self,
        message: str,
        *,
        entities: Sequence[tuple[str, object]] = (),
        retries: int = 0,
    ) -> None:
        self.entities = tuple(entities)
        self.retries = retries
        first = self.entities[0] if self.entities else (None, None)
        super().__init__(message, entity_type=first[0], entity_id=first[1])


class CommitOutcomeUnknownException(ConcurrencyException):
    """The connection was lost while COMMIT was in flight.

    The transaction may or may not have committed, so it is never retried
    blindly.  ``idempotency_key`` is set when the operation carried one.
    """

    def __init__(
        self,
        message: str,
        *,
        entity_type: str | None = None,
        entity_id: object = None,
        idempotency_key: str | None = None,
    ) -> None:
        self.idempotency_key = idempotency_key
        super().__init__(message, entity_type=entity_type, entity_id=entity_id)


# Names of earlier releases, kept so callers' ``except`` clauses keep working.
SerializationFailureError = SerializationFailureException
CommitOutcomeUnknownError = CommitOutcomeUnknownException
