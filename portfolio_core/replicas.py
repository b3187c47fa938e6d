"""Read replicas: store reads on hot standbys, everything else on the primary.

``PortfolioStore(engine, read_engines=[...])`` sends ``get``, ``history`` and
``replay`` to a standby; every unit of work that writes, every aggregate
load inside one, every row lock and every advisory lock stays on ``engine``
(the primary): an advisory lock taken on a standby would succeed while the
primary holds the same lock, excluding nothing, and a row loaded there to be
changed could be stale.

Read-your-writes. After each commit of the store, the primary's
``pg_current_wal_insert_lsn()`` is read (a :class:`ReadToken`). It is read
*after* COMMIT returned, on any connection to the primary: the commit record
was inserted before COMMIT returned, so the insert position is past its end,
whatever ``synchronous_commit`` says (the write or flush position may still
be behind it when commits are asynchronous). An LSN read inside the
transaction before COMMIT would come *before* the commit record: a standby
could reach it and still not show the commit. A standby serves a read needing
a token only once its ``pg_last_wal_replay_lsn()`` (the end of the last
record it replayed) has reached it; a snapshot taken after that shows the
commit. The check runs on the connection the read then uses, in a
transaction of its own just before the read's (so it holds at any isolation
level: a standby's visibility only grows). The token may be a little ahead
(other clients' WAL): the standby then waits a little longer, never shows
less. PostgreSQL 18 has no server-side wait (``WAIT FOR LSN`` comes with 19),
so the read polls, at most ``ReadPolicy.replay_wait``, then goes to the primary.

A standby that cannot be reached (or fails), or lags beyond ``max_lag``, is
left alone for ``retry_standby_after`` seconds and the read goes to the next
standby, then to the primary (with the store's retry policy). Give read
engines a ``connect_timeout`` so that an unreachable host fails fast.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolCheckoutTimeout

from portfolio_core.concurrency.metrics import log_event
from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    ConcurrencyException,
    ConfigurationError,
    DatabaseConnectionError,
    StatementTimeoutError,
)
from portfolio_core.persistence.errors import Failure, classify, translated
from portfolio_core.persistence.isolation import IsolationLevel
from portfolio_core.persistence.read_routing import (
    ReadPolicy,
    ReadRouter,
    ReadToken,
    StandbyStatus,
    as_read_token,
    verdict,
)
from portfolio_core.store_call import StoreCall
from portfolio_core.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")
EngineT = TypeVar("EngineT")

__all__ = ["ReadPolicy", "ReadRouter", "ReadToken", "as_read_token", "router_for"]

STATUS_QUERY: Final = text(
    "SELECT pg_is_in_recovery(),"
    " (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
    "  ELSE pg_current_wal_insert_lsn() END)::text,"
    " (CASE WHEN NOT pg_is_in_recovery() THEN 0"
    # Streaming and everything received replayed: caught up as far as it knows.
    "  WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver)"
    "   AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0"
    "  ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())"
    " END)::float8"
)
"""(in recovery, LSN visible there, lag in seconds or NULL if unknown)."""

TOKEN_QUERY: Final = text(
    "SELECT pg_current_wal_insert_lsn()::text, current_setting('wal_block_size')::int,"
    " pg_size_bytes(current_setting('wal_segment_size'))"
)
"""On the primary: the WAL insert position (past every commit that has returned), page sizes."""

_PAGE_HEADER: Final = 24
_SEGMENT_HEADER: Final = 40
"""Sizes of a WAL page's header and of a segment's first page's (MAXALIGNed, as PostgreSQL's)."""


# Trouble on a standby sends the read elsewhere; the read's own answers
# (PortfolioNotFoundError, ...) are answers, whichever server gave them.
_STANDBY_TROUBLE: Final = (
    SQLAlchemyError,
    DatabaseConnectionError,
    StatementTimeoutError,
    ConcurrencyException,
    OSError,
)
_DOWN: Final = (DatabaseConnectionError, OSError)
_DOWN_FAILURES: Final = (Failure.CONNECTION_LOST, Failure.ACCESS_DENIED, Failure.POOL_TIMEOUT)


@dataclass(frozen=True)
class _Served(Generic[T]):
    value: T


def router_for(
    engines: Sequence[Any], engine_type: type[EngineT], policy: ReadPolicy | None
) -> ReadRouter[EngineT] | None:
    """A ReadRouter over ``engines`` (None if none); ConfigurationError on a non-engine."""
    if isinstance(engines, str | bytes) or not isinstance(engines, Sequence):
        raise ConfigurationError(f"read_engines must be a list of {engine_type.__name__}s")
    for engine in engines:
        if not isinstance(engine, engine_type):
            raise ConfigurationError(
                f"read_engines takes {engine_type.__name__}s, not {type(engine).__name__}"
            )
    return ReadRouter(engines, policy) if engines else None


@contextmanager
def noting_commit(router: ReadRouter[Any] | None) -> Iterator[None]:
    """Around a commit: one whose outcome is unknown leaves its token unknown.

    CommitOutcomeUnknownException, or a cancellation (a task cancelled, Ctrl-C)
    that may have landed while COMMIT was in flight: it may have committed.
    The router then has the store's next read learn a token from the
    primary first (any read after the failure covers it), or read there.
    Other errors are definite: nothing was committed.
    """
    try:
        yield
    except CommitOutcomeUnknownException:
        if router is not None:
            router.note_commit(None)
        raise
    except BaseException as error:
        if router is not None and not isinstance(error, Exception):
            router.note_commit(None)
        raise


def _status(row: Sequence[Any]) -> StandbyStatus:
    in_recovery, applied, lag = row
    token = None if applied is None else ReadToken.parse(applied)
    lag_seconds = None if lag is None else float(lag)  # float-ok: replay delay in seconds
    return StandbyStatus(bool(in_recovery), token, lag_seconds)


def _standby_failed(router: ReadRouter[Any], engine: object, error: BaseException) -> None:
    """Note a read that failed on a standby; one that is down is left alone for a while."""
    down = isinstance(error, _DOWN) or (
        isinstance(error, DBAPIError | PoolCheckoutTimeout) and classify(error) in _DOWN_FAILURES
    )
    if down:
        router.leave_alone(engine)
    log_event("standby_read_failed", logging.INFO, error=type(error).__name__, down=down)


def token_from(row: Sequence[Any]) -> ReadToken:
    """The token for a :data:`TOKEN_QUERY` row.

    An insert position just past a page header (the last record ended at
    the page boundary) becomes the boundary itself: a standby's replay
    position stops there (the end of the last record), and it would
    otherwise wait for the next record to reach a token it already covers.
    """
    lsn = ReadToken.parse(row[0], "pg_current_wal_insert_lsn()").lsn
    block_size, segment_size = int(row[1]), int(row[2])
    if lsn % segment_size == _SEGMENT_HEADER:
        lsn -= _SEGMENT_HEADER
    elif lsn % block_size == _PAGE_HEADER:
        lsn -= _PAGE_HEADER
    return ReadToken(lsn)


# -- sync ------------------------------------------------------------------------


def current_token(engine: Engine) -> ReadToken:
    """The primary's WAL insert position now: covers every commit that has returned."""
    with translated(), engine.connect() as connection:
        return token_from(tuple(connection.execute(TOKEN_QUERY).one()))


def commit_token(engine: Engine) -> ReadToken | None:
    """:func:`current_token` right after a commit; None if it could not be read.

    The commit has happened: a failure here must not make it look failed.
    """
    try:
        return current_token(engine)
    except (SQLAlchemyError, DatabaseConnectionError, OSError) as error:
        log_event("read_token_unknown", logging.INFO, error=type(error).__name__)
        return None


_STANDBY_READ_LEVEL: Final = "REPEATABLE READ"
"""A read's statements see one snapshot (SERIALIZABLE is refused on a standby)."""


def note_commit_token(router: ReadRouter[Engine], engine: Engine) -> None:
    """Right after a commit (or to learn one): the primary's token, noted in ``router``."""
    seen = router.unknown_commits()  # before the token: see ReadRouter.note_commit
    router.note_commit(commit_token(engine), seen)


class TrackedUnitOfWork(UnitOfWork):
    """A UnitOfWork on the primary whose commit a store's router remembers (read-your-writes)."""

    def __init__(
        self,
        engine: Engine,
        router: ReadRouter[Engine],
        *,
        concurrency_service: ConcurrencyService | None = None,
        isolation: IsolationLevel | None = None,
    ) -> None:
        super().__init__(engine, concurrency_service=concurrency_service, isolation=isolation)
        self._primary = engine
        self._router = router

    def commit(self) -> None:
        """UnitOfWork.commit, then the commit's token noted."""
        with noting_commit(self._router):
            super().commit()
        note_commit_token(self._router, self._primary)


def _ready(
    router: ReadRouter[Engine], engine: Engine, connection: Connection, token: ReadToken | None
) -> bool:
    deadline = time.monotonic() + router.policy.replay_wait
    while True:
        status = _status(tuple(connection.execute(STATUS_QUERY).one()))
        connection.rollback()  # the read runs in a transaction of its own
        decided = verdict(status, token, router.policy)
        if decided == "read":
            return True
        if decided == "lagging":
            router.leave_alone(engine)
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(router.policy.poll_interval)  # the standby replays meanwhile


def read(
    router: ReadRouter[Engine],
    call: StoreCall[T],
    explicit: ReadToken | None,
    *,
    primary: Engine,
    service: ConcurrencyService,
    on_primary: Callable[[], T],
) -> T:
    """Run the read ``call`` on a standby that may serve it, else ``on_primary()``."""
    if router.must_learn_token():
        note_commit_token(router, primary)  # still unknown: the primary serves
    token = router.token_needed(explicit)
    standby_allowed = not router.must_learn_token()
    for engine in router.candidates() if standby_allowed else []:
        try:
            with engine.connect() as connection:
                if not _ready(router, engine, connection, token):
                    continue
                connection.execution_options(isolation_level=_STANDBY_READ_LEVEL)
                with UnitOfWork(connection, concurrency_service=service) as uow:
                    served = _Served(call.attempt(uow.portfolios))
        except _STANDBY_TROUBLE as error:
            _standby_failed(router, engine, error)
            continue
        router.count("standby_reads")
        return served.value
    router.count("primary_reads")
    return on_primary()


# -- asyncio ---------------------------------------------------------------------


async def current_token_async(engine: AsyncEngine) -> ReadToken:
    """:func:`current_token` for asyncio."""
    with translated():
        async with engine.connect() as connection:
            return token_from(tuple((await connection.execute(TOKEN_QUERY)).one()))


async def commit_token_async(engine: AsyncEngine) -> ReadToken | None:
    """:func:`commit_token` for asyncio."""
    try:
        return await current_token_async(engine)
    except (SQLAlchemyError, DatabaseConnectionError, OSError) as error:
        log_event("read_token_unknown", logging.INFO, error=type(error).__name__)
        return None


async def note_commit_token_async(router: ReadRouter[AsyncEngine], engine: AsyncEngine) -> None:
    """:func:`note_commit_token` for asyncio."""
    seen = router.unknown_commits()
    router.note_commit(await commit_token_async(engine), seen)


async def _ready_async(
    router: ReadRouter[AsyncEngine],
    engine: AsyncEngine,
    connection: AsyncConnection,
    token: ReadToken | None,
) -> bool:
    deadline = time.monotonic() + router.policy.replay_wait
    while True:
        status = _status(tuple((await connection.execute(STATUS_QUERY)).one()))
        await connection.rollback()
        decided = verdict(status, token, router.policy)
        if decided == "read":
            return True
        if decided == "lagging":
            router.leave_alone(engine)
            return False
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(router.policy.poll_interval)


async def read_async(
    router: ReadRouter[AsyncEngine],
    call: StoreCall[T],
    explicit: ReadToken | None,
    *,
    primary: AsyncEngine,
    service: ConcurrencyService,
    on_primary: Callable[[], Awaitable[T]],
) -> T:
    """:func:`read` for asyncio: the same choices, awaited."""
    from portfolio_core.async_unit_of_work import AsyncUnitOfWork

    if router.must_learn_token():
        await note_commit_token_async(router, primary)
    token = router.token_needed(explicit)
    standby_allowed = not router.must_learn_token()
    for engine in router.candidates() if standby_allowed else []:
        try:
            async with engine.connect() as connection:
                if not await _ready_async(router, engine, connection, token):
                    continue
                await connection.execution_options(isolation_level=_STANDBY_READ_LEVEL)
                async with AsyncUnitOfWork(connection, concurrency_service=service) as uow:
                    served = _Served(await uow.run_sync(call.attempt))
        except _STANDBY_TROUBLE as error:
            _standby_failed(router, engine, error)
            continue
        router.count("standby_reads")
        return served.value
    router.count("primary_reads")
    return await on_primary()
