"""Lock attempts that fail cleanly: lock_timeout per statement, savepoint protection.

A failed lock attempt (NOWAIT, lock_timeout) aborts the PostgreSQL
transaction it ran in. :func:`guarded_lock_attempt` keeps the caller's unit of
work usable: a transaction that has done nothing yet is simply rolled back
(nothing is lost, no savepoint round trips are paid); one that holds work gets
a savepoint around the attempt. :func:`lock_for_change` row-locks for a store's
own unit of work in one statement that also sets its lock_timeout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, Protocol
from uuid import UUID

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from portfolio_core.domain import arguments
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import PessimisticLockException, PortfolioNotFoundError, ValidationError
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.row_load import SETS_LOCK_TIMEOUT, load_for_change
from portfolio_core.persistence.schema import portfolios
from portfolio_core.persistence.session import PortfolioSession
from portfolio_core.persistence.transaction_state import holds_connection
from portfolio_core.units import Seconds

MAX_LOCK_TIMEOUT_MS: Final = 2**31 - 1
"""PostgreSQL's largest lock_timeout (INT_MAX milliseconds)."""

_SET_LOCK_TIMEOUT: Final = text(
    "SELECT current_setting('lock_timeout'), set_config('lock_timeout', :t, true)"
)
_RESTORE_LOCK_TIMEOUT: Final = text("SELECT set_config('lock_timeout', :t, true)")


class Executes(Protocol):
    """A Session or Connection: anything with ``execute(statement, params)``."""

    def execute(self, statement: Any, params: Any = ..., /) -> Any: ...


def lock_timeout_setting(seconds: Seconds) -> str:
    """PostgreSQL's lock_timeout text for ``seconds`` (finite, > 0, at most PostgreSQL's), in ms."""
    checked = arguments.lock_timeout(seconds)
    if checked is None:
        raise ValidationError("lock_timeout", seconds, "must be a number of seconds > 0")
    return f"{min(MAX_LOCK_TIMEOUT_MS, max(1, round(checked * 1000)))}ms"


@contextmanager
def local_lock_timeout(executor: Executes, seconds: Seconds | None) -> Iterator[None]:
    """``SET LOCAL lock_timeout`` for the block only; the previous value comes back after."""
    if seconds is None:
        yield
        return
    previous = executor.execute(_SET_LOCK_TIMEOUT, {"t": lock_timeout_setting(seconds)}).one()[0]
    yield
    executor.execute(_RESTORE_LOCK_TIMEOUT, {"t": previous})


@contextmanager
def guarded_lock_attempt(session: Session) -> Iterator[None]:
    """Run a lock attempt so that PessimisticLockException leaves ``session`` usable."""
    if isinstance(session, PortfolioSession):
        has_db_work = holds_connection(session)
    else:
        # A plain Session is not tracked: any open transaction may hold work.
        has_db_work = session.in_transaction()
    fresh = not has_db_work and not (session.new or session.dirty or session.deleted)
    savepoint = None if fresh else session.begin_nested()
    try:
        yield
    except PessimisticLockException:
        if savepoint is not None:
            savepoint.rollback()
        else:
            session.rollback()
        raise
    if savepoint is not None:
        savepoint.commit()


# FOR UPDATE with its lock_timeout set by the statement itself: the scan
# evaluates the volatile filter before LockRows waits for the row, so the wait
# is bounded by the new setting, which stays until the end of the transaction.
# Loaded as a Core row (persistence.row_load); this ORM statement when the two could differ.
_LOCK_WITHIN_TIMEOUT: Final = (
    select(Portfolio)
    .where(portfolios.c.id == bindparam("pid"), SETS_LOCK_TIMEOUT)
    .with_for_update(of=portfolios)
    .execution_options(populate_existing=True)
)


def lock_for_change(session: Session, pid: UUID, lock_timeout: Seconds) -> Portfolio:
    """``PostgreSQLPortfolioRepository.lock_for_change``: one statement, lock_timeout kept."""
    params = {"pid": pid, "lock_timeout": lock_timeout_setting(lock_timeout)}
    with (
        guarded_lock_attempt(session),
        translated(entity_type="Portfolio", entity_id=pid, lock_timeout=lock_timeout),
    ):
        portfolio = load_for_change(
            session, locking=True, orm_statement=_LOCK_WITHIN_TIMEOUT, params=params
        )
    if portfolio is None:
        raise PortfolioNotFoundError(pid)
    return portfolio


def advisory_key(entity_type: str, entity_id: object) -> int:
    """A stable signed 64-bit advisory-lock key for an entity, the same in every process.

    A collision only makes two entities share a lock (more waiting, never
    less safety): correctness comes from the version check, not the lock.
    """
    digest = hashlib.blake2b(f"{entity_type}:{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
