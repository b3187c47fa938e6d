"""The naive-ORM contender: what a user would write instead of the library.

A minimal SQLAlchemy 2.x declarative mapping of the ``portfolios`` table (its
own ``DeclarativeBase``, only the columns a deposit touches, ``version_id_col``
on ``version``), a ``Session`` per operation from a ``sessionmaker`` on its own
engine (same pool size as the library's), and a tenacity retry on a stale
version or a serialization failure/deadlock, with a tiny jitter:

* optimistic: ``session.get`` + deposit + commit (the flush's
  ``UPDATE ... WHERE version = :old`` raises StaleDataError if it moved);
* hot (``lock="wait"``): ``session.get(..., with_for_update=True)`` + commit.

It writes no audit event, no idempotency key and checks no domain invariant
beyond the table's constraints (``portfolios`` has no triggers; the event
trigger guards ``portfolio_events``, which this user never writes): that is
the point of comparing with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import sqlalchemy
from sqlalchemy import DateTime, Numeric, func
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, wait_random

from portfolio_core.bench.harness import AsyncOperation, Operation
from portfolio_core.units import Seconds

MAX_ATTEMPTS: Final = 10_000
"""Stop after this many attempts: far more than a hot row needs, as every op must land."""

JITTER: Final[Seconds] = 0.001
"""At most this long a random wait between attempts (tenacity's ``wait_random``)."""

RETRIED_SQLSTATES: Final = frozenset({"40001", "40P01"})
"""Serialization failure and deadlock: the driver errors a user would retry."""


class Base(DeclarativeBase):
    """The naive user's own declarative base (nothing shared with the library)."""


class Portfolio(Base):
    """The ``portfolios`` row as a naive user maps it: the columns a deposit needs."""

    __tablename__ = "portfolios"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    cash_balance: Mapped[Decimal] = mapped_column(Numeric(24, 8))
    total_deposits: Mapped[Decimal] = mapped_column(Numeric(24, 8))
    version: Mapped[int] = mapped_column()
    last_updated: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    __mapper_args__: Any = {"version_id_col": version}  # noqa: RUF012 (declarative reads it)


def is_retryable(error: BaseException) -> bool:
    """A stale version (optimistic) or a serialization failure / deadlock from the server."""
    if isinstance(error, StaleDataError):
        return True
    return isinstance(error, (OperationalError, DBAPIError)) and (
        getattr(error.orig, "pgcode", None) in RETRIED_SQLSTATES
    )


def _retrying() -> dict[str, Any]:
    """Tenacity's arguments: retry a conflict, no real backoff, give up very late."""
    return {
        "retry": retry_if_exception(is_retryable),
        "stop": stop_after_attempt(MAX_ATTEMPTS),
        "wait": wait_random(0, JITTER),
        "reraise": True,
    }


class NaiveOrm:
    """A sessionmaker on its own engine, and the deposit a naive user would write."""

    def __init__(self, url: URL, pool_size: int, max_overflow: int = 4) -> None:
        self.engine = sqlalchemy.create_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Dispose of the engine's pool."""
        self.engine.dispose()

    def deposit(self, portfolio_id: uuid.UUID, amount: Decimal, *, lock: bool) -> int:
        """One committed deposit (a Session per attempt); returns the attempts it took."""
        for attempt in Retrying(**_retrying()):
            with attempt, self.sessions.begin() as session:
                portfolio = session.get(
                    Portfolio, portfolio_id, with_for_update=True if lock else None
                )
                if portfolio is None:
                    raise LookupError(f"no portfolio {portfolio_id}")
                portfolio.cash_balance += amount
                portfolio.total_deposits += amount
        return attempt.retry_state.attempt_number

    def operation(
        self, ids: Sequence[str], pick: Callable[[int, int], int], amount: Decimal, *, lock: bool
    ) -> Operation:
        """``operation(worker, index)`` for the harness: deposit into ``ids[pick(...)]``."""
        uuids = [uuid.UUID(pid) for pid in ids]

        def naive_deposit(worker: int, index: int) -> int:
            return self.deposit(uuids[pick(worker, index)], amount, lock=lock)

        return naive_deposit


class AsyncNaiveOrm:
    """The same user with asyncio: an async_sessionmaker on its own asyncpg engine."""

    def __init__(self, url: URL, pool_size: int, max_overflow: int = 4) -> None:
        self.engine = create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def close(self) -> None:
        """Dispose of the engine's pool."""
        await self.engine.dispose()

    async def deposit(self, portfolio_id: uuid.UUID, amount: Decimal, *, lock: bool) -> int:
        """One committed deposit (an AsyncSession per attempt); returns the attempts it took."""
        async for attempt in AsyncRetrying(**_retrying()):
            with attempt:
                async with self.sessions.begin() as session:
                    portfolio = await session.get(
                        Portfolio, portfolio_id, with_for_update=True if lock else None
                    )
                    if portfolio is None:
                        raise LookupError(f"no portfolio {portfolio_id}")
                    portfolio.cash_balance += amount
                    portfolio.total_deposits += amount
        return attempt.retry_state.attempt_number

    def operation(
        self, ids: Sequence[str], pick: Callable[[int, int], int], amount: Decimal, *, lock: bool
    ) -> AsyncOperation:
        """``await operation(task, index)`` for the harness: deposit into ``ids[pick(...)]``."""
        uuids = [uuid.UUID(pid) for pid in ids]

        async def naive_deposit(worker: int, index: int) -> int:
            return await self.deposit(uuids[pick(worker, index)], amount, lock=lock)

        return naive_deposit
