"""A store call (:class:`StoreCall`): one unit of work's body and how an attempt runs it.

What every call of ``store_work`` shares: the call itself (its body, key,
fingerprint, lock mode and conflicts, one attempt in a fresh unit of work),
``execute_versioned``'s answer (:class:`Versioned`), the argument checks run
before any SQL, and how a portfolio is loaded for a change in each lock mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar
from uuid import UUID

from sqlalchemy import select

from portfolio_core.concurrency.hot_rows import HotRows
from portfolio_core.domain import arguments
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import (
    PortfolioCoreError,
    SerializationFailureException,
    StaleDataException,
    ValidationError,
    VersionMismatchError,
)
from portfolio_core.persistence import idempotency
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository
from portfolio_core.persistence.schema import portfolios
from portfolio_core.units import Seconds

T = TypeVar("T")

LockMode = Literal["auto", "optimistic", "nowait", "wait"]
LOCK_MODES: tuple[LockMode, ...] = ("auto", "optimistic", "nowait", "wait")
"""``"auto"`` (the default of execute): optimistic first, row-locked after a version
conflict, and row-locked first while the portfolio is hot (``concurrency.hot_rows``)."""

Body = Callable[[PostgreSQLPortfolioRepository], T]
"""A unit of work's body: what it does with the unit of work's repository."""


@dataclass(eq=False)
class StoreCall(Generic[T]):
    """One store call: its unit-of-work body and what running and resolving it needs.

    ``fingerprint`` is the request fingerprint stored with ``key``: known up
    front, or set by the body once it knows it (``execute`` fingerprints the
    operations performed); a lost COMMIT is resolved against it.
    """

    body: Body[T]
    entity_id: object
    commit: bool = True
    key: str | None = None
    fingerprint: str | None = None
    portfolio: Portfolio | None = None
    """``execute``: the portfolio its last attempt loaded (committed version after COMMIT)."""
    operation: str = "call"
    """The store method's name (for observability listeners, as ``lock_mode``)."""
    lock_mode: LockMode | None = None
    """``execute``'s ``lock=``; ``"wait"`` for calls that queue on row locks; else None."""
    conflicts: int = 0
    """Attempts ended by a version conflict or, at a stricter isolation level, a
    serialization failure (``lock="auto"`` takes the row lock after one)."""
    hot_rows: HotRows | None = None
    """``execute``: told of its conflicts, and asked whether ``"auto"`` locks first."""
    locked_first: bool = False
    """``lock="auto"`` on a hot portfolio: the current attempt locked without a conflict first."""

    def attempt(self, repository: PostgreSQLPortfolioRepository) -> T:
        """One attempt in a fresh unit of work: the body, then COMMIT (not for reads)."""
        try:
            # Before COMMIT nothing can have committed: a connection lost here
            # (say, on the key lookup) is retried, never "outcome unknown".
            with translated(entity_type="Portfolio", entity_id=self.entity_id):
                result = self.body(repository)
            if self.commit:
                repository.session.commit()
        except VersionMismatchError:
            raise  # the caller's If-Match: never retried, so no lock is wanted
        except (StaleDataException, SerializationFailureException):
            self.conflicts += 1
            if self.hot_rows is not None:
                self.hot_rows.note_conflict(self.entity_id)
            raise
        if self.hot_rows is not None and self.lock_mode == "auto" and not self.conflicts:
            self.hot_rows.note_commit(self.entity_id, locked=self.locked_first)
        return result


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """``execute_versioned``'s answer: the operation's result and the version committed.

    ``version`` is the portfolio's version after the call: the new ETag (for a
    repeated idempotency key, the version the portfolio is at now).
    """

    result: T
    version: int


def checked_lock_mode(lock: str) -> LockMode:
    """``lock`` if it is one of LOCK_MODES; ValidationError otherwise."""
    for mode in LOCK_MODES:
        if lock == mode:
            return mode
    raise ValidationError("lock", lock, f"must be one of {LOCK_MODES}")


def checked_key(idempotency_key: str | None) -> str | None:
    """The validated idempotency key (None stays None)."""
    return None if idempotency_key is None else idempotency.validate_key(idempotency_key)


def checked_expected(expected_version: int | None, name: str = "expected_version") -> int | None:
    """A validated expected version (an If-Match); None stays None."""
    return arguments.version(expected_version, name, minimum=1)


def check_version(portfolio_id: UUID, expected: int | None, actual: int | None) -> None:
    """VersionMismatchError unless ``expected`` is None or the ``actual`` committed version."""
    if expected is not None and actual != expected:
        raise VersionMismatchError("Portfolio", portfolio_id, expected, actual)


def locked_version(repository: PostgreSQLPortfolioRepository, portfolio_id: UUID) -> int | None:
    """The portfolio's committed version, its row locked until the end of the transaction."""
    statement = (
        select(portfolios.c.version).where(portfolios.c.id == portfolio_id).with_for_update()
    )
    return repository.session.execute(statement).scalar_one_or_none()


def committed_version(call: StoreCall[T]) -> int:
    """The version ``execute``'s call left its portfolio at (after it ran)."""
    if call.portfolio is None:
        raise PortfolioCoreError("the call has not loaded its portfolio")
    return call.portfolio.version


def load_for_change(
    repository: PostgreSQLPortfolioRepository,
    portfolio_id: UUID,
    lock: LockMode,
    lock_timeout: Seconds | None,
) -> Portfolio:
    """Load a portfolio to change it: plain read (optimistic, auto) or row-locked (nowait/wait).

    A bounded ``"wait"`` sets its lock_timeout in the locking statement itself,
    for the rest of the unit of work (its runner commits next).
    """
    if lock in ("optimistic", "auto"):
        return repository.get(portfolio_id)
    if lock == "wait" and lock_timeout is not None:
        return repository.lock_for_change(portfolio_id, lock_timeout)
    return repository.get_portfolio_for_update(
        portfolio_id, nowait=lock == "nowait", lock_timeout=lock_timeout
    )
