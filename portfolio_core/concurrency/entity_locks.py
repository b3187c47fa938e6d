"""Entity locks: PostgreSQL advisory transaction locks on entities, across processes and hosts.

Never an in-process ``threading.Lock``: the lock lives in the database, so
every process and host using it sees it. It is a transaction lock, released
when the transaction holding it ends. The sync and asyncio forms take it with
the same code (:class:`AdvisoryLock`), the asyncio one through ``run_sync``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from portfolio_core.concurrency.metrics import ConcurrencyMetrics, record_failure
from portfolio_core.errors import ConfigurationError, PessimisticLockException
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.locking import (
    Executes,
    advisory_key,
    guarded_lock_attempt,
    local_lock_timeout,
)
from portfolio_core.units import Seconds

if TYPE_CHECKING:
    # Only with the 'async' extra (greenlet); never imported at run time from here.
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

_TRY_LOCK: Final = text("SELECT pg_try_advisory_xact_lock(:key)")
_LOCK: Final = text("SELECT pg_advisory_xact_lock(:key)")


@contextmanager
def entity_lock_held(
    lock: AdvisoryLock, *, session: Session | None, engine: Engine | None
) -> Iterator[None]:
    """Hold ``lock`` for the block: in ``session``'s transaction, else on a
    connection of ``engine`` whose transaction stays open for the block."""
    if session is not None:
        lock.take_in_session(session)
        yield
        return
    if engine is None:
        raise ConfigurationError(
            "entity_lock without a session needs ConcurrencyService(engine=...)"
        )
    with engine.connect() as connection, connection.begin():
        lock.take(connection)
        yield


@asynccontextmanager
async def async_entity_lock_held(
    lock: AdvisoryLock, *, session: AsyncSession | None, engine: AsyncEngine | None
) -> AsyncIterator[None]:
    """:func:`entity_lock_held` for asyncio: the same lock, taken through ``run_sync``."""
    if session is not None:
        await session.run_sync(lock.take_in_session)
        yield
        return
    if engine is None:
        raise ConfigurationError(
            "async_entity_lock without a session needs an AsyncEngine: "
            "ConcurrencyService(engine=async_engine) or async_engine=..."
        )
    async with engine.connect() as connection, connection.begin():
        await connection.run_sync(lock.take)
        yield


@dataclass(frozen=True, slots=True)
class AdvisoryLock:
    """One request for an entity's advisory transaction lock; a refusal counts in ``metrics``."""

    metrics: ConcurrencyMetrics
    entity_type: str
    entity_id: object
    timeout: Seconds | None
    """None waits as long as it takes, 0 (or less) tries once, more waits at most that long."""

    def take_in_session(self, session: Session) -> None:
        """Take the lock in ``session``'s transaction; a refusal leaves the session usable."""
        with guarded_lock_attempt(session):
            self.take(session)

    def take(self, executor: Executes) -> None:
        """Take the lock in ``executor``'s transaction, or raise PessimisticLockException."""
        key = advisory_key(self.entity_type, self.entity_id)
        try:
            with translated(
                entity_type=self.entity_type, entity_id=self.entity_id, lock_timeout=self.timeout
            ):
                if self.timeout is not None and self.timeout <= 0:
                    if not executor.execute(_TRY_LOCK, {"key": key}).scalar_one():
                        raise PessimisticLockException(
                            f"advisory lock on {self.entity_type} {self.entity_id} "
                            "is held elsewhere",
                            entity_type=self.entity_type,
                            entity_id=self.entity_id,
                            timeout=0.0,
                        )
                else:
                    with local_lock_timeout(executor, self.timeout):
                        executor.execute(_LOCK, {"key": key})
        except PessimisticLockException as error:
            # Counted here, where it happened; a retry loop around the block
            # sees the mark and does not count it again.
            record_failure(
                self.metrics, error, self.entity_type, self.entity_id, 1, mark_counted=True
            )
            raise
